// The demo app served by `tessera serve`, in a real Chromium: login, where the token lives (nowhere readable),
// the refresh cookie, reload, ending sessions, logout across tabs, and a server that goes away.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  REPO,
  callApi,
  captureAccessTokens,
  eventually,
  launchBrowser,
  logIn,
  newContext,
  openDemo,
  plantCanary,
  removeCanary,
  startTessera,
  waitForState,
  watchPath,
  whereSecretsAppear,
} from "./harness.js";

const COOKIE = "__Secure-tessera-refresh";

describe("demo app", { timeout: 240_000 }, () => {
  let tessera;
  let browser;

  before(async () => {
    tessera = await startTessera();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await tessera?.close();
  });

  test("log in, call the demo API; the access token is readable nowhere in the page's storage", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const tokens = captureAccessTokens(context);
    const page = await openDemo(context, tessera);
    await logIn(page, tessera.password);

    const answer = JSON.parse(await page.textContent("#api-result"));
    assert.equal(answer.sub, "alice");
    assert.match(answer.message, /verified your access token/);
    assert.equal(await page.textContent("#user"), "alice");
    await eventually("the login's access token", () => tokens.size >= 1);

    // The countdown shows the access token's remaining lifetime (15 min here).
    const left = (Number(await page.getAttribute("#countdown", "data-expires-at")) - Date.now()) / 1000;
    assert.ok(left > 800 && left <= 900, `countdown is ${Math.round(left)} s from expiry`);
    assert.match(await page.textContent("#countdown"), /^1[45]:\d\d$/);

    assert.deepEqual(await whereSecretsAppear(page, tokens), [], "access token found in the page's storage");

    // The search itself finds what is there.
    const canary = randomBytes(16).toString("hex");
    await plantCanary(page, canary);
    assert.deepEqual(await whereSecretsAppear(page, [canary]), [
      "IndexedDB",
      "document.cookie",
      "localStorage",
      "sessionStorage",
    ]);
    await removeCanary(page);

    // A screenshot of the page after login, kept with the test output.
    const shots = path.join(REPO, "target/browser-tests");
    await mkdir(shots, { recursive: true });
    const file = path.join(shots, "demo-after-login.png");
    await page.screenshot({ path: file, fullPage: true });
    assert.ok((await stat(file)).size > 1000);
    await context.close();
  });

  test("the demo runs under its strict CSP: no violation, no uncaught error, inline script refused", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const problems = [];
    context.on("console", (message) => /Content Security Policy/i.test(message.text()) && problems.push("csp"));
    const page = await context.newPage();
    page.on("pageerror", (error) => problems.push(`uncaught: ${error.message}`));
    const response = await page.goto(`${tessera.origin}/`);
    const csp = response.headers()["content-security-policy"];
    for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]) {
      assert.ok(csp.includes(directive), `CSP has ${directive}`);
    }
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    await logIn(page, tessera.password);
    await page.click("#load-sessions");
    assert.equal((await callApi(page)).state, "ok");
    await page.click("#logout");
    await waitForState(page, "logged-out");
    assert.deepEqual(problems, []);

    // The policy is enforced, not only sent: a script injected into the page does not run.
    await page.evaluate(() => {
      const script = document.createElement("script");
      script.textContent = "document.body.dataset.injected = 'ran'";
      document.body.append(script);
    });
    assert.equal(await page.getAttribute("body", "data-injected"), null);
    await eventually("the violation report", async () => problems.includes("csp"));
    await context.close();
  });

  test("a wrong password reads as such and logs nobody in", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const page = await openDemo(context, tessera);
    await page.fill("#username", "alice");
    await page.fill("#password", `not-${tessera.password}`);
    await page.click("#login-button");
    await page.locator("#error").waitFor();
    assert.equal(await page.textContent("#error"), "Wrong username or password.");
    assert.equal(await page.getAttribute("#status", "data-state"), "logged-out");
    await context.close();
  });

  test("cookies blocked: a readable message, nobody half logged in", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    // What a page sees when the user blocks cookies for the site.
    await context.addInitScript(() => Object.defineProperty(Navigator.prototype, "cookieEnabled", { get: () => false }));
    const logins = watchPath(context, "/auth/login");
    const page = await openDemo(context, tessera);
    await page.fill("#username", "alice");
    await page.fill("#password", tessera.password);
    await page.click("#login-button");
    await page.locator("#error").waitFor();
    assert.match(await page.textContent("#error"), /refused Tessera's session cookie/);
    assert.equal(await page.getAttribute("#status", "data-state"), "logged-out");
    assert.equal(logins.requests, 0, "no session was started that could not be kept");
    await context.close();
  });

  test("answers that are HTML or malformed JSON: readable errors, still logged in", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const page = await openDemo(context, tessera);
    await logIn(page, tessera.password);
    const error = page.locator("#error");

    // A proxy's HTML error page where the API's JSON should be.
    await context.route("**/demo/api/me", (route) =>
      route.fulfill({ status: 200, contentType: "text/html", body: "<html><body>Welcome to nginx</body></html>" }),
    );
    assert.equal((await callApi(page)).state, "error");
    assert.equal(await error.textContent(), "The demo API sent an answer that is not JSON.");

    await context.route("**/auth/sessions", (route) =>
      route.fulfill({ status: 200, contentType: "application/json", body: '{"sessions": [' }),
    );
    await page.click("#load-sessions");
    await eventually("the malformed-JSON error", async () => (await error.getAttribute("data-code")) === "invalid_response");
    assert.match(await error.textContent(), /could not read/);

    await context.unroute("**/auth/sessions");
    await context.route("**/auth/sessions", (route) =>
      route.fulfill({ status: 502, contentType: "text/html", body: "<h1>502 Bad Gateway</h1>" }),
    );
    await page.click("#load-sessions");
    await eventually("the server error", async () => (await error.getAttribute("data-code")) === "server");
    assert.match(await error.textContent(), /HTTP 502/);

    assert.equal(await page.getAttribute("#status", "data-state"), "logged-in", "bad answers log nobody out");
    await context.unrouteAll();
    assert.equal((await callApi(page)).state, "ok");
    await context.close();
  });

  test("the refresh cookie is HttpOnly, Secure, SameSite=Strict, Path=/auth, host-only", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const page = await openDemo(context, tessera);
    await logIn(page, tessera.password);

    const cookies = await context.cookies(`${tessera.origin}/auth/refresh`);
    const refresh = cookies.filter((cookie) => cookie.name === COOKIE);
    assert.equal(refresh.length, 1, `one ${COOKIE} cookie`);
    const { httpOnly, secure, sameSite, path: cookiePath, domain } = refresh[0];
    assert.deepEqual({ httpOnly, secure, sameSite, path: cookiePath, domain }, {
      httpOnly: true,
      secure: true,
      sameSite: "Strict",
      path: "/auth",
      domain: "127.0.0.1",
    });
    // Path=/auth: the cookie is not sent along with the demo's own pages and API.
    assert.equal((await context.cookies(`${tessera.origin}/demo/api/me`)).filter((c) => c.name === COOKIE).length, 0);
    assert.equal(await page.evaluate(() => document.cookie.includes("tessera")), false);
    await context.close();
  });

  test("a reload keeps the user logged in without the password", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const page = await openDemo(context, tessera);
    await logIn(page, tessera.password);

    const logins = watchPath(context, "/auth/login");
    const restores = watchPath(context, "/auth/session");
    const refreshes = watchPath(context, "/auth/refresh");
    const restored = page.waitForResponse((response) => new URL(response.url()).pathname === "/auth/session");
    await page.reload();
    assert.equal((await restored).headers()["cache-control"], "no-store", "the CSRF token is never cached");
    await waitForState(page, "logged-in");
    await page.locator('#api-result[data-state="ok"]').waitFor();
    assert.equal(JSON.parse(await page.textContent("#api-result")).sub, "alice");
    assert.equal(logins.requests, 0, "no login after the reload");
    assert.deepEqual(restores.statuses, [200], "GET /auth/session restored the session");
    assert.deepEqual(refreshes.statuses, [200], "one refresh fetched the access token");
    assert.equal(await page.inputValue("#password"), "");
    assert.equal((await callApi(page)).state, "ok");
    await context.close();
  });

  /** Two browsers (contexts with their own cookies) on the demo, both logged in as the test's user. */
  async function twoBrowsersLoggedIn() {
    const mine = await newContext(browser);
    const theirs = await newContext(browser);
    const page = await openDemo(mine, tessera);
    await logIn(page, tessera.password);
    const other = await openDemo(theirs, tessera);
    await logIn(other, tessera.password);
    return { mine, theirs, page, other };
  }

  test("ending another session from the list logs that browser out", { timeout: 60_000 }, async () => {
    const { mine, theirs, page, other } = await twoBrowsersLoggedIn();

    await page.click("#load-sessions");
    const current = page.locator('#sessions li[data-current="true"]');
    await current.waitFor();
    assert.equal(await current.locator("button").count(), 0, "the current session ends with Log out, not here");
    const others = page.locator('#sessions li[data-current="false"]');
    await eventually("the other session in the list", async () => (await others.count()) >= 1);
    const otherIds = await others.evaluateAll((items) => items.map((item) => item.dataset.sessionId));
    for (const id of otherIds) {
      await page.click(`#sessions li[data-session-id="${id}"] button.end-session`);
      await page.locator(`#sessions li[data-session-id="${id}"]`).waitFor({ state: "detached" });
    }

    // The other browser learns it at its next call: its token is revoked and its refresh refused.
    await other.click("#call-api");
    await waitForState(other, "logged-out");
    assert.match(await other.textContent("#status"), /session has ended/i);
    assert.equal((await callApi(page)).state, "ok", "this browser's own session goes on");
    await mine.close();
    await theirs.close();
  });

  test("log out everywhere ends the sessions of every browser", { timeout: 60_000 }, async () => {
    const { mine, theirs, page, other } = await twoBrowsersLoggedIn();

    await page.click("#logout-all");
    await waitForState(page, "logged-out");
    assert.match(await page.textContent("#status"), /every device/);
    await other.click("#call-api");
    await waitForState(other, "logged-out");
    assert.match(await other.textContent("#status"), /session has ended/i);
    await mine.close();
    await theirs.close();
  });

  test("log out in one tab: every tab shows logged out within a second", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const first = await openDemo(context, tessera);
    await logIn(first, tessera.password);
    const tabs = [first];
    for (let i = 0; i < 2; i += 1) {
      const tab = await openDemo(context, tessera);
      await waitForState(tab, "logged-in");
      tabs.push(tab);
    }

    await first.click("#logout");
    await waitForState(first, "logged-out", 5_000);
    await Promise.all(tabs.slice(1).map((tab) => waitForState(tab, "logged-out", 1_000)));
    for (const tab of tabs) assert.equal(await tab.isVisible("#login-form"), true);
    assert.equal((await context.cookies(tessera.origin)).filter((c) => c.name === COOKIE).length, 0, "cookie cleared");

    // The session is over at the server too: a reload finds nobody logged in.
    await tabs[1].reload();
    await waitForState(tabs[1], "logged-out");
    await context.close();
  });

  test("Tessera stopped while logged in: a readable error, still logged in, and back when it returns", { timeout: 90_000 }, async () => {
    const context = await newContext(browser);
    const page = await openDemo(context, tessera);
    await logIn(page, tessera.password);

    await tessera.stop();
    try {
      const call = await callApi(page);
      assert.equal(call.state, "error");
      const error = page.locator("#error");
      await error.waitFor();
      assert.match(await error.textContent(), /could not be reached/i);
      assert.equal(await error.getAttribute("data-code"), "network");
      await page.click("#load-sessions");
      await eventually("the sessions error", async () => /could not be reached/i.test(await error.textContent()));
      assert.equal(await page.getAttribute("#status", "data-state"), "logged-in", "not logged out by a network error");
      assert.equal(await page.isVisible("#app-view"), true);
    } finally {
      await tessera.start();
    }
    const call = await callApi(page);
    assert.equal(call.state, "ok");
    assert.equal(await page.isVisible("#error"), false, "the error is gone after a call that worked");
    await context.close();
  });
});
