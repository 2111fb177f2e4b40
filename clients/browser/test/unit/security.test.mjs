import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as mod from '../../.test-build/tessera-browser.js';
import { json, loggedIn, setup } from './helpers.mjs';

const S = 1000;

test('the access token lives only in memory: no storage, no document.cookie, not in events or properties', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.clock.jump(290 * S);
  await env.run(c.getAccessToken());
  await env.run(c.fetch('https://api.example/me'));
  await c.sessions();
  assert.deepEqual(env.touched, []);
  const exposed = JSON.stringify([c.ev, Object.entries(c).map(([k, v]) => [k, typeof v === 'function' ? 'fn' : v])]);
  assert.ok(!exposed.includes('at-'), 'no token outside the closure');
  assert.deepEqual(Object.keys(c.ev.refreshed[0]), ['expiresAt']);
});

test('login and refresh send credentials include and the CSRF header to Tessera', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.clock.jump(290 * S);
  await env.run(c.getAccessToken());
  const [login, refresh] = env.server.calls;
  assert.equal(login.credentials, 'include');
  assert.equal(login.headers['content-type'], 'application/json');
  assert.equal(refresh.credentials, 'include');
  assert.equal(refresh.headers['x-csrf-token'], 'csrf-1');
  assert.equal(refresh.headers.authorization, undefined);
});

test('client.fetch to another origin adds only Authorization: no CSRF header, no extra credentials', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  await c.fetch('https://api.example/me');
  const call = env.server.calls.at(-1);
  assert.equal(call.headers.authorization, 'Bearer at-1');
  assert.equal(call.headers['x-csrf-token'], undefined);
  assert.equal(call.credentials, 'same-origin'); // fetch's default, not upgraded
  await c.fetch('https://api.example/me', { credentials: 'omit' });
  assert.equal(env.server.calls.at(-1).credentials, 'omit');
});

test("own endpoints are baseUrl's /auth endpoints, by origin and path segment after URL normalisation", async (t) => {
  const env = setup(t);
  const c = await loggedIn(env, { baseUrl: 'https://id.example/tessera/' });
  const sent = async (url) => {
    await c.fetch(url);
    const h = env.server.calls.at(-1);
    return [h.headers['x-csrf-token'] ?? null, h.credentials];
  };
  assert.deepEqual(await sent('https://id.example/tessera/auth/sessions'), ['csrf-1', 'include']);
  assert.deepEqual(await sent('https://ID.example:443/tessera/x/../auth/sessions'), ['csrf-1', 'include']);
  assert.deepEqual(await sent('https://id.example/tessera/api/orders'), [null, 'same-origin']);
  assert.deepEqual(await sent('https://id.example/tessera/authx/y'), [null, 'same-origin']);
  assert.deepEqual(await sent('https://id.example/tessera-evil/auth/x'), [null, 'same-origin']);
  assert.deepEqual(await sent('https://id.example/tessera/../auth/x'), [null, 'same-origin']);
  assert.deepEqual(await sent('http://id.example/tessera/auth/x'), [null, 'same-origin']);
  assert.deepEqual(await sent('https://id.example.evil/tessera/auth/x'), [null, 'same-origin']);
});

test('cookies disabled: login throws CookiesBlockedError without sending the password', async (t) => {
  const env = setup(t, { cookieEnabled: false });
  const c = env.client();
  await assert.rejects(c.login('alice', 'pw'), (e) => e.code === 'cookies_blocked');
  assert.equal(env.server.calls.length, 0);
  assert.equal(await c.init(), false);
  assert.deepEqual(c.ev.errors.map((e) => e.code), ['cookies_blocked']);
});

test('"no refresh cookie" right after login is reported as cookies_blocked', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.server.cookie = null; // the browser dropped the Set-Cookie
  env.clock.jump(290 * S);
  // Without the cookie the session cannot go on: it ends now, consistently, not at the token's expiry.
  assert.equal(await env.run(c.getAccessToken()), null);
  assert.deepEqual(c.ev.errors.map((e) => e.code), ['cookies_blocked']);
  assert.deepEqual(c.ev.logout, ['session_ended']);
  assert.equal(c.isLoggedIn(), false);
});

