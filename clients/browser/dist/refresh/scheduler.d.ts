export interface Scheduler {
    /** Re-plans the single timer from the current state; call after every state change. */
    arm(): void;
    stop(): void;
}
/**
 * Wakes `check` when `dueIn()` says a refresh is due, at least every COARSE_MS, and whenever the
 * page comes back (visible, focus, online, pageshow from the back/forward cache). Timers are only
 * hints: `check` must compare wall-clock time itself, because after a device sleep they fire late
 * or out of order. Nothing runs while the document is hidden (throttled tabs should not all wake
 * to refresh); getAccessToken still refreshes on demand there.
 */
export declare function createScheduler(dueIn: () => number | null, check: () => void): Scheduler;
