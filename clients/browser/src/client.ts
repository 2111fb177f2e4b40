import {
  CookiesBlockedError,
  InvalidCredentialsError,
  InvalidResponseError,
  NetworkError,
  NotLoggedInError,
  ServerError,
  SessionEndedError,
  TesseraError,
} from './errors';
import { request, tokenSet, type Json, type TokenSet } from './http';
import { createScheduler } from './refresh/scheduler';
import { openChannel, withLock, type Message } from './tabs';
import type { LogoutReason, MigrationStatus, SessionInfo, Tessera, TesseraOptions } from './types';

/** Extra attempts after a network error or 5xx during refresh; the backoff stays inside the server's 10 s grace window. */
const RETRIES = 3;
const backoff = (attempt: number) => Math.min(500 * 2 ** attempt, 4000);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/**
 * How long a tab granted the refresh lock after waiting listens for the previous holder's message
 * before refreshing itself. It is only reached when that holder's tab closed mid-refresh.
 */
const HANDOFF_MS = 2000;

/** Calls an application callback; its exception must not leave the session half-updated. */
function emit<A>(cb: ((a: A) => void) | undefined, arg: A) {
  try {
    cb?.(arg);
  } catch (e) {
    setTimeout(() => {
      throw e;
    });
  }
}

export function createTessera(options: TesseraOptions = {}): Tessera {
  const loc = globalThis.location;
  const base = new URL(options.baseUrl ?? (loc ? loc.origin : ''), loc?.href);
  const basePath = base.pathname.replace(/\/+$/, '');
  const root = base.origin + basePath;
  const now = options.now ?? Date.now;
  const userFetch = options.fetch;
  const send = (input: RequestInfo | URL, init?: RequestInit) => (userFetch ?? fetch)(input, init);
  const timeout = options.timeout ?? 10_000;
  const margin = (options.refreshMargin ?? 60) * 1000;
  const lockName = options.lockName ?? 'tessera-session:' + root;

  // The whole session state. The access token exists only here, in this closure: never in
  // storage, a readable cookie or an object property another script could enumerate.
  let token: string | null = null;
  let csrf: string | null = null;
  let exp = 0;
  let refreshAt = 0;
  // Bumped whenever the session is replaced or ended; a refresh started under an older epoch
  // is discarded when it returns, so a logout cannot be undone by a late answer.
  let epoch = 0;
  let flight: Promise<string> | null = null;
  // True from login until the first successful refresh: a "no refresh cookie" answer then
  // means the browser refused the cookie, not that the session ended normally.
  let sinceLogin = false;
  let restoring = false;
  // This tab's own session id, once the server named it (the restore answer, or `current` in the session
  // list): ending it through endSession() is a logout of this tab, not something to learn at the next refresh.
  let currentSid: string | null = null;
  /** A new session (or none): later callers must not join a flight whose result will be discarded. */
  const bump = () => {
    epoch++;
    flight = null;
  };

  // Tessera's browser endpoints: the only place the refresh cookie (Path=/auth) and the CSRF token mean
  // anything, so the only URLs that get them — not every same-origin API of an app served beside Tessera.
  const authPath = basePath + '/auth';
  /** Same origin and under baseUrl's `/auth` (segment-wise, after URL normalisation of "..", case, ports). */
  const isOwn = (url: string) => {
    const u = new URL(url);
    return u.origin === base.origin && (u.pathname === authPath || u.pathname.startsWith(authPath + '/'));
  };

  const store = (s: TokenSet, expiresAt: number) => {
    token = s.token;
    csrf = s.csrf;
    exp = expiresAt;
    refreshAt = expiresAt - Math.min(margin, s.life / 2);
    sched.arm();
    emit(options.onTokenRefreshed, { expiresAt });
  };

  const end = (reason: LogoutReason, broadcast: boolean) => {
    const had = token !== null;
    bump();
    token = csrf = null;
    exp = refreshAt = 0;
    sinceLogin = false;
    currentSid = null;
    sched.arm();
    if (broadcast) chan.post({ type: 'logout' });
    if (had) emit(options.onLogout, reason);
  };

  // Messages exchanged with other tabs, sent or received, and who waits for the next one (see `once`):
  // a hold of this tab's own can be what a later refresh of this tab waits behind.
  let heard = 0;
  const listeners = new Set<() => void>();
  const noteMessage = () => {
    heard++;
    for (const wake of [...listeners]) wake();
  };
  /** Resolves at the next message, or after `ms`. */
  const nextMessage = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        listeners.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      listeners.add(done);
    });

  const onMessage = (m: Message) => {
    noteMessage();
    if (m.type === 'unlock') return;
    if (m.type === 'logout') {
      if (token || csrf) end('other_tab', false);
      return;
    }
    if (typeof m.token !== 'string' || typeof m.exp !== 'number' || typeof m.life !== 'number' || typeof m.csrf !== 'string') return;
    // A refresh from another tab may arrive after this tab logged out; only a new login (or a
    // restore in progress here) may make a logged-out tab logged in again.
    if (m.type === 'token' && !token && !restoring) return;
    if (m.type === 'token' && m.exp <= exp) return;
    if (m.type === 'login') bump();
    store({ token: m.token, life: m.life, csrf: m.csrf }, m.exp);
  };

  const channel = openChannel(lockName, onMessage);
  const chan = {
    live: channel.live,
    post(m: Message) {
      channel.post(m);
      noteMessage();
    },
    close: () => channel.close(),
  };
  const sched = createScheduler(
    () => (token ? refreshAt - now() : null),
    () => {
      if (token && !flight && now() >= refreshAt) refresh(token).catch(() => {});
    },
  );

  /** The current token if another tab (or an earlier flight) already replaced `stale` with a fresh one. */
  const adoptable = (stale: string | null) => (token && token !== stale && now() < refreshAt ? token : null);

  /** Single-flight within the tab: every caller during a refresh shares its promise. */
  const refresh = (stale: string | null): Promise<string> => {
    const t = adoptable(stale);
    if (t) return Promise.resolve(t);
    if (flight) return flight;
    const p: Promise<string> = run(stale).finally(() => {
      if (flight === p) flight = null;
      sched.arm();
    });
    return (flight = p);
  };

  const run = async (stale: string | null): Promise<string> => {
    const my = epoch;
    for (let attempt = 0; ; attempt++) {
      try {
        // One timed request per lock hold; backoff waits happen outside the lock.
        const since = heard;
        return await withLock(lockName, timeout, async (waited) => {
          try {
            return await once(stale, my, waited ? since : null);
          } catch (e) {
            chan.post({ type: 'unlock' });
            throw e;
          }
        });
      } catch (e) {
        if (my !== epoch) throw new NotLoggedInError();
        const transient = e instanceof NetworkError || (e instanceof ServerError && e.status >= 500);
        if (!transient || attempt >= RETRIES) throw fail(e);
        await sleep(backoff(attempt));
      }
    }
  };

  /** One refresh under the lock; `waitedSince` is the message count when this tab began waiting for it, if it had to. */
  const once = async (stale: string | null, my: number, waitedSince: number | null): Promise<string> => {
    // The lock can reach this tab before the message that ended the previous hold (another process
    // delivers it). Spending the cookie that holder just rotated would be a second refresh: wait for
    // its message if none came since this tab began waiting, or give a queued one a turn of the
    // event loop when the lock was free.
    if (chan.live) await (waitedSince !== null && heard === waitedSince ? nextMessage(HANDOFF_MS) : sleep(0));
    if (my !== epoch) throw new NotLoggedInError();
    const t = adoptable(stale);
    if (t) return t;
    if (!csrf) throw new NotLoggedInError();
    const at = now();
    const body = await request(send, root + '/auth/refresh', { method: 'POST', credentials: 'include', headers: { 'X-CSRF-Token': csrf } }, timeout);
    const s = tokenSet(body);
    if (my !== epoch) throw new NotLoggedInError();
    sinceLogin = false;
    store(s, at + s.life);
    chan.post({ type: 'token', token: s.token, exp, life: s.life, csrf: s.csrf });
    return s.token;
  };

  /** Final failure of a refresh: only a rejected refresh ends the session; anything else is reported. */
  const fail = (e: unknown): TesseraError => {
    const err = e instanceof TesseraError ? e : new NetworkError(undefined, e);
    if (err instanceof SessionEndedError) {
      const blocked = sinceLogin && err.message === 'no refresh cookie';
      end('session_ended', true);
      if (!blocked) return err;
      const b = new CookiesBlockedError();
      emit(options.onError, b);
      return b;
    }
    emit(options.onError, err);
    return err;
  };

  const getAccessToken = async (): Promise<string | null> => {
    const t = token;
    if (!t) return null;
    if (now() < refreshAt) return t;
    try {
      return await refresh(t);
    } catch (e) {
      // A failed refresh (already reported) does not spoil a token that is still valid.
      if (token && now() < exp) return token;
      if (!token) return null;
      throw e;
    }
  };

  /** Drop-in fetch: Bearer everywhere; CSRF header and credentials only for Tessera's own URLs. */
  const apiFetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const own = isOwn(req.url);
    const attempt = (t: string) => {
      // A fresh copy per attempt: the retry must send the same body, not a consumed stream.
      const r = new Request(req.clone(), own ? { credentials: 'include' } : {});
      r.headers.set('Authorization', 'Bearer ' + t);
      if (own && csrf) r.headers.set('X-CSRF-Token', csrf);
      // An unreachable API is a typed error like every other failure; the caller's own abort stays an abort.
      return send(r).catch((e: unknown) => {
        throw e instanceof DOMException && e.name === 'AbortError' ? e : new NetworkError(undefined, e);
      });
    };
    const t = await getAccessToken();
    if (!t) throw new NotLoggedInError();
    const res = await attempt(t);
    if (res.status !== 401) return res;
    let next: string;
    try {
      next = await refresh(t);
    } catch {
      return res; // the refresh failure went to onError/onLogout; the caller sees the API's answer
    }
    return attempt(next); // retried once; a second 401 is returned as it is, never looped
  };

  const authed = (method: string, path: string) => request(apiFetch, root + path, { method }, timeout);

  /**
   * Starts a session from a POST to one of Tessera's session-creating endpoints (login, migrate): the same
   * cookie check, validation, storage, refresh planning and broadcast for both, so they cannot drift apart.
   */
  const establish = async (path: string, payload: Json) => {
    if (globalThis.navigator?.cookieEnabled === false) throw new CookiesBlockedError();
    const my = epoch;
    const at = now();
    const body = await request(
      send,
      root + path,
      { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(payload) },
      timeout,
    );
    const s = tokenSet(body);
    if (my !== epoch) throw new NotLoggedInError();
    bump(); // a refresh still running for an earlier session must not overwrite this one
    sinceLogin = true;
    store(s, at + s.life);
    chan.post({ type: 'login', token: s.token, exp, life: s.life, csrf: s.csrf });
  };

  const login = (username: string, password: string) =>
    establish('/auth/login', { username, password }).catch((e: unknown) => {
      throw e instanceof SessionEndedError ? new InvalidCredentialsError() : e;
    });

  // Migration from a legacy cookie session: that cookie (same origin, usually Path=/) is what authenticates both
  // calls, hence credentials 'include'; Tessera checks the Origin as for /auth/session.
  /** Read-only: lets a page offer migrate() only to users the rollout steers to tokens. */
  const migrationStatus = async (): Promise<MigrationStatus> => {
    const body = await request(send, root + '/auth/migrate', { credentials: 'include', cache: 'no-store' }, timeout);
    const phase = body?.phase;
    const method = body?.method ?? null;
    if (typeof phase !== 'string' || (method !== null && method !== 'token' && method !== 'session')) {
      throw new InvalidResponseError('migration answer lacks phase or method');
    }
    return { phase, method };
  };
  /** The legacy session is traded for a Tessera session that then behaves exactly like a login's. */
  const migrate = () => establish('/auth/migrate', {});

  const init = async (): Promise<boolean> => {
    if (token) return true;
    if (globalThis.navigator?.cookieEnabled === false) {
      emit(options.onError, new CookiesBlockedError());
      return false;
    }
    restoring = true;
    try {
      // The cookie is HttpOnly, so only the server can say whether a session exists; it answers
      // same-origin requests with the CSRF token a reloaded page has lost.
      let c: unknown;
      let named: unknown;
      try {
        const answer = await request(send, root + '/auth/session', { credentials: 'include', cache: 'no-store' }, timeout);
        c = answer?.csrf_token;
        named = (answer?.session as Json | undefined)?.id;
        if (typeof c !== 'string' || !c) throw new InvalidResponseError('session answer lacks csrf_token');
      } catch (e) {
        // 401 = no session: the normal logged-out start, not an error.
        if (!(e instanceof SessionEndedError)) emit(options.onError, e as TesseraError);
        return false;
      }
      if (!token) csrf = c;
      try {
        await refresh(null);
        if (typeof named === 'string') currentSid = named;
      } catch {
        // reported by the refresh itself
        if (!token) csrf = null;
      }
      return token !== null;
    } finally {
      restoring = false;
    }
  };

  const logout = async () => {
    const t = token && now() < exp ? token : null;
    const c = csrf;
    end('user', true); // first: a refresh in flight is now discarded
    if (!t && !c) return;
    try {
      await request(
        send,
        root + '/auth/logout',
        { method: 'POST', credentials: 'include', headers: t ? { Authorization: 'Bearer ' + t } : { 'X-CSRF-Token': c as string } },
        timeout,
      );
    } catch (e) {
      // Already over on the server: that is the goal. Anything else is thrown, since the cookie
      // may still be live and a reload would restore the session.
      if (!(e instanceof SessionEndedError) && !(e instanceof ServerError && e.status === 401)) throw e;
    }
  };

  return {
    init,
    login,
    migrationStatus,
    migrate,
    logout,
    async logoutEverywhere() {
      await authed('POST', '/auth/logout-all');
      end('everywhere', true);
    },
    getAccessToken,
    isLoggedIn: () => token !== null,
    expiresAt: () => (token ? exp : null),
    async sessions() {
      const body = await authed('GET', '/auth/sessions');
      if (!Array.isArray(body?.sessions)) throw new InvalidResponseError('sessions answer lacks sessions');
      const list = body.sessions as SessionInfo[];
      const mine = list.find((session) => session?.current === true)?.id;
      if (typeof mine === 'string') currentSid = mine;
      return list;
    },
    async endSession(id: string) {
      await authed('DELETE', '/auth/sessions/' + encodeURIComponent(id));
      if (id === currentSid) end('user', true);
    },
    fetch: apiFetch,
    dispose() {
      bump();
      token = csrf = null;
      sched.stop();
      chan.close();
    },
  };
}
