/** Longest a timer sleeps: a backstop for timers that fire late or never (throttled tabs, device sleep). */
const COARSE_MS = 30_000;

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
export function createScheduler(dueIn: () => number | null, check: () => void): Scheduler {
  const doc = globalThis.document;
  const win = globalThis as unknown as Partial<Pick<Window, 'addEventListener' | 'removeEventListener'>>;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hidden = () => doc?.hidden === true;

  const arm = () => {
    clearTimeout(timer);
    timer = undefined;
    const d = dueIn();
    if (d === null || hidden()) return;
    // Already due (a refresh is running or just failed): look again after the coarse interval,
    // not in a tight loop.
    timer = setTimeout(wake, d > 0 ? Math.min(d, COARSE_MS) : COARSE_MS);
  };
  const wake = () => {
    if (!hidden()) check();
    arm();
  };
  const events = ['focus', 'online', 'pageshow'] as const;
  doc?.addEventListener('visibilitychange', wake);
  for (const ev of events) win.addEventListener?.(ev, wake);

  return {
    arm,
    stop() {
      clearTimeout(timer);
      doc?.removeEventListener('visibilitychange', wake);
      for (const ev of events) win.removeEventListener?.(ev, wake);
    },
  };
}
