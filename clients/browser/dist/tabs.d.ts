/**
 * Coordination between tabs of one origin: a Web Lock serialises refreshes (a rotating refresh
 * cookie must not be spent twice) and a BroadcastChannel shares their result and logouts.
 * Both are optional: without them each tab refreshes on its own and the server's grace window
 * (the same successor for a repeated refresh within seconds) keeps concurrent refreshes safe.
 */
/**
 * What tabs tell each other. Every hold of the refresh lock ends with one message — `token` when
 * it refreshed, `unlock` when it failed — so a tab granted the lock after waiting knows an answer
 * is on its way even when the lock reached it before the message did.
 */
export type Message = {
    type: 'login' | 'token';
    token: string;
    exp: number;
    life: number;
    csrf: string;
} | {
    type: 'logout';
} | {
    type: 'unlock';
};
export interface Channel {
    /** False without BroadcastChannel: nothing will ever be heard from other tabs. */
    readonly live: boolean;
    post(m: Message): void;
    close(): void;
}
export declare function openChannel(name: string, onMessage: (m: Message) => void): Channel;
/**
 * Runs `fn` holding the Web Lock `name`; `fn` learns whether another tab held it first. Waiting
 * is bounded by `waitMs`: a lock kept by a frozen or hung tab must not stall this one forever, so
 * past that it proceeds without the lock (safe thanks to the grace window). Errors thrown by `fn`
 * itself propagate.
 */
export declare function withLock<T>(name: string, waitMs: number, fn: (waited: boolean) => Promise<T>): Promise<T>;
