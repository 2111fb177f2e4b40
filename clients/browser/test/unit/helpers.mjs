// Fakes for the browser APIs the library touches: a clock driving setTimeout, document visibility,
// window events, navigator.locks, BroadcastChannel, storage spies and a scripted Tessera server.
import { createTessera } from '../../.test-build/tessera-browser.js';

const realImmediate = setImmediate;
/** Lets every pending promise chain run (a real macrotask turn drains all microtasks). */
export const flush = async (turns = 3) => {
  for (let i = 0; i < turns; i++) await new Promise((r) => realImmediate(r));
};

export class FakeClock {
  constructor(start = 1_700_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.seq = 0;
  }
  now = () => this.t;
  setTimeout = (fn, ms = 0, ...args) => {
    const id = ++this.seq;
    this.timers.set(id, { due: this.t + Math.max(0, Number(ms) || 0), fn, args });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms) {
    const target = this.t + ms;
    await flush();
    for (;;) {
      let next;
      for (const [id, tm] of this.timers) if (tm.due <= target && (!next || tm.due < next[1].due)) next = [id, tm];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].due);
      next[1].fn(...next[1].args);
      await flush();
    }
    this.t = target;
    await flush();
  }
  /** Device sleep: the wall clock jumps, no timer fires. */
  jump(ms) {
    this.t += ms;
  }
}

class FakeDocument extends EventTarget {
  hidden = false;
  constructor(touched) {
    super();
    this.touched = touched;
  }
  get cookie() {
    this.touched.push('document.cookie');
    return '';
  }
  set cookie(_v) {
    this.touched.push('document.cookie');
  }
  setHidden(h) {
    this.hidden = h;
    this.dispatchEvent(new Event('visibilitychange'));
  }
}

/** Web Locks: one holder per name, FIFO; a pending request can be aborted by its signal; `ifAvailable` gets null when taken. */
export class FakeLocks {
  tails = new Map();
  taken = new Map();
  grants = 0;
  async request(name, opts, cb) {
    if (typeof opts === 'function') [cb, opts] = [opts, {}];
    if (opts.ifAvailable && this.taken.get(name)) return cb(null);
    this.taken.set(name, (this.taken.get(name) ?? 0) + 1);
    const prev = this.tails.get(name) ?? Promise.resolve();
    let release;
    const mine = new Promise((r) => (release = r));
    this.tails.set(name, prev.then(() => mine));
    try {
      await new Promise((resolve, reject) => {
        prev.then(resolve);
        opts.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      });
    } catch (e) {
      prev.then(release);
      this.taken.set(name, this.taken.get(name) - 1);
      throw e;
    }
    this.grants++;
    try {
      return await cb({ name });
    } finally {
      this.taken.set(name, this.taken.get(name) - 1);
      release();
    }
  }
}

/** BroadcastChannel; `lagMs` delivers on the fake clock, as a message from another process can trail the lock. */
function fakeBroadcastChannel(log, clock, lagMs) {
  const open = new Set();
  return class FakeBroadcastChannel {
    onmessage = null;
    constructor(name) {
      this.name = name;
      open.add(this);
    }
    postMessage(data) {
      log.push(data);
      for (const other of open) {
        if (other !== this && other.name === this.name) {
          const copy = structuredClone(data);
          const deliver = () => other.onmessage?.({ data: copy });
          if (lagMs) clock.setTimeout(deliver, lagMs);
          else queueMicrotask(deliver);
        }
      }
    }
    close() {
      open.delete(this);
    }
  };
}

const json = (status, body, headers = {}) =>
  new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
export const grant = (error_description) => json(401, { error: 'invalid_grant', error_description });
export { json };

