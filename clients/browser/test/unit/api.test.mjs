import assert from 'node:assert/strict';
import { test } from 'node:test';
import { json, loggedIn, setup } from './helpers.mjs';

const S = 1000;
const API = 'https://api.example/me';

test('401 from an API: one refresh, one retry with the new token and the same POST body', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.server.valid.clear(); // the server no longer accepts at-1
  const res = await env.run(c.fetch(API, { method: 'POST', body: 'payload' }));
  assert.equal(res.status, 200);
  assert.equal((await res.json()).body, 'payload');
  const api = env.server.calls.filter((x) => x.path === '/me');
  assert.deepEqual(api.map((x) => x.headers.authorization), ['Bearer at-1', 'Bearer at-2']);
  assert.equal(env.server.count('/auth/refresh'), 1);
});

test('API still 401 after a good refresh: retried once, the 401 returned, no loop', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.server.handlers['/me'] = () => json(401, { error: 'invalid_token' });
  const res = await env.run(c.fetch(API));
  assert.equal(res.status, 401);
  assert.equal(env.server.count('/me'), 2);
  assert.equal(env.server.count('/auth/refresh'), 1);
  assert.equal(c.isLoggedIn(), true);
  assert.deepEqual(c.ev.logout, []);
});

test("an unreachable API: client.fetch rejects with NetworkError, the caller's abort stays an AbortError, no logout", async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.server.handlers['/me'] = () => Promise.reject(new TypeError('Failed to fetch'));
  await assert.rejects(env.run(c.fetch(API)), (e) => e.code === 'network' && e.name === 'NetworkError');
  env.server.handlers['/me'] = () => Promise.reject(new DOMException('aborted', 'AbortError'));
  await assert.rejects(env.run(c.fetch(API)), (e) => e instanceof DOMException && e.name === 'AbortError');
  assert.equal(c.isLoggedIn(), true);
  assert.deepEqual(c.ev.logout, []);
});

test('N parallel 401s cause one refresh and one retry each', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.server.valid.clear();
  const all = await env.run(Promise.all(Array.from({ length: 4 }, () => c.fetch(API))));
  assert.deepEqual(all.map((r) => r.status), [200, 200, 200, 200]);
  assert.equal(env.server.count('/auth/refresh'), 1);
  assert.equal(env.server.count('/me'), 8);
});

test('refresh rejected (401 invalid_grant): logout session_ended, broadcast, state cleared', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  await env.run(c.getAccessToken()); // one successful refresh first: not "right after login"
  env.clock.jump(290 * S);
  env.server.cookie = null;
  env.server.handlers['/auth/refresh'] = () => json(401, { error: 'invalid_grant', error_description: 'refresh token revoked' });
  assert.equal(await env.run(c.getAccessToken()), null);
  assert.deepEqual(c.ev.logout, ['session_ended']);
  assert.equal(c.isLoggedIn(), false);
  assert.equal(c.expiresAt(), null);
  assert.deepEqual(env.broadcasts.at(-1), { type: 'logout' });
});

for (const [name, handler, code] of [
  ['network errors', () => Promise.reject(new TypeError('Failed to fetch')), 'network'],
  ['5xx answers', () => new Response('<html>bad gateway</html>', { status: 502 }), 'server'],
]) {
  test(`${name} during refresh: bounded retries with backoff, reported, never a logout`, async (t) => {
    const env = setup(t);
    const c = await loggedIn(env);
    env.server.handlers['/auth/refresh'] = handler;
    env.clock.jump(250 * S); // due but the old token is still valid
    const p = c.getAccessToken();
    await env.clock.advance(0);
    assert.equal(env.server.count('/auth/refresh'), 1); // backoff: no immediate hammering
    await env.clock.advance(20 * S);
    assert.equal(await p, 'at-1'); // still valid: the caller keeps working
    assert.equal(env.server.count('/auth/refresh'), 4);
    assert.deepEqual(c.ev.errors.map((e) => e.code), [code]);
    assert.equal(c.isLoggedIn(), true);
    assert.deepEqual(c.ev.logout, []);
    // once the token expired a failing refresh is an error for the caller, still not a logout
    env.clock.jump(60 * S);
    const p2 = assert.rejects(c.getAccessToken(), (e) => e.code === code);
    await env.clock.advance(20 * S);
    await p2;
    assert.equal(c.isLoggedIn(), true);
  });
}

test('a refresh in flight during logout is discarded and does not resurrect the session', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  let answer;
  env.server.handlers['/auth/refresh'] = () => new Promise((r) => (answer = r));
  env.clock.jump(290 * S);
  const p = c.getAccessToken();
  await env.clock.advance(0);
  assert.ok(answer, 'refresh reached the server');
  await c.logout();
  answer(json(200, { access_token: 'resurrected', token_type: 'Bearer', expires_in: 300, csrf_token: 'c' }));
  assert.equal(await env.run(p), null);
  assert.equal(c.isLoggedIn(), false);
  assert.deepEqual(c.ev.logout, ['user']);
  assert.ok(!env.broadcasts.some((m) => m.token === 'resurrected'));
});