test('login: wrong password → InvalidCredentialsError; 429 → RateLimitedError with retryAfter; state unchanged', async (t) => {
  const env = setup(t);
  const c = env.client();
  await assert.rejects(c.login('alice', 'nope'), (e) => e.code === 'invalid_credentials');
  env.server.handlers['/auth/login'] = () => json(429, { error: 'slow_down' }, { 'retry-after': '7' });
  await assert.rejects(c.login('alice', 'pw'), (e) => e.code === 'rate_limited' && e.retryAfter === 7);
  assert.equal(c.isLoggedIn(), false);
});

for (const [name, answer] of [
  ['HTML', () => new Response('<html>oops</html>', { status: 200 })],
  ['malformed JSON', () => new Response('{"access_token": "x"', { status: 200 })],
  ['a JSON array', () => json(200, [1])],
  ['missing expires_in', () => json(200, { access_token: 'x', csrf_token: 'c' })],
  ['negative expires_in', () => json(200, { access_token: 'x', csrf_token: 'c', expires_in: -5 })],
  ['missing csrf_token', () => json(200, { access_token: 'x', expires_in: 300 })],
]) {
  test(`bad answer (${name}): login throws invalid_response; refresh keeps the old token`, async (t) => {
    const env = setup(t);
    const fresh = env.client({ lockName: 'another-app' }); // not a tab of the logged-in session
    const ok = await loggedIn(env);
    env.server.handlers['/auth/login'] = answer;
    env.server.handlers['/auth/refresh'] = answer;
    await assert.rejects(fresh.login('alice', 'pw'), (e) => e.code === 'invalid_response');
    assert.equal(fresh.isLoggedIn(), false);
    env.clock.jump(250 * S);
    assert.equal(await env.run(ok.getAccessToken()), 'at-1');
    assert.deepEqual(ok.ev.errors.map((e) => e.code), ['invalid_response']);
    assert.equal(ok.isLoggedIn(), true);
  });
}

test('a 401 without Tessera JSON (a proxy page) is not read as "session over"', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.server.handlers['/auth/refresh'] = () => new Response('<html>401</html>', { status: 401 });
  env.clock.jump(250 * S);
  await env.run(c.getAccessToken());
  assert.equal(c.isLoggedIn(), true);
  assert.deepEqual(c.ev.errors.map((e) => e.code), ['invalid_response']);
});

test('403 on refresh → CsrfError, no logout', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.server.csrf = 'rotated';
  env.clock.jump(250 * S);
  await env.run(c.getAccessToken());
  assert.deepEqual(c.ev.errors.map((e) => e.code), ['csrf']);
  assert.deepEqual(c.ev.logout, []);
});

test('a slow server is aborted by the timeout option: NetworkError, state unchanged', async (t) => {
  const env = setup(t);
  const c = env.client({ timeout: 3 * S });
  env.server.handlers['/auth/login'] = (call) =>
    new Promise((_, reject) => call.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError'))));
  const p = assert.rejects(c.login('alice', 'pw'), (e) => e.code === 'network' && /timed out/.test(e.message));
  await env.clock.advance(3 * S);
  await p;
  assert.equal(c.isLoggedIn(), false);
});

test('errors are TesseraError instances with stable codes and names', async (t) => {
  const env = setup(t);
  const c = env.client();
  const err = await c.login('alice', 'nope').catch((e) => e);
  assert.ok(err instanceof mod.TesseraError && err instanceof mod.InvalidCredentialsError);
  assert.equal(err.name, 'InvalidCredentialsError');
  assert.equal(err.code, 'invalid_credentials');
  const server = new mod.ServerError(503, undefined, 4);
  assert.ok(server instanceof mod.TesseraError && server.code === 'server' && server.status === 503 && server.retryAfter === 4);
});
