/**
 * Typed errors. Applications branch on `code` (stable strings), not on messages or class
 * names: the bundle is minified, so constructor names are not reliable and `name` is set by hand.
 */
export declare class TesseraError extends Error {
    readonly code: string;
    readonly cause?: unknown;
    constructor(code: string, message: string, name?: string, cause?: unknown);
}
/** The request never got an answer: offline, DNS, CORS refusal, or the timeout fired. */
export declare class NetworkError extends TesseraError {
    constructor(message?: string, cause?: unknown);
}
/** An answer with an unexpected status (5xx, or a 4xx no other error describes). */
export declare class ServerError extends TesseraError {
    readonly status: number;
    readonly retryAfter?: number;
    constructor(status: number, message?: string, retryAfter?: number);
}
/** Not Tessera's JSON: an HTML error page from a proxy, malformed JSON or missing fields. */
export declare class InvalidResponseError extends TesseraError {
    constructor(message?: string);
}
export declare class InvalidCredentialsError extends TesseraError {
    constructor();
}
export declare class RateLimitedError extends TesseraError {
    /** Seconds to wait, from the Retry-After header when the server sent one. */
    readonly retryAfter?: number;
    constructor(retryAfter?: number);
}
/** The server rejected the refresh (401 invalid_grant): the session is over. */
export declare class SessionEndedError extends TesseraError {
    constructor(message?: string);
}
/** The browser does not keep or send the refresh cookie, so sessions cannot last. */
export declare class CookiesBlockedError extends TesseraError {
    constructor();
}
export declare class NotLoggedInError extends TesseraError {
    constructor();
}
/** 403 from Tessera: missing or wrong X-CSRF-Token, or a request from an origin it does not allow. */
export declare class CsrfError extends TesseraError {
    constructor(message?: string);
}
/**
 * 409 from `POST /auth/migrate`: this user is not (yet) steered to tokens, so the legacy session stays in charge.
 * Not a failure of the browser or the session: the page keeps using the legacy login.
 */
export declare class NotInRolloutError extends TesseraError {
    constructor();
}
/**
 * 409 from `POST /auth/login`: while a migration from legacy sessions runs, this user is steered to the legacy
 * application's own login (not yet in the rollout, or after a rollback). The password was right; send the user
 * to the legacy login instead.
 */
export declare class UseLegacyLoginError extends TesseraError {
    constructor();
}
