import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as mod from '../../.test-build/tessera-browser.js';
import { grant, json, setup } from './helpers.mjs';

const S = 1000;
const API = 'https://api.example/me';

/** POST /auth/migrate of a user steered to tokens: a session like login's (tokens, refresh cookie). */
function steered(env) {
  env.server.handlers['/auth/migrate'] = (call) => {
    if (call.method !== 'POST') return json(200, { phase: 'canary', method: 'token' });
    const s = env.server;
    const access_token = `at-${++s.n}`;
    s.valid.add(access_token);
    s.cookie = 'rt';
    return json(200, { access_token, token_type: 'Bearer', expires_in: s.life, csrf_token: s.csrf, legacy_session: 'kept' });
  };
}

test('migrate(): POST /auth/migrate {} with credentials, then a session exactly like a login', async (t) => {
  const env = setup(t);
  steered(env);
  const c = env.client();
  const other = env.client(); // another tab of the same origin
  assert.equal(await c.migrate(), undefined);
  const call = env.server.calls[0];
  assert.equal(call.method, 'POST');
  assert.equal(call.url, 'https://id.example/auth/migrate');
  assert.equal(call.credentials, 'include'); // the legacy cookie must travel
  assert.equal(call.headers['content-type'], 'application/json');
  assert.equal(call.body, '{}');
  assert.equal(c.isLoggedIn(), true);
  assert.equal(c.ev.refreshed.length, 1);
  // the access token is used for APIs
  await c.fetch(API);
  assert.equal(env.server.calls.at(-1).headers.authorization, 'Bearer at-1');
  // other tabs adopt it, as after a login
  assert.equal(env.broadcasts.at(-1).type, 'login');
  await env.clock.advance(0);
  assert.equal(other.isLoggedIn(), true);
  // refresh is planned (margin before expiry) and sends the CSRF token from the migrate answer
  await env.clock.advance(240 * S);
  const refresh = env.server.calls.filter((x) => x.path === '/auth/refresh');
  assert.equal(refresh.length, 1);
  assert.equal(refresh[0].headers['x-csrf-token'], 'csrf-1');
  assert.equal(await env.run(c.getAccessToken()), 'at-2');
  assert.deepEqual(c.ev.errors, []);
});

test('migrate(): a missing refresh cookie at the first refresh is reported as cookies_blocked, as after login', async (t) => {
  const env = setup(t);
  steered(env);
  const c = env.client();
  await c.migrate();
  env.server.cookie = null; // the browser dropped the Set-Cookie
  env.clock.jump(290 * S);
  assert.equal(await env.run(c.getAccessToken()), null);
  assert.deepEqual(c.ev.errors.map((e) => e.code), ['cookies_blocked']);
});

test('migrate(): 409 not_in_rollout → NotInRolloutError, no session, nothing broadcast', async (t) => {
  const env = setup(t);
  env.server.handlers['/auth/migrate'] = () => json(409, { error: 'not_in_rollout' });
  const c = env.client();
  const err = await c.migrate().catch((e) => e);
  assert.ok(err instanceof mod.NotInRolloutError && err instanceof mod.TesseraError);
  assert.equal(err.code, 'not_in_rollout');
  assert.equal(err.name, 'NotInRolloutError');
  assert.equal(c.isLoggedIn(), false);
  assert.equal(c.expiresAt(), null);
  assert.deepEqual(c.ev.refreshed, []);
  assert.deepEqual(env.broadcasts, []);
  await assert.rejects(c.fetch(API), (e) => e.code === 'not_logged_in');
});

test('a 409 with another error is not read as not_in_rollout', async (t) => {
  const env = setup(t);
  env.server.handlers['/auth/migrate'] = () => json(409, { error: 'conflict' });
  await assert.rejects(env.client().migrate(), (e) => e.code === 'server' && e.status === 409);
});

for (const [name, answer, code] of [
  ['401 invalid_grant (forged, expired or no legacy cookie)', () => grant('legacy session not valid'), 'session_ended'],
  ['403 (another origin)', () => json(403, { error: 'forbidden_origin' }), 'csrf'],
  ['502 from a proxy', () => new Response('<html>bad gateway</html>', { status: 502 }), 'server'],
  ['server down', () => Promise.reject(new TypeError('Failed to fetch')), 'network'],
  ['an answer without csrf_token', () => json(200, { access_token: 'x', expires_in: 300 }), 'invalid_response'],
]) {
  test(`migrate(): ${name} → ${code}, no session`, async (t) => {
    const env = setup(t);
    env.server.handlers['/auth/migrate'] = answer;
    const c = env.client();
    await assert.rejects(c.migrate(), (e) => e instanceof mod.TesseraError && e.code === code);
    assert.equal(c.isLoggedIn(), false);
    assert.deepEqual(env.broadcasts, []);
  });
}

test('migrate(): cookies disabled → cookies_blocked without a request', async (t) => {
  const env = setup(t, { cookieEnabled: false });
  const c = env.client();
  await assert.rejects(c.migrate(), (e) => e.code === 'cookies_blocked');
  assert.equal(env.server.calls.length, 0);
});

test('migrationStatus(): GET /auth/migrate with credentials, phase and method parsed', async (t) => {
  const env = setup(t);
  const c = env.client({ baseUrl: 'https://id.example/tessera/' });
  for (const [answer, want] of [
    [{ phase: 'canary', method: 'token' }, { phase: 'canary', method: 'token' }],
    [{ phase: 'rollout', method: 'session' }, { phase: 'rollout', method: 'session' }],
    [{ phase: 'canary', method: null }, { phase: 'canary', method: null }],
    [{ phase: 'off' }, { phase: 'off', method: null }],
  ]) {
    env.server.handlers['/auth/migrate'] = () => json(200, answer);
    assert.deepEqual(await c.migrationStatus(), want);
  }
  const call = env.server.calls.at(-1);
  assert.equal(call.method, 'GET');
  assert.equal(call.url, 'https://id.example/tessera/auth/migrate');
  assert.equal(call.credentials, 'include');
  assert.equal(call.headers.authorization, undefined);
  assert.equal(c.isLoggedIn(), false, 'asking changes nothing');
});

for (const [name, answer, code] of [
  ['an unknown method', () => json(200, { phase: 'canary', method: 'cookie' }), 'invalid_response'],
  ['no phase', () => json(200, { method: 'token' }), 'invalid_response'],
  ['an HTML page', () => new Response('<!doctype html><p>portal', { status: 200 }), 'invalid_response'],
  ['404 (migration not enabled)', () => json(404, { error: 'not_found' }), 'server'],
  ['server down', () => Promise.reject(new TypeError('Failed to fetch')), 'network'],
]) {
  test(`migrationStatus(): ${name} → ${code}`, async (t) => {
    const env = setup(t);
    env.server.handlers['/auth/migrate'] = answer;
    await assert.rejects(env.client().migrationStatus(), (e) => e instanceof mod.TesseraError && e.code === code);
  });
}

test('login(): 409 use_legacy_login → UseLegacyLoginError, no session', async (t) => {
  const env = setup(t);
  env.server.handlers['/auth/login'] = () => json(409, { error: 'use_legacy_login' });
  const c = env.client();
  const err = await c.login('alice', 'pw').then(() => null, (e) => e);
  assert.ok(err instanceof mod.UseLegacyLoginError && err instanceof mod.TesseraError);
  assert.equal(err.code, 'use_legacy_login');
  assert.equal(c.isLoggedIn(), false);
  assert.equal(env.broadcasts.length, 0);
});
