// What the end-to-end tests share: a real `tessera serve` in a temporary directory, Debian's Chromium, small HTTP
// servers standing in for other origins, and helpers that drive the demo page through its stable ids. Nothing
// here builds or downloads anything: a missing dependency fails with the command that installs it. The process
// helpers (ports, children, `tessera serve`, polling) are the ones every suite shares, in tests/support/processes.js.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import {
  REPO, TESSERA_BIN, childEnv, eventually as eventuallyWithin, freePorts, requireTessera, run, serveTessera, sleep,
} from "../../../../tests/support/processes.js";

export { REPO, sleep };
export const USERNAME = "alice";
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it with \`apt-get install chromium\` (or set CHROMIUM_PATH)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30_000 });
}

/** A new context whose pages fail fast instead of waiting out Playwright's 30 s defaults. */
export async function newContext(browser, options = {}) {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(10_000);
  return context;
}

/** `tessera <args>` to completion; fails with its error output unless it exits 0. */
async function runTessera(args, env, input) {
  const result = await run(TESSERA_BIN, args, { env, input });
  if (result.code !== 0) throw new Error(`tessera ${args.join(" ")} exited with ${result.code}: ${result.stderr}`);
}

/**
 * Starts `tessera serve` on a free loopback port with a fresh data directory and one user, alice, whose password
 * is random and only ever passed to the browser (never printed).
 */
export async function startTessera({ accessTtl = "15m", leeway = "30s", allowedOrigins = [] } = {}) {
  requireTessera();
  const dir = await mkdtemp(path.join(os.tmpdir(), "tessera-e2e-"));
  const [port] = await freePorts(1);
  const config = path.join(dir, "tessera.toml");
  const toml = [
    `data_dir = ${JSON.stringify(path.join(dir, "data"))}`,
    "[tokens]",
    `access_ttl = "${accessTtl}"`,
    `leeway = "${leeway}"`,
    "[server]",
    `listen = "127.0.0.1:${port}"`,
    `allowed_origins = ${JSON.stringify(allowedOrigins)}`,
    "[demo]",
    "enabled = true",
  ];
  await writeFile(config, toml.join("\n") + "\n");
  const env = childEnv({ TESSERA_MASTER_KEY: randomBytes(32).toString("base64") });
  const password = randomBytes(18).toString("base64url");
  const server = new Tessera({ dir, config, env, port, password });
  try {
    await runTessera(["--config", config, "user", "add", USERNAME, "--password-stdin"], env, `${password}\n`);
    await server.start();
  } catch (error) {
    await server.close();
    throw error;
  }
  return server;
}

class Tessera {
  #child = null;

  constructor({ dir, config, env, port, password }) {
    Object.assign(this, { dir, config, env, port, password });
    this.origin = `http://127.0.0.1:${port}`;
  }

  /** Starts the server on its data directory; it must answer /healthz within 30 s. */
  async start() {
    this.#child = await serveTessera("tessera serve", this.config, this.env, this.origin);
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s); the data directory stays for a restart. */
  async stop() {
    const child = this.#child;
    this.#child = null;
    await child?.stop();
  }

  async close() {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }

  async metrics() {
    const response = await fetch(`${this.origin}/metrics`, { signal: AbortSignal.timeout(5_000) });
    if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`);
    return response.text();
  }

  /** Requests the server counted for a route (tessera_http_requests_total), optionally for one status. */
  async requests(route, status) {
    const labels = { route, ...(status === undefined ? {} : { status: String(status) }) };
    return sumCounter(await this.metrics(), "tessera_http_requests_total", labels);
  }
}

/** tessera_refresh_total by outcome: rotated, grace_replay, reuse_detected (and refusals). */
export async function refreshOutcomes(tessera) {
  const text = await tessera.metrics();
  const outcomes = ["rotated", "grace_replay", "reuse_detected"];
  return Object.fromEntries(outcomes.map((outcome) => [outcome, sumCounter(text, "tessera_refresh_total", { outcome })]));
}

/** Sums a Prometheus counter over the series whose labels include `labels`. */
function sumCounter(text, name, labels) {
  let total = 0;
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) total += Number(match[3]);
  }
  return total;
}

/** Serves fixed pages from node on a free loopback port, as `host` (127.0.0.1 or localhost) names it. */
export async function serveSite(host, pages) {
  const server = http.createServer((request, response) => {
    const page = pages[new URL(request.url, "http://x").pathname];
    if (!page) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": page.type, "cache-control": "no-store" }).end(page.body);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://${host}:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** Every access token Tessera hands to pages of `context` (login and refresh answers), to search for later. */
export function captureAccessTokens(context) {
  const tokens = new Set();
  context.on("response", async (response) => {
    const url = new URL(response.url());
    if (!["/auth/login", "/auth/refresh"].includes(url.pathname) || response.status() !== 200) return;
    try {
      const body = await response.json();
      if (typeof body.access_token === "string") tokens.add(body.access_token);
    } catch {
      // A body that is gone (page closed) has no token to remember.
    }
  });
  return tokens;
}

/** Counts the requests pages of `context` send to a path, and the statuses they got back, in order. */
export function watchPath(context, pathname) {
  const seen = { requests: 0, statuses: [] };
  context.on("request", (request) => {
    if (new URL(request.url()).pathname === pathname) seen.requests += 1;
  });
  context.on("response", (response) => {
    if (new URL(response.url()).pathname === pathname) seen.statuses.push(response.status());
  });
  return seen;
}

// ---- The demo page, driven through its ids. ----

export async function waitForState(page, state, timeout = 10_000) {
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout });
}

export async function openDemo(context, tessera) {
  const page = await context.newPage();
  await page.goto(`${tessera.origin}/`);
  await page.locator('#status:not([data-state="loading"])').waitFor();
  return page;
}

export async function logIn(page, password) {
  await waitForState(page, "logged-out");
  await page.fill("#username", USERNAME);
  await page.fill("#password", password);
  await page.click("#login-button");
  await waitForState(page, "logged-in");
  await page.locator('#api-result[data-state="ok"]').waitFor();
}

/** Clicks "Call the demo API" and returns how that call ended: "ok" or "error", and the answer shown. */
export async function callApi(page) {
  const before = Number(await page.getAttribute("#api-result", "data-seq"));
  await page.click("#call-api");
  await page.locator(`#api-result[data-seq="${before + 1}"]`).waitFor();
  return {
    state: await page.getAttribute("#api-result", "data-state"),
    text: await page.textContent("#api-result"),
  };
}

