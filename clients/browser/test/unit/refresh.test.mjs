import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loggedIn, setup } from './helpers.mjs';

const S = 1000;

test('single-flight: concurrent callers after expiry share one refresh', async (t) => {
  // No Web Locks or channel: the in-tab single flight alone must coalesce (the lock would mask it).
  const env = setup(t, { locks: false, channel: false });
  const c = await loggedIn(env);
  env.clock.jump(290 * S);
  const all = await env.run(Promise.all(Array.from({ length: 5 }, () => c.getAccessToken())));
  assert.equal(env.server.count('/auth/refresh'), 1);
  assert.deepEqual(new Set(all), new Set(['at-2']));
});

test('proactive refresh at expiry minus the default 60 s margin, not before', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  const start = env.clock.now();
  await env.clock.advance(239 * S);
  assert.equal(env.server.count('/auth/refresh'), 0);
  await env.clock.advance(1 * S);
  assert.equal(env.server.count('/auth/refresh'), 1);
  assert.equal(c.expiresAt(), start + 240 * S + 300 * S);
  assert.equal(c.ev.refreshed.length, 2); // login + refresh
});

test('margin never exceeds half the lifetime (short-lived tokens do not loop)', async (t) => {
  const env = setup(t, { life: 60 });
  const c = await loggedIn(env);
  await env.clock.advance(29 * S);
  assert.equal(await env.run(c.getAccessToken()), 'at-1');
  assert.equal(env.server.count('/auth/refresh'), 0);
  await env.clock.advance(1 * S);
  assert.equal(env.server.count('/auth/refresh'), 1);
  // one refresh per half lifetime, not a storm
  await env.clock.advance(60 * S);
  assert.equal(env.server.count('/auth/refresh'), 3);
});

test('a custom refreshMargin is honoured', async (t) => {
  const env = setup(t);
  await loggedIn(env, { refreshMargin: 10 });
  await env.clock.advance(289 * S);
  assert.equal(env.server.count('/auth/refresh'), 0);
  await env.clock.advance(1 * S);
  assert.equal(env.server.count('/auth/refresh'), 1);
});

test('hidden tab: no proactive refresh; becoming visible refreshes at once', async (t) => {
  const env = setup(t, { hidden: true });
  const c = await loggedIn(env);
  await env.clock.advance(600 * S);
  assert.equal(env.server.count('/auth/refresh'), 0);
  env.doc.setHidden(false);
  await env.clock.advance(0);
  assert.equal(env.server.count('/auth/refresh'), 1);
  assert.ok(c.expiresAt() > env.clock.now());
});

test('hiding a tab cancels its pending timer', async (t) => {
  const env = setup(t);
  await loggedIn(env);
  env.doc.setHidden(true);
  assert.equal(env.clock.timers.size, 0, 'a hidden tab is not woken at all');
  await env.clock.advance(600 * S);
  assert.equal(env.server.count('/auth/refresh'), 0);
});

test('device sleep: after a wall-clock jump past expiry, getAccessToken never returns the expired token', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  env.clock.jump(2 * 3600 * S); // no timer fired during sleep
  assert.equal(await env.run(c.getAccessToken()), 'at-2');
  assert.equal(env.server.count('/auth/refresh'), 1);
});

test('device sleep: the late timer or a focus event refreshes once by wall-clock time', async (t) => {
  const env = setup(t);
  await loggedIn(env);
  env.clock.jump(2 * 3600 * S);
  env.fire('focus');
  await env.clock.advance(0);
  env.fire('online');
  await env.clock.advance(1);
  assert.equal(env.server.count('/auth/refresh'), 1);
});

test('timers are hints: after a suspension the pending timer re-plans from wall-clock time', async (t) => {
  const env = setup(t);
  await loggedIn(env, { refreshMargin: 0 }); // margin 0: refresh exactly at expiry
  env.clock.jump(299 * S); // timers did not fire while suspended
  await env.clock.advance(30 * S); // the pending coarse timer wakes up and sees the expiry
  assert.equal(env.server.count('/auth/refresh'), 1);
});

test('clock skew: expiry comes from expires_in at receipt, never from the JWT exp', async (t) => {
  const env = setup(t);
  // A JWT whose exp is long past by the browser clock: a client trusting it would refresh in a loop.
  env.server.handlers['/auth/login'] = () =>
    new Response(JSON.stringify({ access_token: 'eyJhbGciOiJub25lIn0.eyJleHAiOjEwfQ.', token_type: 'Bearer', expires_in: 300, csrf_token: 'csrf-1' }), { status: 200 });
  env.server.cookie = 'rt';
  const c = await loggedIn(env);
  assert.equal(c.expiresAt(), env.clock.now() + 300 * S);
  await env.clock.advance(200 * S);
  assert.equal(env.server.count('/auth/refresh'), 0);
  assert.equal(await c.getAccessToken(), 'eyJhbGciOiJub25lIn0.eyJleHAiOjEwfQ.');
});

test('dispose stops timers and listeners', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env);
  c.dispose();
  await env.clock.advance(600 * S);
  env.fire('focus');
  await env.clock.advance(0);
  assert.equal(env.server.count('/auth/refresh'), 0);
  assert.equal(c.isLoggedIn(), false);
});