test('a new login while an old refresh is pending is neither overwritten by it nor joins it', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  let answer;
  env.server.handlers['/auth/refresh'] = () => new Promise((r) => (answer = r));
  env.clock.jump(290 * S);
  const old = c.getAccessToken();
  await env.clock.advance(0);
  await c.logout();
  await c.login('alice', 'pw');
  delete env.server.handlers['/auth/refresh'];
  env.clock.jump(290 * S);
  const fresh = c.getAccessToken(); // a flight of its own, waiting for the lock the old one holds
  answer(json(200, { access_token: 'stale', token_type: 'Bearer', expires_in: 300, csrf_token: 'c' }));
  assert.notEqual(await env.run(old), 'stale');
  assert.equal(await env.run(fresh), 'at-3');
  assert.equal(await c.getAccessToken(), 'at-3');
});

test('init: session cookie present → refresh with the session csrf_token → logged in', async (t) => {
  const env = setup(t);
  env.server.cookie = 'rt';
  const c = env.client();
  assert.equal(await env.run(c.init()), true);
  assert.equal(c.isLoggedIn(), true);
  const [session, refresh] = env.server.calls;
  assert.equal(session.path, '/auth/session');
  assert.equal(session.credentials, 'include');
  assert.equal(refresh.headers['x-csrf-token'], 'csrf-1');
});

test('init: 401 → logged out quietly', async (t) => {
  const env = setup(t);
  const c = env.client();
  assert.equal(await c.init(), false);
  assert.deepEqual(c.ev.errors, []);
  assert.deepEqual(c.ev.logout, []);
  assert.equal(env.server.count('/auth/refresh'), 0);
});

for (const [name, answer, code] of [
  ['500', () => json(500, { error: 'server_error' }), 'server'],
  ['server down', () => Promise.reject(new TypeError('Failed to fetch')), 'network'],
  ['an HTML page', () => new Response('<!doctype html><p>portal', { status: 200 }), 'invalid_response'],
  ['JSON without csrf_token', () => json(200, { session: {} }), 'invalid_response'],
]) {
  test(`init: ${name} → onError(${code}), false, consistent state`, async (t) => {
    const env = setup(t);
    env.server.handlers['/auth/session'] = answer;
    const c = env.client();
    assert.equal(await c.init(), false);
    assert.deepEqual(c.ev.errors.map((e) => e.code), [code]);
    assert.equal(c.isLoggedIn(), false);
    assert.equal(await c.getAccessToken(), null);
  });
}

test('sessions() and endSession() use the Bearer token; logged out → NotLoggedInError', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  assert.deepEqual(await c.sessions(), [{ id: 's1', current: true }]);
  await c.endSession('a/b');
  assert.equal(env.server.calls.at(-1).url, 'https://id.example/auth/sessions/a%2Fb');
  assert.equal(env.server.calls.at(-1).method, 'DELETE');
  await c.logout();
  await assert.rejects(c.sessions(), (e) => e.code === 'not_logged_in');
});

test('ending this tab\'s own session through endSession() logs every tab out at once; another session does not', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  const list = await env.run(c.sessions());
  assert.equal(list.find((s) => s.current).id, 's1');
  await env.run(c.endSession('s2'));
  assert.equal(c.isLoggedIn(), true, 'another session ended: this tab goes on');
  await env.run(c.endSession('s1'));
  assert.equal(c.isLoggedIn(), false);
  assert.deepEqual(c.ev.logout, ['user']);
  assert.deepEqual(env.broadcasts.at(-1), { type: 'logout' }, 'the other tabs are told');
});

test('logoutEverywhere: POST /auth/logout-all with Bearer, then logged out everywhere', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  await c.logoutEverywhere();
  const call = env.server.calls.at(-1);
  assert.equal(call.path, '/auth/logout-all');
  assert.equal(call.headers.authorization, 'Bearer at-1');
  assert.deepEqual(c.ev.logout, ['everywhere']);
  assert.deepEqual(env.broadcasts.at(-1), { type: 'logout' });
});

test('logout tells the server with Bearer (or the CSRF token once the access token expired)', async (t) => {
  const env = setup(t);
  const a = await loggedIn(env);
  await a.logout();
  const first = env.server.calls.at(-1);
  assert.equal(first.path, '/auth/logout');
  assert.equal(first.credentials, 'include'); // so the server's Set-Cookie clears the cookie
  assert.equal(first.headers.authorization, 'Bearer at-1');
  const b = await loggedIn(env);
  env.clock.jump(400 * S);
  await b.logout();
  const second = env.server.calls.at(-1);
  assert.equal(second.headers.authorization, undefined);
  assert.equal(second.headers['x-csrf-token'], 'csrf-1');
  assert.equal(b.isLoggedIn(), false);
});

test('logout that cannot reach the server still clears the tab, and says so', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.server.handlers['/auth/logout'] = () => Promise.reject(new TypeError('offline'));
  await assert.rejects(c.logout(), (e) => e.code === 'network');
  assert.equal(c.isLoggedIn(), false);
  assert.deepEqual(c.ev.logout, ['user']);
});
