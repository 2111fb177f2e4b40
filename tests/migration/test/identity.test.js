// Dual authentication at the gateway: a user on the legacy session and the same user on a Tessera token reach the
// upstream with the same identity headers, told apart only by X-Auth-Method; legacy cookies are trusted only
// when express-session's signature checks out with one of the app's secrets and the session is live in Redis.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { LEGACY_COOKIE, REFRESH_COOKIE, redact, sessionIdOf, signSessionId, startStack } from "./harness.js";

let stack;
const cookies = new Map();
before(async () => {
  stack = await startStack();
  for (const [name, cookie] of await stack.legacyLogins(["staff-ann", "user-bob", "user-cy"])) cookies.set(name, cookie);
  await stack.setPhase(["--phase", "canary", "--canary-user", "staff-ann", "--canary-user", "user-bob", "--reason", "identity test"]);
});
after(async () => {
  await stack?.close();
});

/** The identity the upstream saw, and how the gateway let the request in. */
async function seenBy(auth, headers) {
  const answer = await stack.apiMe(auth, headers);
  assert.equal(answer.status, 200, `GET /api/me answered ${answer.status}: ${JSON.stringify(redact(answer.body))}`);
  return answer;
}

test("a user reaches the upstream with the same identity on the legacy session and on a Tessera token", async () => {
  for (const [name, roles] of [["staff-ann", "staff"], ["user-bob", "user"]]) {
    const session = await seenBy({ cookie: cookies.get(name) });
    assert.deepEqual(session.body, { user: name, roles, method: "session", deprecation: null });
    assert.equal(session.headers.get("deprecation"), null, "no deprecation notice before phase tokens-only");

    const steer = await stack.migrationStatus(cookies.get(name));
    assert.equal(steer.status, 200);
    assert.deepEqual([steer.body.phase, steer.body.method], ["canary", "token"]);
    assert.match(steer.headers.get("cache-control") ?? "", /no-store/);

    const migrated = await stack.migrate(cookies.get(name));
    assert.equal(migrated.status, 200, JSON.stringify(redact(migrated.body)));
    assert.equal(migrated.body.token_type, "Bearer");
    assert.equal(typeof migrated.body.access_token, "string");
    assert.equal(typeof migrated.body.csrf_token, "string");
    assert.equal(migrated.body.expires_in, 20);
    assert.equal(migrated.body.legacy_session, "kept");
    assert.ok(migrated.refreshCookie, "a refresh cookie is set, as by /auth/login");
    const setCookie = migrated.headers.getSetCookie().find((line) => line.startsWith(`${REFRESH_COOKIE}=`));
    assert.match(setCookie, /; Path=\/auth(;|$)/);
    assert.match(setCookie, /; HttpOnly/i);

    const token = await seenBy({ bearer: migrated.body.access_token });
    assert.deepEqual(token.body, { user: name, roles, method: "token", deprecation: null });
    assert.equal(token.body.user, session.body.user);
    assert.equal(token.body.roles, session.body.roles, "the roles are carried over from the legacy session");

    // legacy_session = "keep": the legacy cookie still works after the migration.
    assert.equal((await seenBy({ cookie: cookies.get(name) })).body.method, "session");

    // The new Tessera session refreshes like any other.
    const refreshed = await stack.refresh(migrated.refreshCookie, migrated.body.csrf_token);
    assert.equal(refreshed.status, 200, JSON.stringify(redact(refreshed.body)));
    assert.deepEqual((await seenBy({ bearer: refreshed.body.access_token })).body, token.body);
  }
});

test("a bearer token takes precedence over a legacy cookie sent along", async () => {
  const migrated = await stack.migrate(cookies.get("staff-ann"));
  assert.equal(migrated.status, 200);
  const both = await seenBy({ bearer: migrated.body.access_token, cookie: cookies.get("user-cy") });
  assert.equal(both.body.method, "token");
  assert.equal(both.body.user, "staff-ann");
});

test("identity headers a client sends are replaced by the gateway's, on both paths", async () => {
  const forged = { "x-user-id": "mallory", "x-user-roles": "admin", "x-auth-method": "token", "x-auth-deprecation": "no" };
  const session = await seenBy({ cookie: cookies.get("user-cy") }, forged);
  assert.deepEqual(session.body, { user: "user-cy", roles: "user", method: "session", deprecation: null });
  const migrated = await stack.migrate(cookies.get("user-bob"));
  const token = await seenBy({ bearer: migrated.body.access_token }, { ...forged, "x-auth-method": "session" });
  assert.deepEqual(token.body, { user: "user-bob", roles: "user", method: "token", deprecation: null });
});

test("a user the rollout does not steer to tokens stays on the legacy session", async () => {
  assert.deepEqual(await stack.steering(cookies.get("user-cy")), { status: 200, phase: "canary", method: "session" });
  const refused = await stack.migrate(cookies.get("user-cy"));
  assert.equal(refused.status, 409);
  assert.equal(refused.body.error, "not_in_rollout");
  assert.equal(refused.refreshCookie, null, "no Tessera session was started");
});

