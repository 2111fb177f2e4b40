// What the migration tests share: a real legacy app (Express + express-session + connect-redis on a real Redis),
// a real nginx in front of it with Tessera's /verify (auth_request), a real `tessera serve` with migration on, each
// on a free loopback port in a temporary directory that is removed at the end; the `tessera migrate` CLI; and a
// load generator of virtual users who move from their legacy session to tokens as the rollout steers them.
// Nothing here builds or downloads anything: a missing dependency fails naming the package that installs it.
// Nothing here prints a token, a cookie or a secret. The process helpers (ports, children, Redis, `tessera serve`)
// are the ones every suite shares, in tests/support/processes.js.
import { createHmac, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  Child, TESSERA_BIN, childEnv, eventually, freePorts, program, requireTessera, run, serveTessera, sleep, startRedis as startRedisServer,
} from "../../support/processes.js";

export { eventually, sleep };
export const SUITE = path.resolve(fileURLToPath(import.meta.url), "../..");
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** The cookie Tessera sets for its refresh token (Path=/auth). */
export const REFRESH_COOKIE = "__Secure-tessera-refresh";
export const LEGACY_COOKIE = "connect.sid";

// ---- Redis ----

/** A redis-server of its own (see startRedisServer) that also answers single commands: `command("GET", key)`. */
async function startRedis(dir, name) {
  const redis = await startRedisServer(dir, name);
  /** Sends one command (RESP) and returns the raw reply text. */
  return { ...redis, command: (...words) => redisCommand(redis.port, words) };
}

