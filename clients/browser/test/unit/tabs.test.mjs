import assert from 'node:assert/strict';
import { test } from 'node:test';
import { json, loggedIn, setup } from './helpers.mjs';

const S = 1000;

/** N tabs of one session: the first logs in, the others learn it over the channel. */
async function tabs(env, n) {
  const first = await loggedIn(env);
  const rest = Array.from({ length: n - 1 }, () => env.client());
  // Tabs opened before the login adopt it from the 'login' broadcast; re-login to reach them.
  await first.login('alice', 'pw');
  await env.clock.advance(0);
  return [first, ...rest];
}

test('three tabs due at once: one refresh, all adopt its token, nobody logged out', async (t) => {
  const env = setup(t);
  const all = await tabs(env, 3);
  assert.ok(all.every((c) => c.isLoggedIn()));
  const before = env.server.count('/auth/refresh');
  env.clock.jump(290 * S);
  const got = await env.run(Promise.all(all.map((c) => c.getAccessToken())));
  assert.equal(env.server.count('/auth/refresh') - before, 1);
  assert.equal(new Set(got).size, 1);
  assert.ok(all.every((c) => c.ev.logout.length === 0 && c.ev.errors.length === 0));
});

test('a tab waiting on the lock re-checks and adopts the token the holder broadcast', async (t) => {
  const env = setup(t);
  const [a, b] = await tabs(env, 2);
  env.clock.jump(290 * S);
  const pa = a.getAccessToken();
  const pb = b.getAccessToken();
  const [ta, tb] = await env.run(Promise.all([pa, pb]));
  assert.equal(ta, tb);
  assert.equal(env.locks.grants, 2); // both took the lock, only one spent the cookie
  assert.equal(env.server.count('/auth/refresh'), 1);
});

test("the lock reaching a waiting tab before the holder's broadcast: it waits for the broadcast, no second refresh", async (t) => {
  const env = setup(t, { channelLagMs: 50 });
  const [a, b] = await tabs(env, 2);
  await env.clock.advance(100);
  const before = env.server.count('/auth/refresh');
  env.clock.jump(290 * S);
  const both = Promise.all([a.getAccessToken(), b.getAccessToken()]);
  await env.clock.advance(100);
  const [ta, tb] = await both;
  assert.equal(ta, tb);
  assert.equal(env.server.count('/auth/refresh') - before, 1);
});

test('a failed refresh unlocks the waiting tab at once: it tries for itself without waiting out the hand-off', async (t) => {
  const env = setup(t, { channelLagMs: 50 });
  const [a, b] = await tabs(env, 2);
  await env.clock.advance(100);
  let first = true;
  env.server.handlers['/auth/refresh'] = () => {
    if (!first) return json(200, { access_token: 'at-b', token_type: 'Bearer', expires_in: 300, csrf_token: 'csrf-1' });
    first = false;
    return json(400, { error: 'invalid_request' });
  };
  env.clock.jump(290 * S);
  const ta = a.getAccessToken();
  let tb;
  b.getAccessToken().then((t) => (tb = t));
  await env.clock.advance(100); // the 'unlock' arrives after 50 ms; the hand-off wait would last 2 s
  assert.equal(tb, 'at-b');
  assert.equal(await ta, 'at-2', 'the failed tab keeps its still valid token');
  assert.equal(env.server.count('/auth/refresh'), 2);
});

test('the broadcast carries token, expiry and csrf, and other tabs fire onTokenRefreshed', async (t) => {
  const env = setup(t);
  const [a, b] = await tabs(env, 2);
  env.clock.jump(290 * S);
  await env.run(a.getAccessToken());
  const msg = env.broadcasts.at(-1);
  assert.equal(msg.type, 'token');
  assert.equal(typeof msg.exp, 'number');
  assert.equal(msg.csrf, 'csrf-1');
  assert.equal(b.expiresAt(), a.expiresAt());
  assert.ok(b.ev.refreshed.at(-1).expiresAt === a.expiresAt());
});

test('logout in one tab logs out every tab', async (t) => {
  const env = setup(t);
  const [a, b, c] = await tabs(env, 3);
  await a.logout();
  await env.clock.advance(0);
  assert.deepEqual(a.ev.logout, ['user']);
  assert.deepEqual(b.ev.logout, ['other_tab']);
  assert.deepEqual(c.ev.logout, ['other_tab']);
  assert.ok([a, b, c].every((x) => !x.isLoggedIn()));
  assert.equal(await b.getAccessToken(), null);
});

test('a late refresh broadcast does not resurrect a tab that logged out', async (t) => {
  const env = setup(t);
  const [a, b] = await tabs(env, 2);
  await b.logout();
  // a's refresh answer arrives after b's logout reached the server side of a race
  const ch = new BroadcastChannel(`tessera-session:https://id.example`);
  ch.postMessage({ type: 'token', token: 'late', exp: env.clock.now() + 300 * S, life: 300 * S, csrf: 'x' });
  await env.clock.advance(0);
  ch.close();
  assert.equal(b.isLoggedIn(), false);
  assert.equal(a.isLoggedIn(), false);
});

test('fallback without Web Locks and BroadcastChannel: each tab refreshes, all keep working', async (t) => {
  const env = setup(t, { locks: false, channel: false });
  const a = await loggedIn(env);
  const b = env.client();
  assert.equal(await b.init(), true);
  env.clock.jump(290 * S);
  const [ta, tb] = await Promise.all([a.getAccessToken(), b.getAccessToken()]);
  assert.ok(ta && tb);
  assert.equal(env.server.count('/auth/refresh'), 3); // b's init + one per tab
  assert.ok([a, b].every((c) => c.isLoggedIn() && c.ev.errors.length === 0));
});

test('a lock held by a stuck tab: refresh proceeds after the wait bound', async (t) => {
  const env = setup(t);
  const c = await loggedIn(env, { timeout: 5 * S });
  let release;
  env.locks.request('tessera-session:https://id.example', () => new Promise((r) => (release = r)));
  env.clock.jump(290 * S);
  const p = c.getAccessToken();
  await env.clock.advance(5 * S);
  assert.equal(await env.run(p), 'at-2');
  release();
});

test('tabs restoring after a reload share one refresh', async (t) => {
  const env = setup(t);
  env.server.cookie = 'rt';
  const all = [env.client(), env.client(), env.client()];
  const ok = await env.run(Promise.all(all.map((c) => c.init())));
  assert.deepEqual(ok, [true, true, true]);
  assert.equal(env.server.count('/auth/refresh'), 1);
});
