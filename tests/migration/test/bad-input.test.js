// Bad input over HTTP and the CLI: an invalid rollout is refused whole (the running one stays), a rollout may not
// advance past a gate that does not hold unless forced, and a legacy session store that is stalled or down makes
// the gateway fail closed, never let a request through.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { describeStatus, eventually, redact, startStack } from "./harness.js";

const CANARY = "staff-gate";
let stack;
before(async () => {
  // A gate that never holds (it needs more token-path requests than the test sends): advancing needs --force.
  stack = await startStack({ gates: { window: "5s", min_requests: 1_000_000 } });
});
after(async () => {
  stack?.legacyRedis?.resume();
  await stack?.close();
});

/** What of the status must not change when a change is refused. */
const essentials = (status) => ({
  phase: describeStatus(status),
  canary_users: status.canary_users,
  segments: status.segments,
  version: status.version,
  history: status.history.length,
});

test("advancing while the gate does not hold is refused unless forced; going back needs no gate", async () => {
  assert.equal((await stack.status()).phase, "off");
  // Off has no token traffic to judge: the first step needs no gate.
  await stack.setPhase(["--phase", "canary", "--canary-user", CANARY, "--reason", "first step"]);
  const canary = await stack.status();
  assert.equal(canary.phase, "canary");

  const refused = await stack.migrateCli(["set", "--phase", "rollout", "--percent", "5", "--canary-user", CANARY, "--reason", "try"]);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /gate/i, refused.stderr);
  assert.deepEqual(essentials(await stack.status()), essentials(canary), "the refused change changed nothing");

  await stack.setPhase(["--phase", "rollout", "--percent", "5", "--canary-user", CANARY, "--force", "--reason", "forced past the gate"]);
  const forced = await stack.status();
  assert.equal(describeStatus(forced), "rollout 5%");
  const last = forced.history.at(-1);
  assert.equal(last.kind, "forced");
  assert.equal(last.reason, "forced past the gate");

  // Back to canary: no gate guards going back.
  await stack.setPhase(["--phase", "canary", "--canary-user", CANARY, "--reason", "back"]);
  const back = await stack.status();
  assert.equal(back.phase, "canary");
  assert.equal(back.history.at(-1).kind, "set");
});

test("an invalid rollout is refused whole with a clear error, and the running one stays", async () => {
  const before = await stack.status();
  assert.equal(before.phase, "canary");

  const percent = await stack.migrateCli(["set", "--phase", "rollout", "--percent", "150", "--force", "--reason", "typo"]);
  assert.notEqual(percent.code, 0, "percent 150 is refused");
  assert.equal(percent.stdout.trim(), "");
  assert.match(percent.stderr, /150/, percent.stderr);
  assert.match(percent.stderr, /percent/i, percent.stderr);
  assert.equal(percent.stderr.trim().split("\n").length, 1, `one line: ${percent.stderr}`);

  const invalid = {
    "percent 0": ["--phase", "rollout", "--percent", "0"],
    "negative percent": ["--phase", "rollout", "--percent", "-5"],
    "percent not a number": ["--phase", "rollout", "--percent", "lots"],
    "percent NaN": ["--phase", "rollout", "--percent", "NaN"],
    "rollout without a percent": ["--phase", "rollout"],
    "a percent outside phase rollout": ["--phase", "canary", "--percent", "5"],
    "an unknown phase": ["--phase", "sideways"],
    "an empty canary user": ["--phase", "canary", "--canary-user", ""],
    "a canary user with a control character": ["--phase", "canary", "--canary-user", "bad\u0007user"],
    "a segment that is not a role": ["--phase", "canary", "--segment-role", "not a role!"],
  };
  for (const [what, args] of Object.entries(invalid)) {
    const result = await stack.migrateCli(["set", ...args, "--force", "--reason", what]);
    assert.notEqual(result.code, 0, `${what} is refused`);
    assert.ok(result.stderr.length > 0, `${what}: an error is printed`);
  }

  // The admin API refuses the same, whole.
  for (const body of [
    { phase: "rollout", percent: 150, actor: "test", reason: "typo", force: true },
    { phase: "sideways", actor: "test", reason: "typo" },
    { phase: "rollout", percent: 20, canary_users: [""], actor: "test", reason: "typo", force: true },
    { phase: "rollout", percent: "20", actor: "test", reason: "typo", force: true },
  ]) {
    const answer = await stack.admin("PUT", "/admin/v1/migration", body);
    // 400 for an invalid rollout, 422 for a body that is not a rollout at all (a string where a number goes).
    assert.ok([400, 422].includes(answer.status), `${JSON.stringify(body)} answered ${answer.status}: ${JSON.stringify(redact(answer.body))}`);
    assert.equal(answer.body.error, "invalid_request");
  }
  const wrongToken = await fetch(`${stack.tesseraOrigin}/admin/v1/migration/rollback`, {
    method: "POST",
    headers: { authorization: "Bearer not-the-admin-token-not-the-admin-token", "content-type": "application/json" },
    body: JSON.stringify({ actor: "mallory", reason: "nope" }),
  });
  assert.equal(wrongToken.status, 401);

  const after = await stack.status();
  assert.deepEqual(essentials(after), essentials(before), "the running rollout is unchanged");
  const steer = await stack.steering(await stack.legacyLogin(CANARY));
  assert.deepEqual(steer, { status: 200, phase: "canary", method: "token" });
});

test("a legacy session store that is stalled or down makes /api/ fail closed, and tokens keep working", async () => {
  const user = await stack.legacyLogin("user-plain");
  const canary = await stack.legacyLogin(CANARY);
  const migrated = await stack.migrate(canary);
  assert.equal(migrated.status, 200, JSON.stringify(redact(migrated.body)));
  const token = migrated.body.access_token;
  assert.equal((await stack.apiMe({ cookie: user })).status, 200);

  const refusedWhileDown = async (what) => {
    for (let i = 0; i < 5; i += 1) {
      const started = Date.now();
      const answer = await stack.apiMe({ cookie: user });
      const took = Date.now() - started;
      assert.ok(answer.status >= 500 && answer.status <= 599, `${what}: /api/ answered ${answer.status}, not 5xx`);
      assert.ok(took < 3_000, `${what}: the answer took ${took} ms (the adapter's timeout is 250 ms)`);
    }
    const migrate = await stack.migrate(canary);
    assert.notEqual(migrate.status, 200, `${what}: POST /auth/migrate must not start a session it cannot check`);
    assert.equal(migrate.refreshCookie, null);
    // Tokens do not depend on the legacy store.
    const withToken = await stack.apiMe({ bearer: token });
    assert.deepEqual([withToken.status, withToken.body.method], [200, "token"], what);
  };

  stack.legacyRedis.pause();
  try {
    await refusedWhileDown("stalled legacy Redis");
  } finally {
    stack.legacyRedis.resume();
  }
  await eventually("the session path to recover", async () => (await stack.apiMe({ cookie: user })).status === 200);

  await stack.legacyRedis.stop();
  await refusedWhileDown("stopped legacy Redis");
});
