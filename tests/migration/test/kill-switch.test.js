// The kill switch under load: at rollout 50%, `tessera migrate rollback` steers every user back to the legacy
// session within a second, no request fails, and the tokens already issued keep working (and refreshing): a
// rollback logs nobody out.
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

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

test("the kill switch returns everyone to sessions within a second under load, with zero failed requests", async (t) => {
  const cookies = await stack.legacyLogins(userNames(40));
  const load = startLoad(stack, cookies, { maxMs: 60_000 });
  let holders;
  let switchedIn;
  try {
    await load.iterations(1);
    await stack.setPhase(["--phase", "rollout", "--percent", "50", "--reason", "half way"]);
    // Everyone steered to tokens has migrated.
    await eventually("the users steered to tokens to migrate", () => {
      const steered = load.users.filter((user) => user.steered === "token");
      return steered.length > 0 && steered.every((user) => user.token);
    });
    await load.iterations(1);
    holders = load.users.filter((user) => user.token);
    t.diagnostic(`${holders.length} of ${load.users.length} users on tokens before the rollback`);
    assert.ok(holders.length >= 5 && holders.length <= 35, `about half the users on tokens, not ${holders.length}`);

    const rollback = await stack.migrateCli(["rollback", "--reason", "kill switch drill"]);
    const switched = Date.now();
    assert.equal(rollback.code, 0, rollback.stderr);
    // Every user, asked directly (not through the load's own pace), is steered back to the legacy session.
    await eventually("every user to be steered back to sessions", async () => {
      const answers = await Promise.all([...cookies.values()].map((cookie) => stack.migrationStatus(cookie)));
      return answers.every((answer) => answer.status === 200 && answer.body.method === "session" && answer.body.phase === "off");
    }, { timeout: 3_000, interval: 20 });
    switchedIn = Date.now() - switched;
    t.diagnostic(`every user steered back to sessions ${switchedIn} ms after the rollback command returned`);
    assert.ok(switchedIn <= 1_000, `the kill switch took ${switchedIn} ms, more than a second`);

    // The load goes on: users use their legacy session again, token holders keep their tokens working.
    await sleep(1_000);
    await load.iterations(3);
  } finally {
    await load.stop();
  }
  t.diagnostic(`requests: ${JSON.stringify(load.counts)}`);
  assert.deepEqual(load.failures, [], `failed requests:\n${describeFailures(load.failures)}`);
  for (const user of load.users) assert.equal(user.steered, "session", `${user.name} is steered to ${user.steered}`);

  // Tokens already issued still work, and still refresh; a new migration is no longer offered.
  for (const user of holders) {
    const answer = await stack.apiMe({ bearer: user.token });
    assert.equal(answer.status, 200, `${user.name}: ${answer.status}`);
    assert.deepEqual([answer.body.user, answer.body.method], [user.name, "token"]);
    const refreshed = await stack.refresh(user.refreshCookie, user.csrf);
    assert.equal(refreshed.status, 200, `${user.name} was logged out by the rollback: ${JSON.stringify(redact(refreshed.body))}`);
    const session = await stack.apiMe({ cookie: user.cookie });
    assert.deepEqual([session.status, session.body.method], [200, "session"]);
  }
  const again = await stack.migrate(holders[0].cookie);
  assert.equal(again.status, 409);
  assert.equal(again.body.error, "not_in_rollout");

  const status = await stack.status();
  assert.equal(status.phase, "off");
  const last = status.history.at(-1);
  assert.equal(describeRollout(last.from), "rollout 50%");
  assert.equal(describeRollout(last.to), "off");
  assert.equal(last.reason, "kill switch drill");
  assert.ok(typeof last.actor === "string" && last.actor.length > 0, JSON.stringify(last));
  assert.equal(sumMetric(await stack.metrics(), "tessera_migration_phase"), 0);
});