/** A scripted Tessera server plus one API at https://api.example/me; `handlers` override routes. */
export function createServer({ life = 300 } = {}) {
  const s = { life, calls: [], cookie: null, n: 0, csrf: 'csrf-1', valid: new Set(), handlers: {} };
  const tokens = () => {
    const access_token = `at-${++s.n}`;
    s.valid.add(access_token);
    return { access_token, token_type: 'Bearer', expires_in: s.life, csrf_token: s.csrf };
  };
  s.count = (path) => s.calls.filter((c) => c.path === path).length;
  s.fetch = async (input, init) => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    url.pathname = url.pathname.replace(/^\/tessera(?=\/)/, ''); // a baseUrl with a path prefix
    const call = {
      method: req.method,
      url: req.url,
      path: url.pathname,
      credentials: req.credentials,
      headers: Object.fromEntries(req.headers),
      body: req.method === 'GET' ? '' : await req.clone().text(),
      signal: req.signal,
    };
    s.calls.push(call);
    const h = s.handlers[url.pathname];
    if (h) return h(call);
    const bearer = (call.headers.authorization ?? '').replace(/^Bearer /, '');
    switch (url.pathname) {
      case '/auth/login':
        if (JSON.parse(call.body).password !== 'pw') return grant('wrong credentials');
        s.cookie = 'rt';
        return json(200, tokens());
      case '/auth/refresh':
        if (!s.cookie) return grant('no refresh cookie');
        if (call.headers['x-csrf-token'] !== s.csrf) return json(403, { error: 'invalid_request' });
        return json(200, tokens());
      case '/auth/session':
        return s.cookie ? json(200, { csrf_token: s.csrf, session: { id: 's1', sub: 'alice', expires_at: 1 } }) : grant('no session');
      case '/auth/logout':
      case '/auth/logout-all':
        s.cookie = null;
        return json(204);
      case '/auth/sessions':
      case '/me':
        if (!s.valid.has(bearer)) return json(401, { error: 'invalid_token' });
        return url.pathname === '/me' ? json(200, { sub: 'alice', body: call.body }) : json(200, { sessions: [{ id: 's1', current: true }] });
      default:
        if (url.pathname.startsWith('/auth/sessions/')) return json(204);
        return json(404, { error: 'not_found' });
    }
  };
  return s;
}

const GLOBALS = ['setTimeout', 'clearTimeout', 'document', 'navigator', 'BroadcastChannel', 'addEventListener', 'removeEventListener', 'localStorage', 'sessionStorage', 'indexedDB'];

/**
 * Installs the fakes on globalThis for one test (restored by t.after). Options: hidden, locks,
 * channel (false = API missing), channelLagMs (delivery delay), cookieEnabled, life (token lifetime in s).
 */
export function setup(t, { hidden = false, locks = true, channel = true, channelLagMs = 0, cookieEnabled = true, life } = {}) {
  const saved = GLOBALS.map((k) => [k, Object.getOwnPropertyDescriptor(globalThis, k)]);
  const clock = new FakeClock();
  const touched = [];
  const doc = new FakeDocument(touched);
  doc.hidden = hidden;
  const win = new EventTarget();
  const fakeLocks = new FakeLocks();
  const broadcasts = [];
  const server = createServer({ life });
  const define = (k, v) => Object.defineProperty(globalThis, k, { value: v, configurable: true, writable: true });
  define('setTimeout', clock.setTimeout);
  define('clearTimeout', clock.clearTimeout);
  define('document', doc);
  define('navigator', { cookieEnabled, ...(locks ? { locks: fakeLocks } : {}) });
  define('BroadcastChannel', channel ? fakeBroadcastChannel(broadcasts, clock, channelLagMs) : undefined);
  define('addEventListener', win.addEventListener.bind(win));
  define('removeEventListener', win.removeEventListener.bind(win));
  for (const k of ['localStorage', 'sessionStorage', 'indexedDB']) {
    Object.defineProperty(globalThis, k, { configurable: true, get: () => (touched.push(k), undefined) });
  }
  const clients = [];
  const env = {
    clock,
    doc,
    server,
    touched,
    broadcasts,
    locks: fakeLocks,
    fire: (type) => win.dispatchEvent(new Event(type)),
    /** A tab: a client with recorded events. */
    client(opts = {}) {
      const ev = { logout: [], refreshed: [], errors: [] };
      const c = createTessera({
        baseUrl: 'https://id.example',
        fetch: server.fetch,
        now: clock.now,
        onLogout: (r) => ev.logout.push(r),
        onTokenRefreshed: (i) => ev.refreshed.push(i),
        onError: (e) => ev.errors.push(e),
        ...opts,
      });
      c.ev = ev;
      clients.push(c);
      return c;
    },
    /** Awaits `p`, firing zero-delay timers (the lock's one-turn yield) until it settles. */
    async run(p) {
      let done = false;
      p.then(() => (done = true), () => (done = true));
      for (let i = 0; i < 50 && !done; i++) await clock.advance(0);
      if (!done) throw new Error('still pending: a loop, or a wait the test did not expect');
      return p;
    },
  };
  t.after(() => {
    for (const c of clients) c.dispose();
    for (const [k, d] of saved) {
      if (d) Object.defineProperty(globalThis, k, d);
      else delete globalThis[k];
    }
  });
  return env;
}

/** A client logged in as alice with the default fake server. */
export async function loggedIn(env, opts) {
  const c = env.client(opts);
  await c.login('alice', 'pw');
  return c;
}
