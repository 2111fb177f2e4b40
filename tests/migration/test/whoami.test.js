// The other legacy adapter: Tessera asks the legacy app's "who am I" endpoint (GET /whoami with the browser's
// cookie) instead of reading its session store. Same identity at the upstream, a bounded timeout, fail closed, and
// a cached answer that does not outlive a logout by more than the cache's lifetime.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { LEGACY_COOKIE, eventually, redact, sessionIdOf, signSessionId, startStack } from "./harness.js";

let stack;
before(async () => {
  stack = await startStack({ adapter: "whoami" });
  await stack.setPhase(["--phase", "canary", "--canary-user", "staff-who", "--reason", "whoami test"]);
});
after(async () => {
  stack?.legacyRedis?.resume();
  await stack?.close();
});

test("with the who-am-I adapter a legacy session and a migrated token reach the upstream as the same user", async () => {
  const cookie = await stack.legacyLogin("staff-who");
  const session = await stack.apiMe({ cookie });
  assert.equal(session.status, 200, JSON.stringify(redact(session.body)));
  assert.deepEqual(session.body, { user: "staff-who", roles: "staff", method: "session", deprecation: null });

  assert.deepEqual(await stack.steering(cookie), { status: 200, phase: "canary", method: "token" });
  const migrated = await stack.migrate(cookie);
  assert.equal(migrated.status, 200, JSON.stringify(redact(migrated.body)));
  const token = await stack.apiMe({ bearer: migrated.body.access_token });
  assert.deepEqual(token.body, { user: "staff-who", roles: "staff", method: "token", deprecation: null });
});

test("with the who-am-I adapter cookies the legacy app refuses are refused", async () => {
  const cookie = await stack.legacyLogin("user-who");
  const id = sessionIdOf(cookie);
  for (const forged of [signSessionId(id, "not-one-of-the-apps-secrets"), encodeURIComponent(`s:${id}`), "garbage"]) {
    assert.equal((await stack.apiMe({ cookie: forged })).status, 401);
  }
  assert.equal((await stack.apiMe({})).status, 401);
});

test("a legacy logout is honoured once the cached answer expires", async () => {
  const cookie = await stack.legacyLogin("user-leaves");
  assert.equal((await stack.apiMe({ cookie })).status, 200);
  const logout = await fetch(`${stack.origin}/logout`, { method: "POST", headers: { cookie: `${LEGACY_COOKIE}=${cookie}` } });
  assert.equal(logout.status, 204);
  const loggedOut = Date.now();
  // cache_ttl is 2 s in the test configuration.
  await eventually("the logged-out session to be refused", async () => (await stack.apiMe({ cookie })).status === 401, {
    timeout: 4_000,
  });
  assert.ok(Date.now() - loggedOut <= 3_500);
});

test("a who-am-I endpoint that hangs makes /api/ fail closed within the adapter's timeout", async () => {
  // A session Tessera has not seen yet (nothing cached), then the legacy app's store stalls: /whoami hangs.
  const cookie = await stack.legacyLogin("user-hangs");
  stack.legacyRedis.pause();
  try {
    for (let i = 0; i < 3; i += 1) {
      const started = Date.now();
      const answer = await stack.apiMe({ cookie });
      const took = Date.now() - started;
      assert.ok(answer.status >= 500 && answer.status <= 599, `/api/ answered ${answer.status}, not 5xx`);
      assert.ok(took < 3_000, `the answer took ${took} ms (the adapter's timeout is 500 ms)`);
    }
  } finally {
    stack.legacyRedis.resume();
  }
  await eventually("the session path to recover", async () => (await stack.apiMe({ cookie })).status === 200);
});
