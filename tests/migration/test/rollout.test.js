// The reference plan under continuous traffic: off → canary (two named users) → rollout 0.1% → 5% → 20% → 50% →
// 100% → tokens-only, while 40 virtual users keep calling the protected API. Nobody is logged out, no request
// fails, a user once steered to tokens stays steered, and at the end everyone is on tokens.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import {
  describeFailures,
  describeRollout,
  eventually,
  redact,
  sleep,
  startLoad,
  startStack,
  sumMetric,
  userNames,
} from "./harness.js";

const CANARY = ["staff-00", "user-07"];
const USERS = [...userNames(38), "staff-00", "staff-01"];
// The phases in order, and how many of the 40 users each must steer to tokens (null: a share of them).
const STEPS = [
  { args: ["--phase", "canary"], expect: "canary", steered: CANARY.length },
  { args: ["--phase", "rollout", "--percent", "0.1"], expect: "rollout 0.1%", steered: null },
  { args: ["--phase", "rollout", "--percent", "5"], expect: "rollout 5%", steered: null },
  { args: ["--phase", "rollout", "--percent", "20"], expect: "rollout 20%", steered: null },
  { args: ["--phase", "rollout", "--percent", "50"], expect: "rollout 50%", steered: null },
  { args: ["--phase", "rollout", "--percent", "100"], expect: "rollout 100%", steered: USERS.length },
  { args: ["--phase", "tokens-only"], expect: "tokens-only", steered: USERS.length },
];

let stack;
before(async () => {
  // Gates as the reference plan's canary gate (no server error at all), with a window and a latency bound sized for
  // a debug build on a small machine: every advance below must pass them, unforced.
  stack = await startStack({ gates: { window: "10s", min_requests: 5, max_error_rate: 0.001, max_p95: "1s" } });
});
after(async () => {
  await stack?.close();
});

test("moving from off to tokens-only in steps under load never fails a request and never logs anyone out", async (t) => {
  const started = Date.now();
  const cookies = await stack.legacyLogins(USERS);
  // Tokens are also refreshed every 20 iterations (besides before they expire): refreshes run through every step.
  const load = startLoad(stack, cookies, { maxMs: 120_000, refreshEvery: 20 });
  const canaryArgs = CANARY.flatMap((user) => ["--canary-user", user]);
  const steeredAt = [];
  try {
    await load.iterations(2);
    assert.deepEqual(load.steered("token"), [], "phase off steers nobody to tokens");
    let before = [];
    for (const step of STEPS) {
      // As an operator would: advance once the gate holds on the current phase's own token traffic (phase off has
      // none, and needs no gate).
      if (step !== STEPS[0]) {
        await eventually(`the gate to hold before ${step.expect}`, async () => (await stack.status()).gate?.closed_because === "", {
          timeout: 15_000,
          interval: 250,
        });
      }
      await stack.setPhase([...step.args, ...canaryArgs, "--actor", "release-manager", "--reason", `reference plan: ${step.expect}`]);
      // A change reaches every node within a second; then every user asks again.
      await sleep(1_000);
      await load.iterations(2);
      const steered = load.steered("token");
      steeredAt.push({ step: step.expect, steered: steered.length });
      if (step.steered !== null) assert.equal(steered.length, step.steered, `${step.expect}: ${steered.join(", ")}`);
      for (const user of [...before, ...CANARY]) {
        assert.ok(steered.includes(user), `${step.expect}: ${user}, steered to tokens before, is steered back`);
      }
      before = steered;
    }
    assert.deepEqual(load.steered("token"), [...USERS].sort(), "everyone is steered to tokens");
    // Long enough for every user to migrate and for tokens to be refreshed before they expire.
    await load.iterations(3);
  } finally {
    await load.stop();
  }
  t.diagnostic(`steered to tokens per step: ${JSON.stringify(steeredAt)}`);
  t.diagnostic(`requests: ${JSON.stringify(load.counts)}`);
  assert.deepEqual(load.failures, [], `failed requests:\n${describeFailures(load.failures)}`);
  assert.ok(load.counts.refresh > 0, "tokens were refreshed during the rollout");

  // Everyone is on tokens and still logged in: the token works and the Tessera session refreshes.
  for (const user of load.users) {
    assert.ok(user.token, `${user.name} was migrated`);
    // Steered to sessions in phase off, then to tokens once, and never back.
    assert.deepEqual(user.steerLog.map((entry) => entry.method), ["session", "token"], `${user.name}: ${JSON.stringify(user.steerLog)}`);
    const refreshed = await stack.refresh(user.refreshCookie, user.csrf);
    assert.equal(refreshed.status, 200, `${user.name}: ${JSON.stringify(redact(refreshed.body))}`);
    const answer = await stack.apiMe({ bearer: refreshed.body.access_token });
    assert.equal(answer.status, 200);
    assert.equal(answer.body.user, user.name);
    assert.equal(answer.body.method, "token");
    assert.equal(answer.headers.get("deprecation"), null, "token requests carry no deprecation notice");
  }

  // tokens-only: the legacy session still works, read-only, with a deprecation notice dated at the phase's start.
  for (const [name, cookie] of cookies) {
    const answer = await stack.apiMe({ cookie });
    assert.equal(answer.status, 200, `${name}: ${answer.status}`);
    assert.equal(answer.body.method, "session");
    assert.equal(answer.body.user, name);
    const deprecation = answer.headers.get("deprecation");
    assert.match(deprecation ?? "", /^@\d+$/, `${name}: Deprecation ${deprecation}`);
    const since = Number(deprecation.slice(1)) * 1000;
    assert.ok(since >= started - 1_000 && since <= Date.now(), `the deprecation date is when tokens-only began: ${deprecation}`);
    assert.equal(answer.body.deprecation, deprecation, "the gateway tells the application too");
  }

  // The history records every step, in order, with who made it.
  const status = await stack.status();
  assert.equal(status.phase, "tokens-only");
  assert.deepEqual(status.history.map((change) => describeRollout(change.to)), STEPS.map((step) => step.expect));
  for (const change of status.history) {
    assert.equal(change.actor, "release-manager", `who made the change: ${JSON.stringify(change)}`);
    assert.equal(change.kind, "set", "no step was forced past its gate");
    assert.match(change.reason, /^reference plan: /);
  }
  assert.deepEqual(status.history.map((change) => describeRollout(change.from)), ["off", ...STEPS.slice(0, -1).map((step) => step.expect)]);
  assert.equal(status.last_auto_rollback ?? null, null);

  const metrics = await stack.metrics();
  assert.equal(sumMetric(metrics, "tessera_migration_phase"), 3, "tokens-only is phase 3");
  assert.ok(sumMetric(metrics, "tessera_migration_migrated_total") >= USERS.length);
  assert.ok(sumMetric(metrics, "tessera_auth_requests_total", { method: "session" }) >= load.counts["api-session"]);
  assert.ok(sumMetric(metrics, "tessera_auth_requests_total", { method: "token" }) >= load.counts["api-token"]);
  assert.equal(sumMetric(metrics, "tessera_migration_auto_rollbacks_total"), 0);
});
