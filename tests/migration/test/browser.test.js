// POST /auth/migrate in a real Chromium: a page at the gateway's origin holds a legacy session (logged in the
// legacy way, from the page), and the demo's "migrate" button, through @tessera/browser's migrate(), turns it
// into a Tessera session without a password. The library's fetch then reaches the legacy app's API with a token.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { CHROMIUM, LEGACY_COOKIE, REFRESH_COOKIE, startStack } from "./harness.js";

const USER = "staff-browser";
let stack;
let browser;
before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it with \`apt-get install chromium\` (or set CHROMIUM_PATH)`);
  }
  stack = await startStack();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30_000 });
});
after(async () => {
  await browser?.close();
  await stack?.close();
});

test("the demo's migrate button turns a legacy session into a Tessera session in Chromium", async () => {
  await stack.setPhase(["--phase", "canary", "--canary-user", USER, "--reason", "browser test"]);
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  await page.goto(`${stack.origin}/`);
  await page.locator('[data-testid=status]:not([data-state="loading"])').waitFor();
  assert.equal(await page.getAttribute("[data-testid=status]", "data-state"), "logged-out");

  // The legacy login, from the page, as the legacy app's own pages would do it.
  const login = await page.evaluate(async (username) => {
    const response = await fetch("/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username }),
    });
    return { status: response.status, body: await response.json() };
  }, USER);
  assert.deepEqual(login, { status: 200, body: { id: USER, roles: ["staff"] } });
  const legacy = (await context.cookies()).find((cookie) => cookie.name === LEGACY_COOKIE);
  assert.ok(legacy?.httpOnly, "the legacy cookie is in the browser, HttpOnly");

  // The demo offers the migration to a browser whose legacy session is steered to tokens.
  await page.reload();
  const button = page.locator("[data-testid=migrate]");
  await button.waitFor({ state: "visible" });
  await button.click();
  await page.locator('[data-testid=status][data-state="logged-in"]').waitFor();
  await page.locator("[data-testid=user]", { hasText: USER }).waitFor();
  assert.equal((await page.textContent("[data-testid=user]")).trim(), USER);
  assert.equal(await page.locator("[data-testid=error]").isVisible(), false);

  const refresh = (await context.cookies()).find((cookie) => cookie.name === REFRESH_COOKIE);
  assert.ok(refresh, "the Tessera refresh cookie is set");
  assert.equal(refresh.path, "/auth");
  assert.ok(refresh.httpOnly);

  // The library's fetch wrapper, as an application would use it (a second client in the page restores the
  // session from the refresh cookie, as a new tab would), reaches the legacy API with a token; a plain fetch
  // still rides on the legacy cookie, which was kept.
  const calls = await page.evaluate(async () => {
    const { createTessera } = await import("/demo/tessera-browser.js");
    const client = createTessera();
    const restored = await client.init();
    const withToken = await client.fetch("/api/me");
    const withCookie = await fetch("/api/me");
    const result = {
      restored,
      token: { status: withToken.status, body: await withToken.json() },
      cookie: { status: withCookie.status, body: await withCookie.json() },
    };
    client.dispose();
    return result;
  });
  assert.equal(calls.restored, true);
  assert.deepEqual(calls.token, { status: 200, body: { user: USER, roles: "staff", method: "token", deprecation: null } });
  assert.deepEqual(calls.cookie, { status: 200, body: { user: USER, roles: "staff", method: "session", deprecation: null } });

  // The demo page itself still shows a signed-in user after all that (the second client's refresh reached it).
  assert.equal(await page.getAttribute("[data-testid=status]", "data-state"), "logged-in");
  await context.close();
});

test("the demo offers no migration to a browser the rollout keeps on the legacy session", async () => {
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  await page.goto(`${stack.origin}/`);
  // The first load asks GET /auth/migrate too (with no legacy cookie yet): let it finish, so the answer awaited
  // below is the reload's, not that one (whose body the reload would take away).
  await page.waitForLoadState("networkidle");
  const status = await page.evaluate(async () => {
    const response = await fetch("/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "user-not-in-canary" }),
    });
    return response.status;
  });
  assert.equal(status, 200);
  // The page asks GET /auth/migrate when it shows the logged-out state.
  const answered = page.waitForResponse((response) => new URL(response.url()).pathname === "/auth/migrate");
  await page.reload();
  const steer = await answered;
  const { phase, method } = await steer.json();
  assert.deepEqual({ phase, method }, { phase: "canary", method: "session" });
  await page.locator('[data-testid=status][data-state="logged-out"]').waitFor();
  await page.waitForTimeout(300); // the page has acted on the answer
  assert.equal(await page.locator("[data-testid=migrate]").isVisible(), false);
  await context.close();
});
