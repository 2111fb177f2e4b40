// Issue 23: applications built on real OpenID Connect libraries sign a person in through Tessera's login page in
// Debian's Chromium — openid-client (Node, a public client) and Authlib (Python with Flask, a confidential one).
// Each library runs the code flow with PKCE, validates the ID token itself (signature from the JWKS, iss, aud,
// nonce, at_hash), calls userinfo, refreshes, and logs out through the end-session endpoint; the tests then check
// what Tessera did: the login page and consent were shown, the login is shared between apps, and a logout ends
// every token the app was given.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Child, TESSERA_BIN, childEnv, freePorts, requireTessera, run, serveTessera } from "../../support/processes.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const PYTHON = process.env.PYTHON ?? "python3";

let dir, env, config, tessera, origin, password, browser;
const apps = {};

async function tesseraCli(args, input) {
  const result = await run(TESSERA_BIN, ["--config", config, ...args], { env, input });
  if (result.code !== 0) throw new Error(`tessera ${args.join(" ")} exited with ${result.code}: ${result.stderr}`);
  return result.stdout;
}

async function requirePythonPackages() {
  const probe = await run(PYTHON, ["-c", "import authlib, flask, requests"]);
  if (probe.code !== 0) {
    throw new Error("Authlib and Flask are missing: `python3 -m pip install authlib flask requests` (scripts/test installs them)");
  }
}

before(async () => {
  requireTessera();
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}: \`apt-get install chromium\` (or set CHROMIUM_PATH)`);
  await requirePythonPackages();
  dir = await mkdtemp(path.join(os.tmpdir(), "tessera-oidc-"));
  const [port, nodePort, pythonPort] = await freePorts(3);
  origin = `http://127.0.0.1:${port}`;
  config = path.join(dir, "tessera.toml");
  await writeFile(config, [
    `data_dir = ${JSON.stringify(path.join(dir, "data"))}`,
    "[server]",
    `listen = "127.0.0.1:${port}"`,
    "[sign_in]",
    'name = "Acme Accounts"',
    'accent_color = "#0a7d4f"',
    "[demo]",
    "enabled = false",
  ].join("\n") + "\n");
  env = childEnv({ TESSERA_MASTER_KEY: randomBytes(32).toString("base64") });
  password = randomBytes(18).toString("base64url");
  await tesseraCli(["user", "add", "alice", "--name", "Alice Example", "--email", "alice@example.com", "--email-verified",
    "--password-stdin"], `${password}\n`);
  const node = `http://127.0.0.1:${nodePort}`;
  await tesseraCli(["client", "add", "node-app", "--public", "--scope", "openid profile email",
    "--redirect-uri", `${node}/callback`, "--post-logout-redirect-uri", `${node}/bye`]);
  const python = `http://127.0.0.1:${pythonPort}`;
  // Registered for RS256 ID tokens, which the server signs with its RS256 keys beside its EdDSA signing keys.
  const added = JSON.parse(await tesseraCli(["client", "add", "python-app", "--confidential", "--scope", "openid profile email",
    "--redirect-uri", `${python}/callback`, "--post-logout-redirect-uri", `${python}/bye`, "--id-token-alg", "RS256",
    "--json"]));
  tessera = await serveTessera("tessera serve", config, env, origin);

  apps.node = { origin: node, child: new Child("node app", process.execPath, [path.join(HERE, "../node-app/app.js")], {
    env: childEnv({ ISSUER: origin, CLIENT_ID: "node-app", PORT: String(nodePort) }),
  }) };
  apps.python = { origin: python, child: new Child("python app", PYTHON, [path.join(HERE, "../python-app/app.py")], {
    // Authlib refuses http endpoints unless told; the issuer here is loopback.
    env: childEnv({ ISSUER: origin, CLIENT_ID: "python-app", CLIENT_SECRET: added.client_secret, PORT: String(pythonPort),
      AUTHLIB_INSECURE_TRANSPORT: "1" }),
  }) };
  await Promise.all([apps.node.child.untilListening(nodePort), apps.python.child.untilListening(pythonPort)]);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30_000 });
});

