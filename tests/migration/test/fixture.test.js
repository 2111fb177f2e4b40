// The fixture itself, without Tessera: the legacy app logs users in the way express-session + connect-redis do
// (signed connect.sid cookie, `sess:<id>` JSON in Redis), and the cookies this suite forges for the other tests
// are signed exactly as express-session signs them, so that "a cookie signed with the old secret is accepted" and
// "a wrongly signed cookie is refused" test what they claim to.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { LEGACY_COOKIE, sessionIdOf, signSessionId, startStack } from "./harness.js";

let stack;
before(async () => {
  stack = await startStack({ tessera: false });
});
after(async () => {
  await stack?.close();
});

const whoami = async (cookie) => {
  const response = await fetch(`${stack.origin}/whoami`, {
    headers: cookie === undefined ? {} : { cookie: `${LEGACY_COOKIE}=${cookie}` },
    signal: AbortSignal.timeout(5_000),
  });
  return { status: response.status, body: await response.json() };
};

test("a legacy login through nginx sets a signed connect.sid and keeps the user in Redis under sess:<id>", async () => {
  const response = await fetch(`${stack.origin}/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "staff-ann" }),
  });
  assert.equal(response.status, 200);
  const setCookie = response.headers.getSetCookie().find((line) => line.startsWith(`${LEGACY_COOKIE}=`));
  assert.ok(setCookie, "the login sets connect.sid");
  assert.match(setCookie, /; HttpOnly/i);
  assert.match(setCookie, /; SameSite=Lax/i);
  assert.doesNotMatch(setCookie, /; Secure/i, "plain http on loopback");
  const cookie = setCookie.split(";")[0].slice(LEGACY_COOKIE.length + 1);
  assert.match(decodeURIComponent(cookie), /^s:[^.]+\.[A-Za-z0-9+/]+$/, "s:<id>.<signature without padding>");

  const session = await stack.legacySession(cookie);
  assert.deepEqual(session.user, { id: "staff-ann", roles: ["staff"] });
  assert.ok(Date.parse(session.cookie.expires) > Date.now());

  assert.deepEqual((await whoami(cookie)).body.roles, ["staff"]);
  const plain = await whoami(await stack.legacyLogin("bob"));
  assert.equal(plain.status, 200);
  assert.equal(plain.body.id, "bob");
  assert.deepEqual(plain.body.roles, ["user"]);
  assert.ok(plain.body.expires > Date.now() / 1000, "whoami names the session's expiry in Unix seconds");
});

test("the suite signs session ids exactly as express-session does, with either of the app's secrets", async () => {
  const cookie = await stack.legacyLogin("carol");
  const id = sessionIdOf(cookie);
  const [newest, older] = stack.secrets;
  assert.equal(signSessionId(id, newest), cookie, "the app signs new cookies with the newest secret");

  assert.equal((await whoami(signSessionId(id, older))).status, 200, "the older secret is still accepted");
  assert.equal((await whoami(signSessionId(id, "not-a-secret-of-the-app"))).status, 401);
  assert.equal((await whoami(encodeURIComponent(`s:${id}`))).status, 401, "unsigned");
  assert.equal((await whoami(id)).status, 401, "a bare session id");
  assert.equal((await whoami()).status, 401);
});

test("logout destroys the legacy session in Redis", async () => {
  const cookie = await stack.legacyLogin("dave");
  const response = await fetch(`${stack.origin}/logout`, {
    method: "POST",
    headers: { cookie: `${LEGACY_COOKIE}=${cookie}` },
  });
  assert.equal(response.status, 204);
  assert.equal(await stack.legacySession(cookie), null);
  assert.equal((await whoami(cookie)).status, 401);
});

test("the upstream behind /api/ is never reached when the gateway cannot ask Tessera", async () => {
  // Tessera is not running in this fixture-only stack: auth_request fails, and nginx fails closed.
  const response = await fetch(`${stack.origin}/api/me`, { headers: { "x-user-id": "mallory" } });
  assert.ok(response.status >= 500, `got ${response.status}`);
  assert.doesNotMatch(await response.text(), /mallory/);
});
