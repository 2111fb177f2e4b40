import {
  CsrfError,
  InvalidResponseError,
  NetworkError,
  NotInRolloutError,
  RateLimitedError,
  ServerError,
  SessionEndedError,
  UseLegacyLoginError,
  TesseraError,
} from './errors';

export type Json = Record<string, unknown>;
type Fetch = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;

/**
 * One request to Tessera, bounded by `timeoutMs` (headers and body both: a server that stalls
 * mid-body must not hang a refresh that other tabs wait on). Returns the JSON object of a 2xx
 * answer (null for 204) or throws a typed error; never anything else.
 */
export async function request(f: Fetch, url: string, init: RequestInit, timeoutMs: number): Promise<Json | null> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  let res: Response;
  let text: string;
  try {
    res = await f(url, { ...init, signal: ac.signal });
    text = await res.text();
  } catch (e) {
    if (e instanceof TesseraError) throw e;
    throw new NetworkError(ac.signal.aborted ? 'request timed out' : 'network request failed', e);
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 204) return null;
  let body: Json | undefined;
  try {
    const v: unknown = JSON.parse(text);
    if (v && typeof v === 'object' && !Array.isArray(v)) body = v as Json;
  } catch {
    // not JSON (an HTML error page, a truncated body): handled below by status
  }
  if (res.ok) {
    if (!body) throw new InvalidResponseError();
    return body;
  }
  throw errorFor(res.status, res.headers.get('retry-after'), body);
}

function errorFor(status: number, retryHeader: string | null, body: Json | undefined): TesseraError {
  const retry = retryHeader && /^\d+$/.test(retryHeader) ? Number(retryHeader) : undefined;
  if (status === 429) return new RateLimitedError(retry);
  // A 5xx is transient whatever its body (proxies answer with HTML): callers may retry it.
  if (status >= 500) return new ServerError(status, undefined, retry);
  // A 4xx without Tessera's error JSON is not Tessera speaking (wrong baseUrl, a portal page):
  // it must never be read as "session over".
  if (!body || typeof body.error !== 'string') return new InvalidResponseError('unexpected ' + status + ' answer');
  const desc = typeof body.error_description === 'string' ? body.error_description : body.error;
  if (status === 401 && body.error === 'invalid_grant') return new SessionEndedError(desc);
  if (status === 403) return new CsrfError(desc);
  if (status === 409 && body.error === 'not_in_rollout') return new NotInRolloutError();
  if (status === 409 && body.error === 'use_legacy_login') return new UseLegacyLoginError();
  return new ServerError(status, desc);
}

export interface TokenSet {
  token: string;
  /** Lifetime in ms, from expires_in: the only expiry the library trusts (no JWT exp, no skew). */
  life: number;
  csrf: string;
}

/** Validates a login/refresh answer; a missing field is an invalid response, never a half-stored session. */
export function tokenSet(body: Json | null): TokenSet {
  const t = body?.access_token;
  const e = body?.expires_in;
  const c = body?.csrf_token;
  if (typeof t !== 'string' || !t || typeof e !== 'number' || !(e > 0) || !isFinite(e) || typeof c !== 'string' || !c) {
    throw new InvalidResponseError('token answer lacks access_token, expires_in or csrf_token');
  }
  return { token: t, life: e * 1000, csrf: c };
}
