export type Json = Record<string, unknown>;
type Fetch = (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>;
/**
 * One request to Tessera, bounded by `timeoutMs` (headers and body both: a server that stalls
 * mid-body must not hang a refresh that other tabs wait on). Returns the JSON object of a 2xx
 * answer (null for 204) or throws a typed error; never anything else.
 */
export declare function request(f: Fetch, url: string, init: RequestInit, timeoutMs: number): Promise<Json | null>;
export interface TokenSet {
    token: string;
    /** Lifetime in ms, from expires_in: the only expiry the library trusts (no JWT exp, no skew). */
    life: number;
    csrf: string;
}
/** Validates a login/refresh answer; a missing field is an invalid response, never a half-stored session. */
export declare function tokenSet(body: Json | null): TokenSet;
export {};
