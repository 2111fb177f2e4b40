// Access tokens that really expire (access_ttl = 20 s, no leeway): the page keeps working through silent
// refreshes, both when it refreshes ahead of expiry and when its clock stood still and the API is the first to say
// so (401). A browser clock an hour off changes nothing: expiry is counted from receipt, never from the token's exp.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  callApi,
  captureAccessTokens,
  eventually,
  expiresAt,
  launchBrowser,
  logIn,
  newContext,
  openDemo,
  sleep,
  startTessera,
  watchPath,
} from "./harness.js";

const TTL_SECONDS = 20;

describe("an access token that expires", { timeout: 180_000 }, () => {
  let tessera;
  let browser;

  before(async () => {
    // No leeway: the server refuses a token the moment it expires.
    tessera = await startTessera({ accessTtl: `${TTL_SECONDS}s`, leeway: "0s" });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await tessera?.close();
  });

  /** How Tessera's demo API answers one of the tokens (asked from node; the token is never printed). */
  async function askApi(token) {
    const response = await fetch(`${tessera.origin}/demo/api/me`, { headers: { authorization: `Bearer ${token}` } });
    const body = await response.json();
    return { status: response.status, challenge: response.headers.get("www-authenticate"), error: body.error };
  }

  test("the page outlives its first token: silent refreshes ahead of expiry", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const tokens = captureAccessTokens(context);
    const page = await openDemo(context, tessera);
    await logIn(page, tessera.password);
    await eventually("the login's access token", () => tokens.size >= 1);
    const [first] = tokens;
    const firstExpiry = await expiresAt(page);
    assert.ok(Math.abs(firstExpiry - Date.now() - TTL_SECONDS * 1000) < 3_000, "countdown matches access_ttl");

    const refreshes = await tessera.requests("/auth/refresh", 200);
    const api = watchPath(context, "/demo/api/me");
    await sleep(firstExpiry - Date.now() + 2_000);
    const refused = await askApi(first);
    assert.equal(refused.status, 401, "the first access token has expired at the server");
    assert.equal(refused.error, "invalid_token");
    assert.match(refused.challenge ?? "", /^Bearer/);

    const call = await callApi(page);
    assert.equal(call.state, "ok");
    assert.equal(JSON.parse(call.text).sub, "alice");
    assert.ok((await tessera.requests("/auth/refresh", 200)) - refreshes >= 1, "at least one silent refresh");
    assert.deepEqual(api.statuses, [200], "the API never saw the expired token");
    assert.ok((await expiresAt(page)) > Date.now(), "the countdown shows the new token's expiry");
    assert.equal(await page.getAttribute("#status", "data-state"), "logged-in");
    await context.close();
  });

  test("a token that expired unnoticed (page clock stood still): one 401, one refresh, one retry", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    // Installed before the page loads, so the library reads the controlled clock.
    await context.clock.install();
    const page = await openDemo(context, tessera);
    await logIn(page, tessera.password);
    // From here the page's clock stands still (its timers still run), so the library believes its token is fresh.
    await context.clock.setFixedTime(Date.now());
    const expiry = await expiresAt(page);
    await sleep(TTL_SECONDS * 1000 + 2_000);

    const refreshes = watchPath(context, "/auth/refresh");
    const api = watchPath(context, "/demo/api/me");
    const counted = await tessera.requests("/auth/refresh", 200);
    const call = await callApi(page);
    assert.equal(call.state, "ok");
    assert.deepEqual(api.statuses, [401, 200], "the expired token was refused, the retry accepted");
    assert.deepEqual(refreshes.statuses, [200], "exactly one refresh");
    assert.equal((await tessera.requests("/auth/refresh", 200)) - counted, 1);
    assert.ok((await expiresAt(page)) > expiry, "the new token's expiry replaced the old one");
    assert.equal(await page.getAttribute("#status", "data-state"), "logged-in");
    await context.close();
  });

  for (const [name, skew] of [["ahead of", 3_600_000], ["behind", -3_600_000]]) {
    test(`a browser clock an hour ${name} the server: the right countdown, no refresh loop`, { timeout: 60_000 }, async () => {
      const context = await newContext(browser);
      await context.clock.install({ time: Date.now() + skew });
      const page = await openDemo(context, tessera);
      const refreshes = watchPath(context, "/auth/refresh");
      await logIn(page, tessera.password);
      await sleep(3_000);
      assert.equal(refreshes.requests, 0, "no refresh while the token is fresh");
      const left = (await expiresAt(page)) - (await page.evaluate(() => Date.now()));
      assert.ok(left > 10_000 && left <= TTL_SECONDS * 1000, `${left} ms left on the countdown`);
      assert.equal((await callApi(page)).state, "ok");
      await context.close();
    });
  }
});