after(async () => {
  await browser?.close();
  await Promise.all(Object.values(apps).map((app) => app.child.stop()));
  await tessera?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function newPage() {
  const context = await browser.newContext();
  context.setDefaultTimeout(15_000);
  return context.newPage();
}

/** What an app page shows in #result once it reached `state`. */
async function result(page, state) {
  const element = page.locator("#result");
  await element.waitFor();
  const shown = JSON.parse(await element.textContent());
  assert.equal(await element.getAttribute("data-state"), state, `${page.url()}: ${JSON.stringify(shown)}`);
  return shown;
}

/** Logs in on Tessera's login page, which `page` must be showing. */
async function logIn(page) {
  assert.equal(new URL(page.url()).origin, origin, `the login page is Tessera's: ${page.url()}`);
  await page.getByRole("heading", { name: "Sign in to Acme Accounts" }).waitFor();
  await page.getByLabel("Username").fill("alice");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function allow(page) {
  await page.getByRole("heading", { name: "Allow access?" }).waitFor();
  await page.getByRole("button", { name: "Allow" }).click();
}

for (const [name, library] of [["node", "openid-client"], ["python", "Authlib"]]) {
  test(`${library} signs alice in through the login page, validates the ID token, reads userinfo, refreshes and logs out`, async () => {
    const app = apps[name];
    const page = await newPage();
    const scripts = [];
    page.on("request", (request) => {
      if (new URL(request.url()).origin === origin && request.resourceType() === "script") scripts.push(request.url());
    });
    await page.goto(`${app.origin}/login`);
    await logIn(page);
    await allow(page);
    const signedIn = await result(page, "signed-in");
    assert.equal(signedIn.claims.sub, "alice");
    assert.equal(signedIn.claims.iss, origin);
    assert.equal(signedIn.claims.aud, `${name}-app`);
    assert.equal(signedIn.claims.email, "alice@example.com");
    assert.equal(signedIn.claims.name, "Alice Example");
    assert.ok(signedIn.claims.nonce && signedIn.claims.at_hash && signedIn.claims.auth_time, JSON.stringify(signedIn.claims));
    if (name === "python") assert.equal(signedIn.id_token_alg, "RS256", "Authlib verified an RS256 ID token");
    assert.deepEqual(
      { sub: signedIn.userinfo.sub, email: signedIn.userinfo.email, verified: signedIn.userinfo.email_verified },
      { sub: "alice", email: "alice@example.com", verified: true },
    );
    assert.deepEqual(scripts, [], "Tessera's pages load no script");

    await page.goto(`${app.origin}/refresh`);
    assert.equal((await result(page, "refreshed")).count, 2);
    await page.goto(`${app.origin}/check`);
    assert.deepEqual((await result(page, "checked")).statuses, [200, 200]);

    await page.goto(`${app.origin}/logout`);
    const bye = await result(page, "signed-out");
    assert.equal(bye.state, `${name === "node" ? "node" : "py"}-bye`, "back at the app with its state");
    await page.goto(`${app.origin}/check`);
    assert.deepEqual((await result(page, "checked")).statuses, [401, 401], "every access token of the login ended");

    // Logged out at Tessera: the next sign-in asks for the password again.
    await page.goto(`${app.origin}/login`);
    await page.getByRole("heading", { name: "Sign in to Acme Accounts" }).waitFor();
    await page.context().close();
  });
}

test("one login serves both apps: the second asks only for consent, then neither page shows again", async () => {
  const page = await newPage();
  await page.goto(`${apps.python.origin}/login`);
  await logIn(page);
  await allow(page);
  await result(page, "signed-in");
  await page.goto(`${apps.node.origin}/login`);
  await allow(page);
  assert.equal((await result(page, "signed-in")).claims.sub, "alice", "no password asked");
  await page.goto(`${apps.node.origin}/login`);
  assert.equal((await result(page, "signed-in")).claims.sub, "alice", "consent remembered, login kept");
  await page.context().close();
});

test("a login page whose form comes back from another browser is refused, and the app gets nothing", async () => {
  const attacker = await newPage();
  await attacker.goto(`${apps.node.origin}/login`);
  const form = await attacker.locator('input[name="request"]').getAttribute("value");
  const victim = await newPage();
  const answer = await victim.request.post(`${origin}/oauth2/authorize/login`, {
    form: { request: form, username: "alice", password },
    headers: { origin },
    maxRedirects: 0,
  });
  assert.equal(answer.status(), 400, "login CSRF: the form is bound to the browser it was shown in");
  assert.equal(answer.headers().location, undefined);
  await attacker.context().close();
  await victim.context().close();
});
