// Three tabs of one session whose access tokens all fall due at the same moment (the context's clock jumps past
// their expiry, as when a laptop wakes up) and which all call the API at once: with Web Locks one refresh reaches
// the server; without them the server's grace window lets every concurrent refresh succeed. Either way nobody is
// logged out.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  callApi,
  eventually,
  expiresAt,
  launchBrowser,
  logIn,
  newContext,
  openDemo,
  refreshOutcomes,
  sleep,
  startTessera,
  waitForState,
  watchPath,
} from "./harness.js";

describe("three tabs refreshing at once", { timeout: 180_000 }, () => {
  let tessera;
  let browser;

  before(async () => {
    tessera = await startTessera({ accessTtl: "15m" });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await tessera?.close();
  });

  /** Opens three logged-in tabs, jumps their clock past expiry, and reports what reached the server. */
  async function refreshAtOnce({ webLocks }) {
    const context = await newContext(browser);
    if (!webLocks) {
      // As in a browser without the Web Locks API: the library must fall back.
      await context.addInitScript(() => delete Navigator.prototype.locks);
    }
    await context.clock.install();
    const tabs = [await openDemo(context, tessera)];
    await logIn(tabs[0], tessera.password);
    for (let i = 0; i < 2; i += 1) {
      const tab = await openDemo(context, tessera);
      await waitForState(tab, "logged-in");
      await tab.locator('#api-result[data-state="ok"]').waitFor();
      tabs.push(tab);
    }
    for (const tab of tabs) assert.equal(await tab.evaluate(() => "locks" in navigator), webLocks);

    const before = { ok: await tessera.requests("/auth/refresh", 200), all: await tessera.requests("/auth/refresh") };
    const outcomesBefore = await refreshOutcomes(tessera);
    const seen = watchPath(context, "/auth/refresh");
    const logins = watchPath(context, "/auth/login");
    const old = await Promise.all(tabs.map(expiresAt));

    // With Web Locks, the first refresh is held at the network until the other two tabs queue for the lock: clicks
    // in three tabs are not simultaneous on a loaded machine, and a tab that asks after the first refresh ended is
    // not the race under test.
    let releaseFirst = () => {};
    if (webLocks) {
      const held = new Promise((resolve) => (releaseFirst = resolve));
      let first = true;
      await context.route("**/auth/refresh", async (route) => {
        if (first) {
          first = false;
          await held;
        }
        await route.continue();
      });
    }

    // Every tab's token falls past its expiry at the same instant (the clock jumps without firing timers), and
    // every tab calls the API at the same moment: each needs a new token first.
    await context.clock.setSystemTime(Date.now() + 16 * 60_000);
    const calling = Promise.all(tabs.map(callApi));
    if (webLocks) {
      await eventually(
        "two tabs waiting for the lock the refreshing one holds",
        async () => {
          const { held, pending } = await tabs[0].evaluate(() => navigator.locks.query());
          return held.length === 1 && pending.length === 2;
        },
        15_000,
      );
      releaseFirst();
    }
    const calls = await calling;
    assert.deepEqual(calls.map((call) => call.state), ["ok", "ok", "ok"]);
    await eventually(
      "a new access token in every tab",
      async () => (await Promise.all(tabs.map(expiresAt))).every((at, i) => at > old[i] + 15 * 60_000),
      15_000,
    );
    // Give a late refresh the time to show up in the count.
    await sleep(1_500);
    const refreshes = {
      ok: (await tessera.requests("/auth/refresh", 200)) - before.ok,
      all: (await tessera.requests("/auth/refresh")) - before.all,
    };
    const outcomes = Object.fromEntries(
      Object.entries(await refreshOutcomes(tessera)).map(([outcome, n]) => [outcome, n - outcomesBefore[outcome]]),
    );

    for (const tab of tabs) {
      assert.equal((await callApi(tab)).state, "ok", "every tab keeps working");
      assert.equal(await tab.getAttribute("#status", "data-state"), "logged-in", "nobody is logged out");
    }
    assert.equal(logins.requests, 0);
    await context.close();
    return { refreshes, outcomes, sent: seen.requests, statuses: seen.statuses };
  }

  test("with Web Locks: exactly one refresh reaches the server", { timeout: 60_000 }, async () => {
    const { refreshes, outcomes, sent, statuses } = await refreshAtOnce({ webLocks: true });
    assert.deepEqual(refreshes, { ok: 1, all: 1 }, "refreshes the server counted");
    assert.deepEqual(outcomes, { rotated: 1, grace_replay: 0, reuse_detected: 0 });
    assert.equal(sent, 1, "refresh requests the tabs sent");
    assert.deepEqual(statuses, [200]);
  });

  test("without Web Locks: concurrent refreshes all succeed within the grace window", { timeout: 60_000 }, async () => {
    const { refreshes, outcomes, sent, statuses } = await refreshAtOnce({ webLocks: false });
    assert.ok(refreshes.all >= 1 && refreshes.all <= 3, `${refreshes.all} refreshes for three tabs`);
    assert.equal(refreshes.ok, refreshes.all, "every refresh succeeded");
    // Concurrent ones presented the same cookie: answered from the grace window, never taken for theft.
    assert.equal(outcomes.reuse_detected, 0, "no reuse detected");
    assert.equal(outcomes.rotated + outcomes.grace_replay, refreshes.all);
    assert.equal(sent, refreshes.all);
    assert.ok(statuses.every((status) => status === 200), `refresh statuses ${statuses}`);
  });
});