test("forged, unsigned, wrongly signed, expired and unknown legacy cookies are refused at /api/", async () => {
  const [newest] = stack.secrets;
  const valid = await stack.legacyLogin("user-dee");
  const id = sessionIdOf(valid);
  const otherId = sessionIdOf(await stack.legacyLogin("user-eve"));
  const signature = decodeURIComponent(valid).slice(decodeURIComponent(valid).lastIndexOf(".") + 1);

  // A session whose cookie has expired but whose key Redis has not dropped yet (a TTL longer than the cookie's).
  const expiredCookie = await stack.legacyLogin("user-old");
  const expired = await stack.legacySession(expiredCookie);
  expired.cookie.expires = new Date(Date.now() - 60_000).toISOString();
  await stack.legacyRedis.command("SET", `sess:${sessionIdOf(expiredCookie)}`, JSON.stringify(expired), "KEEPTTL");
  // A live key holding a session nobody logged in to (saveUninitialized-style): no user in it.
  const anonymousId = "anonymousSessionIdAAAAAAAAAAAAAAA";
  const anonymous = { cookie: { originalMaxAge: 86_400_000, expires: new Date(Date.now() + 86_400_000).toISOString(), httpOnly: true, path: "/" } };
  await stack.legacyRedis.command("SET", `sess:${anonymousId}`, JSON.stringify(anonymous), "EX", "3600");

  const refusedCookies = {
    "unsigned (s:<id>)": encodeURIComponent(`s:${id}`),
    "a bare session id": id,
    "signed with a secret the app does not have": signSessionId(id, "not-one-of-the-apps-secrets"),
    "another session's signature": encodeURIComponent(`s:${otherId}.${signature}`),
    "the id changed under its signature": encodeURIComponent(`s:${id.slice(0, -1)}${id.endsWith("A") ? "B" : "A"}.${signature}`),
    "a truncated signature": encodeURIComponent(`s:${id}.${signature.slice(0, -2)}`),
    "an empty signature": encodeURIComponent(`s:${id}.`),
    "properly signed, no such session": signSessionId("noSuchSessionIdBBBBBBBBBBBBBBBBBB", newest),
    "properly signed, expired session": expiredCookie,
    "properly signed, no user in the session": signSessionId(anonymousId, newest),
    "garbage": "%E0%A4%A",
    "empty": "",
    "long": `s%3A${"x".repeat(3_000)}.${signature}`,
  };
  const got = {};
  for (const [what, cookie] of Object.entries(refusedCookies)) {
    got[what] = (await stack.apiMe({ cookie })).status;
  }
  // A cookie planted beside the real one (connect.sid twice): which one would the app read? Refused.
  const planted = await stack.apiMe({}, { cookie: `${LEGACY_COOKIE}=${valid}; ${LEGACY_COOKIE}=${signSessionId(otherId, newest)}` });
  got["connect.sid twice"] = planted.status;
  assert.deepEqual(got, Object.fromEntries([...Object.keys(refusedCookies), "connect.sid twice"].map((what) => [what, 401])));

  // The same cookie properly signed is let in (so each refusal above is about what was changed).
  assert.equal((await stack.apiMe({ cookie: valid })).status, 200);
  // Logged out in the legacy app: refused at once.
  await fetch(`${stack.origin}/logout`, { method: "POST", headers: { cookie: `${LEGACY_COOKIE}=${valid}` } });
  assert.equal((await stack.apiMe({ cookie: valid })).status, 401);
  // No cookie at all.
  assert.equal((await stack.apiMe({})).status, 401);
  // Refusals are counted by method.
  assert.ok((await stack.metric("tessera_auth_errors_total", { method: "session" })) >= Object.keys(refusedCookies).length);
  // GET /auth/migrate steers nobody for a refused cookie, or none.
  for (const cookie of [refusedCookies["signed with a secret the app does not have"], undefined]) {
    assert.deepEqual(await stack.steering(cookie), { status: 200, phase: "canary", method: null });
  }
  // A refused cookie cannot start a Tessera session either.
  const migrate = await stack.migrate(refusedCookies["signed with a secret the app does not have"]);
  assert.equal(migrate.status, 401, JSON.stringify(redact(migrate.body)));
  assert.equal(migrate.refreshCookie, null);
});

test("a cookie signed with the app's older secret is accepted (secret rotation)", async () => {
  const [, older] = stack.secrets;
  const cookie = signSessionId(sessionIdOf(cookies.get("user-cy")), older);
  assert.notEqual(cookie, cookies.get("user-cy"));
  const answer = await seenBy({ cookie });
  assert.deepEqual(answer.body, { user: "user-cy", roles: "user", method: "session", deprecation: null });
  // The rollout judges the user, not the cookie: staff-ann is steered to tokens with an old-secret cookie too.
  const annOld = signSessionId(sessionIdOf(cookies.get("staff-ann")), older);
  assert.deepEqual(await stack.steering(annOld), { status: 200, phase: "canary", method: "token" });
});

test("a POST /auth/migrate from another origin is refused", async () => {
  const answer = await stack.migrate(cookies.get("staff-ann"), { origin: "http://evil.example" });
  assert.equal(answer.status, 403);
  assert.equal(answer.refreshCookie, null);
});

test("in phase done legacy sessions are refused, and tokens keep working", async () => {
  const migrated = await stack.migrate(cookies.get("staff-ann"));
  assert.equal(migrated.status, 200);
  await stack.setPhase(["--phase", "tokens-only", "--reason", "identity test"]);
  await stack.setPhase(["--phase", "done", "--reason", "identity test"]);
  const status = await stack.status();
  assert.equal(status.phase, "done");
  // A change reaches every node within a second.
  await new Promise((resolve) => setTimeout(resolve, 1_100));
  assert.equal((await stack.apiMe({ cookie: cookies.get("user-cy") })).status, 401);
  assert.equal((await stack.apiMe({ cookie: cookies.get("staff-ann") })).status, 401);
  const token = await seenBy({ bearer: migrated.body.access_token });
  assert.equal(token.body.method, "token");
});
