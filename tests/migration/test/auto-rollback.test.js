// Automatic rollback: Tessera keeps its sessions in a Redis of its own; at rollout 20% (advanced from 5%) under
// load that Redis stalls (SIGSTOP), so the token path (/auth/migrate, /auth/refresh) fails or crawls. Within the
// trigger's window the rollout returns to 5% by itself, says so in `migrate status` and in a metric, and users on
// the legacy session never notice.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  describeFailures,
  describeRollout,
  describeStatus,
  sleep,
  startLoad,
  startStack,
  sumMetric,
  userNames,
} from "./harness.js";

const WINDOW_MS = 3_000;

let stack;
before(async () => {
  stack = await startStack({
    storeRedis: true,
    triggers: { window: "3s", min_requests: 20, rollback_error_rate: 0.05, rollback_p95: "1500ms" },
  });
});
after(async () => {
  stack?.storeRedis?.resume();
  await stack?.close();
});

/** `migrate status --json`, or null when it cannot answer right now (its store may be the one stalled). */
async function statusOrNull() {
  const result = await stack.migrateCli(["status", "--json"], { timeout: 5_000 });
  if (result.code !== 0) return null;
  try {
    return JSON.parse(result.stdout);
  } catch {
    return null;
  }
}

test("an error spike on the token path rolls the rollout back to the previous phase within its window", async (t) => {
  const cookies = await stack.legacyLogins(userNames(40));
  // Token users refresh every other iteration: the token path stays busy enough to judge.
  const load = startLoad(stack, cookies, { maxMs: 90_000, refreshEvery: 2 });
  let rolledBack = null;
  let paused = false;
  let atFive;
  try {
    await load.iterations(1);
    await stack.setPhase(["--phase", "rollout", "--percent", "5", "--reason", "step 1"]);
    await sleep(1_000);
    await load.iterations(2);
    atFive = load.steered("token");
    await stack.setPhase(["--phase", "rollout", "--percent", "20", "--reason", "step 2"]);
    await sleep(1_000);
    await load.iterations(3);
    const before = await stack.status();
    assert.equal(describeStatus(before), "rollout 20%");
    assert.equal(before.last_auto_rollback ?? null, null, "no trigger fired while the token path was healthy");
    assert.deepEqual(load.failures, [], `failures before the spike:\n${describeFailures(load.failures)}`);
    assert.ok(load.steered("token").length > 0, "someone is on the token path");
    const failuresBefore = load.failures.length;

    stack.storeRedis.pause();
    paused = true;
    const spikeStarted = Date.now();
    const deadline = spikeStarted + WINDOW_MS + 7_000;
    t.diagnostic(`store paused at ${spikeStarted}`);
    while (Date.now() < deadline) {
      const polled = Date.now();
      const status = await statusOrNull();
      if (process.env.DEBUG_MIGRATION) t.diagnostic(`+${polled - spikeStarted} ms: status ${status ? describeStatus(status) : "unavailable"} after ${Date.now() - polled} ms`);
      if (status && describeStatus(status) === "rollout 5%" && status.last_auto_rollback) {
        rolledBack = { status, after: Date.now() - spikeStarted };
        break;
      }
      await sleep(200);
    }
    t.diagnostic(`token-path failures during the spike: ${load.failures.length - failuresBefore}`);
    if (process.env.DEBUG_MIGRATION) {
      // Where each user was steered when (ms since the load started), for users steered more than once.
      const pausedAt = spikeStarted - load.startedAt;
      t.diagnostic(`the store stalled ${pausedAt} ms into the load`);
      for (const user of load.users) {
        if (user.steerLog.length > 2) t.diagnostic(`${user.name}: ${JSON.stringify(user.steerLog.map((e) => [e.at, e.method]))}`);
      }
    }
    stack.storeRedis.resume();
    paused = false;
    if (!rolledBack) {
      // Say what happened instead: Tessera's own account of its triggers, and the rollout once the store is back.
      const said = stack.tessera.output().split("\n").filter((line) => /trigger|rollback/i.test(line)).slice(-3);
      await sleep(2_000);
      const later = await statusOrNull();
      assert.fail(
        `no automatic rollback within ${WINDOW_MS + 7_000} ms while Tessera's store was stalled.\n` +
          `tessera logged:\n${said.join("\n")}\n2 s after the store came back: ${later ? describeStatus(later) : "no status"}, ` +
          `last_auto_rollback ${JSON.stringify(later?.last_auto_rollback ?? null)}`,
      );
    }
    t.diagnostic(`rolled back ${rolledBack.after} ms after the store stalled`);

    // Users on the legacy session kept working throughout, and keep working; the users steered to tokens are
    // those of 5% again.
    await sleep(500);
    await load.iterations(2);
    assert.deepEqual(load.steered("token"), atFive);
  } finally {
    if (paused) stack.storeRedis.resume();
    await load.stop();
  }
  t.diagnostic(`requests: ${JSON.stringify(load.counts)}`);
  const sessionFailures = load.failures.filter((failure) => failure.what === "GET /api/me (session)");
  assert.deepEqual(sessionFailures, [], `legacy-session requests failed:\n${describeFailures(sessionFailures)}`);

  const { status } = rolledBack;
  const change = status.last_auto_rollback;
  assert.equal(describeRollout(change.from), "rollout 20%");
  assert.equal(describeRollout(change.to), "rollout 5%");
  assert.ok(typeof change.actor === "string" && change.actor.length > 0, JSON.stringify(change));
  assert.match(change.reason, /error rate|latency|p95/i, "the reason names the trigger that fired");
  assert.equal(describeRollout(status.history.at(-1).to), "rollout 5%");

  const metrics = await stack.metrics();
  const fired = sumMetric(metrics, "tessera_migration_auto_rollbacks_total");
  t.diagnostic(`tessera_migration_auto_rollbacks_total = ${fired}`);
  assert.ok(fired > 0, "the automatic rollback is counted");
  assert.equal(sumMetric(metrics, "tessera_migration_rollout_percent"), 5);
});