/** One Redis command over a fresh connection, reply as raw RESP text (enough for GET/SET/TTL/KEYS). */
function redisCommand(port, words, timeout = 2_000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    const chunks = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on port ${port} did not answer ${words[0]}`));
    }, timeout);
    socket.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on("data", (chunk) => {
      chunks.push(chunk);
      const text = Buffer.concat(chunks).toString("utf8");
      if (isCompleteReply(text)) {
        clearTimeout(timer);
        socket.end();
        resolve(text);
      }
    });
    const encoded = words.map((word) => `$${Buffer.byteLength(word)}\r\n${word}\r\n`).join("");
    socket.write(`*${words.length}\r\n${encoded}`);
  });
}

function isCompleteReply(text) {
  if (/^[+\-:]/.test(text)) return text.endsWith("\r\n");
  const bulk = /^\$(-?\d+)\r\n/.exec(text);
  if (bulk) return Number(bulk[1]) < 0 || Buffer.byteLength(text) >= bulk[0].length + Number(bulk[1]) + 2;
  const array = /^\*(-?\d+)\r\n/.exec(text);
  if (array) return Number(array[1]) <= 0 || text.split("\r\n").length - 1 >= 1 + 2 * Number(array[1]);
  return false;
}

/** The value of a bulk-string reply, or null. */
export function bulkValue(reply) {
  const match = /^\$(-?\d+)\r\n/.exec(reply);
  if (!match || Number(match[1]) < 0) return null;
  return Buffer.from(reply, "utf8").subarray(match[0].length, match[0].length + Number(match[1])).toString("utf8");
}

// ---- The legacy app ----

async function startLegacyApp({ redisUrl, secrets, port }) {
  const child = new Child("legacy-app", process.execPath, [path.join(SUITE, "legacy-app/app.js"), String(port)], {
    env: childEnv({ REDIS_URL: redisUrl, SESSION_SECRETS: JSON.stringify(secrets) }),
  });
  await child.until("legacy-app to print that it listens", () => /legacy-app listening on/.test(child.output()), { timeout: 15_000 });
  return child;
}

// ---- Legacy cookies, as express-session (cookie-signature) makes them ----

/** `s:<id>.<base64 HMAC-SHA256 without padding>`, URL-encoded: the value of a connect.sid cookie. */
export function signSessionId(id, secret) {
  const signature = createHmac("sha256", secret).update(id).digest("base64").replace(/=+$/, "");
  return encodeURIComponent(`s:${id}.${signature}`);
}

/** The session id a connect.sid value names (its signature unchecked). */
export function sessionIdOf(cookieValue) {
  const text = decodeURIComponent(cookieValue);
  return text.slice(2, text.lastIndexOf("."));
}

// ---- Tessera ----

function tomlString(value) {
  return JSON.stringify(String(value));
}

/** The tessera.toml of a test stack; `options` choose the store, adapter, triggers and gates. */
function tesseraToml(s, options) {
  const store = options.storeRedis
    ? [
        "[store]",
        'backend = "redis"',
        `redis_urls = [${tomlString(options.storeRedis.url)}]`,
        // One development Redis: no replica to wait for.
        "redis_wait_replicas = 0",
        'timeout = "2s"',
        "redis_breaker_failures = 3",
        'redis_breaker_cool_down = "1s"',
      ]
    : [];
  const triggers = { window: "5s", min_requests: 1_000_000, rollback_error_rate: 0.5, rollback_p95: "10s", ...options.triggers };
  const gates = { window: "5s", min_requests: 0, max_error_rate: 0.5, max_p95: "10s", ...options.gates };
  const table = (name, values) => [
    `[${name}]`,
    ...Object.entries(values).map(([key, value]) => `${key} = ${typeof value === "string" ? tomlString(value) : value}`),
  ];
  const adapter =
    options.adapter === "whoami"
      ? [
          "[migration.whoami]",
          `url = ${tomlString(`http://127.0.0.1:${s.appPort}/whoami`)}`,
          `cookie_name = ${tomlString(LEGACY_COOKIE)}`,
          'timeout = "500ms"',
          'cache_ttl = "2s"',
          'user_id_field = "/id"',
          'roles_field = "/roles"',
          'expires_field = "/expires"',
        ]
      : [
          "[migration.express]",
          `redis_url = ${tomlString(s.legacyRedis.url)}`,
          'prefix = "sess:"',
          `cookie_name = ${tomlString(LEGACY_COOKIE)}`,
          `secrets = [${s.secrets.map(tomlString).join(", ")}]`,
          'user_id_field = "/user/id"',
          'roles_field = "/user/roles"',
          'timeout = "250ms"',
        ];
  return [
    `data_dir = ${tomlString(path.join(s.dir, "tessera-data"))}`,
    // The public origin is nginx's: the browser, the legacy cookie and /auth share it.
    `issuer = ${tomlString(s.origin)}`,
    "[tokens]",
    `access_ttl = ${tomlString(options.accessTtl ?? "20s")}`,
    'leeway = "1s"',
    "[server]",
    `listen = ${tomlString(`127.0.0.1:${s.tesseraPort}`)}`,
    `admin_token_file = ${tomlString(s.adminTokenFile)}`,
    // Every virtual user comes from 127.0.0.1: per-address limits would measure the test, not Tessera.
    "[rate_limits]",
    "login_per_ip = 1000000",
    "failed_login_per_user_and_ip = 1000000",
    "failed_login_per_user = 1000000",
    "failed_refresh_per_ip = 1000000",
    "failed_refresh_per_user = 1000000",
    "[gateway]",
    'forwarded_headers = "nginx"',
    "require_audience = true",
    "[demo]",
    "enabled = true",
    ...store,
    "[migration]",
    "enabled = true",
    `adapter = ${tomlString(options.adapter ?? "express-redis")}`,
    `legacy_session = ${tomlString(options.legacySession ?? "keep")}`,
    `on_unavailable = ${tomlString(options.onUnavailable ?? "deny")}`,
    'session_audiences = ["tessera"]',
    'poll_interval = "100ms"',
    ...adapter,
    ...table("migration.triggers", triggers),
    ...table("migration.gates", gates),
  ].join("\n") + "\n";
}

// ---- nginx ----

async function startNginx(s) {
  const binary = program("nginx");
  const dir = path.join(s.dir, "nginx");
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const template = await readFile(path.join(SUITE, "nginx.conf.template"), "utf8");
  const config = template
    .replaceAll("{{DIR}}", dir)
    .replaceAll("{{NGINX_PORT}}", String(s.nginxPort))
    .replaceAll("{{TESSERA_PORT}}", String(s.tesseraPort))
    .replaceAll("{{APP_PORT}}", String(s.appPort));
  const file = path.join(dir, "nginx.conf");
  await writeFile(file, config);
  // -e: the error log before the configuration is read, so that nginx never opens /var/log/nginx.
  const child = new Child("nginx", binary, ["-p", dir, "-e", path.join(dir, "startup.log"), "-c", file]);
  await child.untilListening(s.nginxPort);
  return child;
}

// ---- The stack ----

/**
 * Starts a legacy Redis, the legacy app, Tessera and nginx (and, with `storeRedis: true`, a second Redis as
 * Tessera's store). Options: `adapter` ("express-redis" or "whoami"), `legacySession`, `onUnavailable`,
 * `accessTtl`, `triggers` and `gates` (the [migration.triggers] / [migration.gates] tables; test defaults never
 * fire and never close), `storeRedis`; `tessera: false` leaves Tessera out (the fixture alone).
 */
export async function startStack(options = {}) {
  if (options.tessera !== false) requireTessera();
  const dir = await mkdtemp(path.join(os.tmpdir(), "tessera-migration-"));
  const stack = new Stack(dir);
  try {
    await stack.start(options);
  } catch (error) {
    await stack.close();
    throw error;
  }
  return stack;
}

class Stack {
  #children = [];

  constructor(dir) {
    this.dir = dir;
  }

  async start(options) {
    [this.appPort, this.tesseraPort, this.nginxPort] = await freePorts(3);
    this.origin = `http://127.0.0.1:${this.nginxPort}`;
    this.tesseraOrigin = `http://127.0.0.1:${this.tesseraPort}`;
    // The legacy app's signing secrets, newest first: NEW signs new cookies, OLD is still accepted (rotation).
    this.secrets = [randomBytes(24).toString("base64url"), randomBytes(24).toString("base64url")];
    this.adminToken = randomBytes(32).toString("base64url");
    this.adminTokenFile = path.join(this.dir, "admin-token");
    await writeFile(this.adminTokenFile, `${this.adminToken}\n`, { mode: 0o600 });

    await mkdir(path.join(this.dir, "legacy-redis"));
    this.legacyRedis = await startRedis(path.join(this.dir, "legacy-redis"), "legacy redis");
    this.#children.push(this.legacyRedis.child);
    if (options.storeRedis) {
      await mkdir(path.join(this.dir, "store-redis"));
      this.storeRedis = await startRedis(path.join(this.dir, "store-redis"), "store redis");
      this.#children.push(this.storeRedis.child);
    }
    this.app = await startLegacyApp({ redisUrl: this.legacyRedis.url, secrets: this.secrets, port: this.appPort });
    this.#children.push(this.app);

    this.config = path.join(this.dir, "tessera.toml");
    await writeFile(this.config, tesseraToml(this, { ...options, storeRedis: this.storeRedis }));
    this.env = childEnv({ TESSERA_MASTER_KEY: randomBytes(32).toString("base64") });
    if (options.tessera !== false) {
      this.tessera = await serveTessera("tessera", this.config, this.env, this.tesseraOrigin);
      this.#children.push(this.tessera);
    }
    this.nginx = await startNginx(this);
    this.#children.push(this.nginx);
  }

  /** Stops every process (nginx first) and removes the temporary directory. */
  async close() {
    for (const child of this.#children.reverse()) await child.stop().catch(() => {});
    this.#children = [];
    await rm(this.dir, { recursive: true, force: true });
  }

  /** The last lines each process printed, to explain a failure. */
  logs() {
    return this.#children.map((child) => `--- ${child.name} ---\n${child.output()}`).join("\n");
  }

  // ---- Legacy sessions ----

  /** Logs `username` in the legacy way (through nginx) and returns the value of its connect.sid cookie. */
  async legacyLogin(username) {
    const response = await fetch(`${this.origin}/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username }),
      signal: AbortSignal.timeout(10_000),
    });
    if (response.status !== 200) throw new Error(`legacy login of ${username} answered ${response.status}`);
    const cookie = cookieFrom(response, LEGACY_COOKIE);
    if (!cookie) throw new Error(`legacy login of ${username} set no ${LEGACY_COOKIE} cookie`);
    return cookie;
  }

  /** Legacy logins of every name in `usernames`, a few at a time: name → connect.sid value. */
  async legacyLogins(usernames) {
    const cookies = new Map();
    for (let i = 0; i < usernames.length; i += 8) {
      const batch = usernames.slice(i, i + 8);
      const values = await Promise.all(batch.map((name) => this.legacyLogin(name)));
      batch.forEach((name, j) => cookies.set(name, values[j]));
    }
    return cookies;
  }

  /** The session JSON the legacy Redis holds for a connect.sid value, or null. */
  async legacySession(cookieValue) {
    const text = bulkValue(await this.legacyRedis.command("GET", `sess:${sessionIdOf(cookieValue)}`));
    return text === null ? null : JSON.parse(text);
  }

  // ---- Requests through nginx ----

  /** GET /api/me through nginx with `auth`: `{ cookie }` (a connect.sid value) or `{ bearer }`, plus `headers`. */
  async apiMe(auth, headers = {}) {
    const response = await fetch(`${this.origin}/api/me`, {
      headers: { ...authHeaders(auth), ...headers },
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, headers: response.headers, body: await jsonOrText(response) };
  }

  /** GET /auth/migrate with a legacy cookie, from the page's own origin. */
  async migrationStatus(cookie) {
    const response = await fetch(`${this.origin}/auth/migrate`, {
      headers: { ...authHeaders({ cookie }), origin: this.origin },
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, headers: response.headers, body: await jsonOrText(response) };
  }

  /** Where GET /auth/migrate steers a legacy cookie: `{ status, phase, method }` (other fields left out). */
  async steering(cookie) {
    const answer = await this.migrationStatus(cookie);
    return { status: answer.status, phase: answer.body?.phase, method: answer.body?.method };
  }

  /** POST /auth/migrate with a legacy cookie: the answer, and the refresh cookie it set (if any). */
  async migrate(cookie, { origin = this.origin, body = {} } = {}) {
    const response = await fetch(`${this.origin}/auth/migrate`, {
      method: "POST",
      headers: { ...authHeaders({ cookie }), ...(origin ? { origin } : {}), "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    return {
      status: response.status,
      headers: response.headers,
      body: await jsonOrText(response),
      refreshCookie: cookieFrom(response, REFRESH_COOKIE),
    };
  }

  /** POST /auth/refresh with a refresh cookie and its CSRF token. */
  async refresh(refreshCookie, csrf) {
    const response = await fetch(`${this.origin}/auth/refresh`, {
      method: "POST",
      headers: { cookie: `${REFRESH_COOKIE}=${refreshCookie}`, "x-csrf-token": csrf, origin: this.origin },
      signal: AbortSignal.timeout(10_000),
    });
    return {
      status: response.status,
      body: await jsonOrText(response),
      refreshCookie: cookieFrom(response, REFRESH_COOKIE),
    };
  }

  // ---- Operating Tessera ----

  /** `tessera --config <file> migrate <args>`: resolves to { code, stdout, stderr } whatever the exit code. */
  async migrateCli(args, { timeout = 15_000 } = {}) {
    return run(TESSERA_BIN, ["--config", this.config, "migrate", ...args], { env: this.env, timeout });
  }

  /** `tessera migrate status --json`, parsed; fails when the command does. */
  async status() {
    const result = await this.migrateCli(["status", "--json"]);
    if (result.code !== 0) throw new Error(`tessera migrate status --json exited ${result.code}: ${result.stderr}`);
    try {
      return JSON.parse(result.stdout);
    } catch {
      throw new Error(`tessera migrate status --json printed no JSON: ${result.stdout.slice(0, 500)}`);
    }
  }

  /** `tessera migrate set ...`; fails (with the CLI's error) when it does not exit 0. */
  async setPhase(args) {
    const result = await this.migrateCli(["set", ...args]);
    if (result.code !== 0) throw new Error(`tessera migrate set ${args.join(" ")} exited ${result.code}: ${result.stderr}`);
    return result;
  }

  /** The admin API with the admin token. */
  async admin(method, pathname, body) {
    const response = await fetch(`${this.tesseraOrigin}${pathname}`, {
      method,
      headers: {
        authorization: `Bearer ${this.adminToken}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, body: await jsonOrText(response) };
  }

  async metrics() {
    const response = await fetch(`${this.tesseraOrigin}/metrics`, { signal: AbortSignal.timeout(5_000) });
    if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`);
    return response.text();
  }

  /** The sum of a metric's series whose labels include `labels`. */
  async metric(name, labels = {}) {
    return sumMetric(await this.metrics(), name, labels);
  }
}

function authHeaders(auth = {}) {
  const headers = {};
  if (auth.cookie !== undefined) headers.cookie = `${LEGACY_COOKIE}=${auth.cookie}`;
  if (auth.bearer !== undefined) headers.authorization = `Bearer ${auth.bearer}`;
  return headers;
}

async function jsonOrText(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The value of cookie `name` in a response's Set-Cookie headers (null when absent or cleared). */
export function cookieFrom(response, name) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const at = pair.indexOf("=");
    if (pair.slice(0, at).trim() === name) return pair.slice(at + 1).trim() || null;
  }
  return null;
}

/** Sums a Prometheus metric over the series whose labels include `labels`. */
export function sumMetric(text, name, labels = {}) {
  let total = 0;
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) total += Number(match[3]);
  }
  return total;
}

// ---- Load: virtual users moving from their legacy session to tokens ----

/**
 * Virtual users, each with a legacy session, in a loop until `stop()` (or `maxMs`, whichever comes first: the loop
 * always ends by itself). Each iteration:
 *
 * 1. `GET /auth/migrate` (legacy cookie, Origin): where the user is steered.
 * 2. Steered to tokens without a token yet: `POST /auth/migrate`, keeping the access token, refresh cookie and
 *    CSRF token. (409 `not_in_rollout` there is a rollback racing the question, not a failure.)
 * 3. Holding a token: refresh it (`POST /auth/refresh`) shortly before it expires, or every `refreshEvery`
 *    iterations.
 * 4. `GET /api/me` through nginx: with the bearer token when steered to tokens, with the legacy cookie when steered
 *    to sessions; a user steered to sessions who still holds a token also calls with the token (rollback never
 *    logs anyone out: issued tokens keep working). Every answer must be 200 naming this user and the method used.
 *
 * Every failure is recorded with what was sent and what came back (never a token or cookie).
 */
export function startLoad(stack, cookies, { maxMs = 60_000, thinkMs = 60, refreshEvery = 0, refreshMarginMs = 6_000 } = {}) {
  const started = Date.now();
  const deadline = started + maxMs;
  let stopping = false;
  const failures = [];
  const counts = {};
  const count = (key) => (counts[key] = (counts[key] ?? 0) + 1);
  const users = [...cookies].map(([name, cookie]) => ({
    name,
    cookie,
    token: null,
    expiresAt: 0,
    refreshCookie: null,
    csrf: null,
    sinceRefresh: 0,
    steered: null,
    phase: null,
    iterations: 0,
    steerLog: [],
  }));

  const fail = (user, what, details) => {
    failures.push({ at: Date.now() - started, user: user.name, what, ...details, body: redact(details.body) });
  };

  async function request(user, what, send) {
    try {
      return await send();
    } catch (error) {
      fail(user, what, { error: String(error?.message ?? error) });
      return null;
    }
  }

  async function iteration(user) {
    const steer = await request(user, "GET /auth/migrate", () => stack.migrationStatus(user.cookie));
    if (!steer) return;
    count("steer");
    if (steer.status !== 200 || !["token", "session"].includes(steer.body?.method)) {
      fail(user, "GET /auth/migrate", { status: steer.status, body: steer.body });
      return;
    }
    user.steered = steer.body.method;
    user.phase = steer.body.phase;
    if (user.steerLog.at(-1)?.method !== user.steered) user.steerLog.push({ at: Date.now() - started, method: user.steered, phase: user.phase });

    let useToken = user.steered === "token";
    if (useToken && !user.token) {
      const answer = await request(user, "POST /auth/migrate", () => stack.migrate(user.cookie));
      if (!answer) return;
      count("migrate");
      if (answer.status === 409 && answer.body?.error === "not_in_rollout") {
        count("migrate-raced");
        useToken = false;
      } else if (answer.status !== 200 || typeof answer.body?.access_token !== "string" || !answer.refreshCookie) {
        fail(user, "POST /auth/migrate", { status: answer.status, body: answer.body, refreshCookie: Boolean(answer.refreshCookie) });
        return;
      } else {
        keepTokens(user, answer.body, answer.refreshCookie);
      }
    }

    if (user.token) {
      user.sinceRefresh += 1;
      const due = user.expiresAt - Date.now() < refreshMarginMs || (refreshEvery > 0 && user.sinceRefresh >= refreshEvery);
      if (due) {
        const answer = await request(user, "POST /auth/refresh", () => stack.refresh(user.refreshCookie, user.csrf));
        if (answer) {
          count("refresh");
          if (answer.status === 200 && typeof answer.body?.access_token === "string" && answer.refreshCookie) {
            keepTokens(user, answer.body, answer.refreshCookie);
          } else {
            fail(user, "POST /auth/refresh", { status: answer.status, body: answer.body });
          }
        }
      }
    }

    const calls = [];
    if (useToken && user.token) calls.push("token");
    else {
      calls.push("session");
      if (user.token && Date.now() < user.expiresAt) calls.push("token");
    }
    for (const method of calls) {
      const auth = method === "token" ? { bearer: user.token } : { cookie: user.cookie };
      const answer = await request(user, `GET /api/me (${method})`, () => stack.apiMe(auth));
      if (!answer) continue;
      count(`api-${method}`);
      const body = answer.body ?? {};
      if (answer.status !== 200 || body.user !== user.name || body.method !== method) {
        fail(user, `GET /api/me (${method})`, { status: answer.status, body, phase: user.phase });
      }
    }
  }

  function keepTokens(user, body, refreshCookie) {
    user.token = body.access_token;
    user.csrf = body.csrf_token;
    user.refreshCookie = refreshCookie;
    user.expiresAt = Date.now() + Number(body.expires_in) * 1000;
    user.sinceRefresh = 0;
  }

  async function loop(user) {
    // Spread the users' first requests over a moment, as real traffic would be.
    await sleep(Math.random() * 200);
    while (!stopping && Date.now() < deadline) {
      await iteration(user);
      user.iterations += 1;
      await sleep(thinkMs / 2 + Math.random() * thinkMs);
    }
  }

  const done = Promise.all(users.map(loop)).then(() => ({ failures, counts, users, ms: Date.now() - started }));
  return {
    startedAt: started,
    users,
    failures,
    counts,
    /** Resolves once every user has completed `n` more iterations (bounded by `timeout`). */
    async iterations(n = 2, timeout = 15_000) {
      const target = new Map(users.map((user) => [user, user.iterations + n]));
      await eventually(`every virtual user to complete ${n} more iterations`, () =>
        users.every((user) => user.iterations >= target.get(user)) || (stopping || Date.now() >= deadline
          ? Promise.reject(new Error("the load has stopped"))
          : false), { timeout, interval: 25 });
    },
    /** Users by where they were last steered. */
    steered(method) {
      return users.filter((user) => user.steered === method).map((user) => user.name).sort();
    },
    stop() {
      stopping = true;
      return done;
    },
    done,
  };
}

/** An answer's body without the credentials it may hold, for failure reports. */
export function redact(body) {
  if (body === null || typeof body !== "object") return body;
  const secrets = ["access_token", "refresh_token", "csrf_token", "id_token"];
  return Object.fromEntries(Object.entries(body).map(([key, value]) => [key, secrets.includes(key) ? "[redacted]" : value]));
}

/** Failures as readable lines, for assertion messages (at most `limit`). */
export function describeFailures(failures, limit = 15) {
  const lines = failures.slice(0, limit).map((f) => JSON.stringify(f).slice(0, 400));
  if (failures.length > limit) lines.push(`... and ${failures.length - limit} more`);
  return lines.join("\n");
}

/** `count` user names: `user-00`, `user-01`, ... */
export function userNames(count, prefix = "user") {
  return Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`);
}

/** A rollout as text, `rollout 5%` or `canary`, whether the status names it as an object or as text. */
export function describeRollout(rollout) {
  if (rollout === null || rollout === undefined) return String(rollout);
  if (typeof rollout === "string") return rollout;
  return rollout.phase === "rollout" ? `rollout ${rollout.percent}%` : String(rollout.phase);
}

/** The phase of a `migrate status --json` answer as text, like describeRollout. */
export function describeStatus(status) {
  return describeRollout({ phase: status.phase, percent: status.percent });
}