/** The local time (ms) the page's access token expires, as the demo's countdown knows it. */
export async function expiresAt(page) {
  return Number(await page.getAttribute("#countdown", "data-expires-at"));
}

/** Polls `check` until it returns a truthy value or `timeout` ms pass; then fails naming `what`. */
export function eventually(what, check, timeout = 10_000) {
  return eventuallyWithin(what, check, { timeout, interval: 100 });
}

/**
 * Where in the page's origin any of `secrets` can be read by script: "localStorage", "sessionStorage",
 * "IndexedDB" (every database, every object store), "document.cookie", or "page" (the DOM). Only the places are
 * returned, never the secrets.
 */
export function whereSecretsAppear(page, secrets) {
  // An empty list would find nothing anywhere and prove nothing.
  if ([...secrets].length === 0) throw new Error("whereSecretsAppear: no secret to search for");
  return page.evaluate(async (secrets) => {
    const places = new Set();
    const scan = (place, text) => secrets.some((secret) => text.includes(secret)) && places.add(place);
    const request = (req) =>
      new Promise((resolve, reject) => {
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    // Binary values are searched as text too.
    const asText = (_, value) =>
      value instanceof ArrayBuffer || ArrayBuffer.isView(value)
        ? new TextDecoder().decode(value instanceof ArrayBuffer ? new Uint8Array(value) : value)
        : value;

    for (const [place, storage] of [["localStorage", localStorage], ["sessionStorage", sessionStorage]]) {
      for (let i = 0; i < storage.length; i += 1) scan(place, `${storage.key(i)}=${storage.getItem(storage.key(i))}`);
    }
    scan("document.cookie", document.cookie);
    scan("page", document.documentElement.outerHTML);
    for (const { name } of await indexedDB.databases()) {
      const db = await request(indexedDB.open(name));
      for (const store of db.objectStoreNames) {
        const objects = db.transaction(store).objectStore(store);
        const [keys, values] = await Promise.all([request(objects.getAllKeys()), request(objects.getAll())]);
        scan("IndexedDB", JSON.stringify([name, store, keys, values], asText));
      }
      db.close();
    }
    return [...places].sort();
  }, [...secrets]);
}

/** Puts `canary` in every place whereSecretsAppear searches, to show that the search finds what is there. */
export function plantCanary(page, canary) {
  return page.evaluate(async (canary) => {
    localStorage.setItem("e2e-canary", canary);
    sessionStorage.setItem("e2e-canary", canary);
    document.cookie = `e2e-canary=${canary}; path=/`;
    const open = indexedDB.open("e2e-canary", 1);
    open.onupgradeneeded = () => open.result.createObjectStore("kept");
    const db = await new Promise((resolve, reject) => {
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    const write = db.transaction("kept", "readwrite");
    write.objectStore("kept").put(new TextEncoder().encode(canary), 1);
    await new Promise((resolve) => (write.oncomplete = resolve));
    db.close();
  }, canary);
}

/** Removes what plantCanary put. */
export function removeCanary(page) {
  return page.evaluate(async () => {
    localStorage.removeItem("e2e-canary");
    sessionStorage.removeItem("e2e-canary");
    document.cookie = "e2e-canary=; path=/; max-age=0";
    await new Promise((resolve) => (indexedDB.deleteDatabase("e2e-canary").onsuccess = resolve));
  });
}
