// Other origins. Tessera runs at http://127.0.0.1:T with allowed_origins = ["http://127.0.0.1:A"]:
// - http://localhost:X is another site: it can neither refresh the user's session nor read its CSRF token;
// - http://127.0.0.1:A is the same site on another origin, the documented cross-origin deployment: an app
//   there using the library with baseUrl = Tessera's origin logs in, calls an API and survives a reload.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import {
  USERNAME,
  callApi,
  captureAccessTokens,
  eventually,
  launchBrowser,
  logIn,
  newContext,
  openDemo,
  serveSite,
  startTessera,
  watchPath,
  whereSecretsAppear,
} from "./harness.js";

const HTML = "text/html; charset=utf-8";
const JS = "text/javascript; charset=utf-8";

// The other-origin app: the library bundle served by the app's own origin, configured with Tessera's origin, and
// a handle for the test to drive it.
const APP_HTML = '<!doctype html><title>Other-origin app</title><script type="module" src="/app.js"></script>';
const APP_JS = `
import { createTessera } from "/tessera-browser.js";
const base = new URL(location.href).searchParams.get("tessera");
const client = createTessera({ baseUrl: base });
window.app = {
  init: () => client.init(),
  login: (username, password) => client.login(username, password),
  async me() {
    const response = await client.fetch(base + "/demo/api/me");
    return { status: response.status, body: await response.json() };
  },
};
`;

describe("other origins", { timeout: 180_000 }, () => {
  let tessera;
  let browser;
  let crossSite;
  let sameSite;

  before(async () => {
    crossSite = await serveSite("localhost", { "/": { type: HTML, body: "<!doctype html><title>Another site</title>" } });
    // The app's pages exist before Tessera does (its origin goes into Tessera's configuration); the bundle is
    // added once Tessera serves it, so the app runs the very library Tessera embeds.
    const pages = { "/": { type: HTML, body: APP_HTML }, "/app.js": { type: JS, body: APP_JS } };
    sameSite = await serveSite("127.0.0.1", pages);
    tessera = await startTessera({ allowedOrigins: [sameSite.origin] });
    const bundle = await fetch(`${tessera.origin}/demo/tessera-browser.js`);
    assert.equal(bundle.status, 200, "Tessera serves the library bundle");
    pages["/tessera-browser.js"] = { type: JS, body: await bundle.text() };
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await tessera?.close();
    await crossSite?.close();
    await sameSite?.close();
  });

  test("a cross-site page can neither refresh the session nor read its CSRF token", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const demo = await openDemo(context, tessera);
    await logIn(demo, tessera.password);

    const counted = {
      refreshOk: await tessera.requests("/auth/refresh", 200),
      refresh403: await tessera.requests("/auth/refresh", 403),
      sessionOk: await tessera.requests("/auth/session", 200),
      session403: await tessera.requests("/auth/session", 403),
    };
    const attacker = await context.newPage();
    await attacker.goto(`${crossSite.origin}/`);
    const outcomes = await attacker.evaluate(async (tessera) => {
      // Only whether the answer could be read, its status, and whether it held a CSRF token: never its body.
      async function attempt(url, init) {
        try {
          const response = await fetch(url, init);
          const text = await response.text();
          return { readable: response.type !== "opaque", status: response.status, csrf: text.includes("csrf") };
        } catch {
          return { readable: false, status: 0, csrf: false };
        }
      }
      return {
        // Preflighted (custom header): refused by CORS before it is sent.
        refresh: await attempt(`${tessera}/auth/refresh`, {
          method: "POST",
          credentials: "include",
          headers: { "x-csrf-token": "guessed" },
        }),
        // A simple request is sent, but without the SameSite=Strict cookie, and Tessera refuses its origin.
        refreshSimple: await attempt(`${tessera}/auth/refresh`, { method: "POST", credentials: "include" }),
        session: await attempt(`${tessera}/auth/session`, { credentials: "include" }),
        sessionOpaque: await attempt(`${tessera}/auth/session`, { credentials: "include", mode: "no-cors" }),
      };
    }, tessera.origin);

    assert.deepEqual(outcomes.refresh, { readable: false, status: 0, csrf: false });
    assert.deepEqual(outcomes.refreshSimple, { readable: false, status: 0, csrf: false });
    assert.deepEqual(outcomes.session, { readable: false, status: 0, csrf: false });
    assert.deepEqual(outcomes.sessionOpaque, { readable: false, status: 0, csrf: false });
    assert.equal((await tessera.requests("/auth/refresh", 200)) - counted.refreshOk, 0, "no refresh succeeded");
    assert.equal((await tessera.requests("/auth/session", 200)) - counted.sessionOk, 0, "no CSRF token was handed out");
    // The simple requests did reach Tessera, and were refused there for their origin (403).
    assert.ok((await tessera.requests("/auth/refresh", 403)) - counted.refresh403 >= 1, "the cross-site refresh got 403");
    assert.ok((await tessera.requests("/auth/session", 403)) - counted.session403 >= 1, "the cross-site read got 403");

    // The user's own tab is untouched.
    assert.equal((await callApi(demo)).state, "ok");
    assert.equal(await demo.getAttribute("#status", "data-state"), "logged-in");
    await context.close();
  });

  test("an app on another origin of the same site (allowed_origins) logs in, calls the API, survives a reload", { timeout: 60_000 }, async () => {
    const context = await newContext(browser);
    const tokens = captureAccessTokens(context);
    const page = await context.newPage();
    const url = `${sameSite.origin}/?tessera=${encodeURIComponent(tessera.origin)}`;
    const ready = () => page.waitForFunction(() => window.app !== undefined);

    await page.goto(url);
    await ready();
    assert.equal(await page.evaluate(() => window.app.init()), false, "nobody is logged in yet");
    await page.evaluate(([username, password]) => window.app.login(username, password), [USERNAME, tessera.password]);
    let me = await page.evaluate(() => window.app.me());
    assert.equal(me.status, 200);
    assert.equal(me.body.sub, "alice");
    const cookie = (await context.cookies(`${tessera.origin}/auth`)).find((c) => c.name === "__Secure-tessera-refresh");
    assert.ok(cookie, "Tessera's refresh cookie was stored from a credentialed cross-origin login");
    assert.equal(cookie.sameSite, "Strict");
    await eventually("the login's access token", () => tokens.size >= 1);
    assert.deepEqual(await whereSecretsAppear(page, tokens), []);

    const logins = watchPath(context, "/auth/login");
    const restores = watchPath(context, "/auth/session");
    await page.reload();
    await ready();
    assert.equal(await page.evaluate(() => window.app.init()), true, "the reload restored the session");
    assert.equal(logins.requests, 0, "no login after the reload");
    assert.deepEqual(restores.statuses, [200]);
    me = await page.evaluate(() => window.app.me());
    assert.equal(me.status, 200);
    assert.equal(me.body.sub, "alice");
    await context.close();
  });
});
