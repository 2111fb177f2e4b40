/**
 * Typed errors. Applications branch on `code` (stable strings), not on messages or class
 * names: the bundle is minified, so constructor names are not reliable and `name` is set by hand.
 */
export class TesseraError extends Error {
  readonly code: string;
  readonly cause?: unknown;
  constructor(code: string, message: string, name = 'TesseraError', cause?: unknown) {
    super(message);
    this.code = code;
    this.name = name;
    if (cause !== undefined) this.cause = cause;
  }
}

/** The request never got an answer: offline, DNS, CORS refusal, or the timeout fired. */
export class NetworkError extends TesseraError {
  constructor(message = 'network request failed', cause?: unknown) {
    super('network', message, 'NetworkError', cause);
  }
}

/** An answer with an unexpected status (5xx, or a 4xx no other error describes). */
export class ServerError extends TesseraError {
  readonly status: number;
  readonly retryAfter?: number;
  constructor(status: number, message = 'server error ' + status, retryAfter?: number) {
    super('server', message, 'ServerError');
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** Not Tessera's JSON: an HTML error page from a proxy, malformed JSON or missing fields. */
export class InvalidResponseError extends TesseraError {
  constructor(message = 'invalid response from Tessera') {
    super('invalid_response', message, 'InvalidResponseError');
  }
}

export class InvalidCredentialsError extends TesseraError {
  constructor() {
    super('invalid_credentials', 'wrong username or password', 'InvalidCredentialsError');
  }
}

export class RateLimitedError extends TesseraError {
  /** Seconds to wait, from the Retry-After header when the server sent one. */
  readonly retryAfter?: number;
  constructor(retryAfter?: number) {
    super('rate_limited', 'too many attempts', 'RateLimitedError');
    this.retryAfter = retryAfter;
  }
}

/** The server rejected the refresh (401 invalid_grant): the session is over. */
export class SessionEndedError extends TesseraError {
  constructor(message = 'session ended') {
    super('session_ended', message, 'SessionEndedError');
  }
}

/** The browser does not keep or send the refresh cookie, so sessions cannot last. */
export class CookiesBlockedError extends TesseraError {
  constructor() {
    super('cookies_blocked', 'cookies are blocked in this browser', 'CookiesBlockedError');
  }
}

export class NotLoggedInError extends TesseraError {
  constructor() {
    super('not_logged_in', 'not logged in', 'NotLoggedInError');
  }
}

/** 403 from Tessera: missing or wrong X-CSRF-Token, or a request from an origin it does not allow. */
export class CsrfError extends TesseraError {
  constructor(message = 'request refused (CSRF or origin check)') {
    super('csrf', message, 'CsrfError');
  }
}

/**
 * 409 from `POST /auth/migrate`: this user is not (yet) steered to tokens, so the legacy session stays in charge.
 * Not a failure of the browser or the session: the page keeps using the legacy login.
 */
export class NotInRolloutError extends TesseraError {
  constructor() {
    super('not_in_rollout', 'not in the token rollout yet', 'NotInRolloutError');
  }
}

/**
 * 409 from `POST /auth/login`: while a migration from legacy sessions runs, this user is steered to the legacy
 * application's own login (not yet in the rollout, or after a rollback). The password was right; send the user
 * to the legacy login instead.
 */
export class UseLegacyLoginError extends TesseraError {
  constructor() {
    super('use_legacy_login', 'log in through the legacy application', 'UseLegacyLoginError');
  }
}
