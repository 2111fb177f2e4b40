// The stack the live test observes: one Redis as the shared store, two Tessera nodes on it (node a exact and fail
// closed, node b in compact mode and fail open with a 2 s staleness bound, so every revocation layer and both stale
// policies show), node c alone on SQLite (a store that can count live sessions: tessera_sessions_active, which Redis
// cannot report), a Prometheus scraping them every second with the shipped rules loaded; and the traffic an
// operator's dashboards are about: logins good and bad, refreshes, a refresh-token reuse, revocations of every
// kind, client credentials, a token exchange, /verify calls, a key rotation, and a Redis outage.
// Tokens, secrets and passwords stay in memory: nothing here prints one.
// The processes come from the helpers every suite shares (tests/support/processes.js), each on a free loopback port
// in a temporary directory, killed when the suite's process exits whatever happens.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
  Child, TESSERA_BIN, childEnv, eventually, freePorts, program, requireTessera, run, serveTessera, startRedis,
} from "../../support/processes.js";
import { ruleFiles } from "./promql.js";

const EXCHANGE_CLIENT = "obs-gateway";
const PASSWORD = randomBytes(18).toString("base64url");

const toml = (value) => JSON.stringify(String(value));

/**
 * A Prometheus of its own: `config` (the YAML text) in `dir`, its TSDB there too, its API on a free port.
 * Resolves once it answers /-/ready.
 */
async function startPrometheus(dir, config) {
  const binary = program("prometheus");
  const [port] = await freePorts(1);
  const file = path.join(dir, "prometheus.yml");
  await writeFile(file, config);
  const child = new Child("prometheus", binary, [`--config.file=${file}`, `--storage.tsdb.path=${path.join(dir, "tsdb")}`,
    `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"]);
  const url = `http://127.0.0.1:${port}`;
  await child.until("prometheus to be ready", async () => (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) })).ok,
    { timeout: 30_000, interval: 100 });
  return { child, url };
}

export class Stack {
  #children = [];

  static async start() {
    requireTessera();
    const stack = new Stack();
    try {
      await stack.#start();
    } catch (error) {
      const logs = stack.logs();
      await stack.close();
      throw new Error(`${error.message}\n${logs}`);
    }
    return stack;
  }

  async #start() {
    this.dir = await mkdtemp(path.join(os.tmpdir(), "tessera-observability-"));
    await mkdir(path.join(this.dir, "redis"));
    this.redis = await startRedis(path.join(this.dir, "redis"));
    this.#children.push(this.redis.child);
    // A port nothing listens on: the trusted issuer's key set can never be fetched.
    const [portA, portB, portC, deadPort] = await freePorts(4);
    this.adminToken = randomBytes(32).toString("base64url");
    await writeFile(path.join(this.dir, "admin-token"), `${this.adminToken}\n`, { mode: 0o600 });
    await writeFile(path.join(this.dir, "webhook-secret"), "a-webhook-secret-for-the-observability-test\n", { mode: 0o600 });
    this.env = childEnv({ TESSERA_MASTER_KEY: randomBytes(32).toString("base64") });
    // Every node of a shared store has the same issuer.
    this.issuer = `http://127.0.0.1:${portA}`;
    const redisStore = [
      "[store]",
      'backend = "redis"',
      `redis_urls = [${toml(this.redis.url)}]`,
      // One development Redis: no replica to wait for.
      "redis_wait_replicas = 0",
      'timeout = "2s"',
      "redis_breaker_failures = 3",
      'redis_breaker_cool_down = "1s"',
    ];
    this.nodes = {
      a: await this.#writeConfig("a", portA, deadPort, this.issuer, redisStore),
      b: await this.#writeConfig("b", portB, deadPort, this.issuer,
        [...redisStore, "[revocation]", "compact = true", 'stale_policy = "fail_open"', 'stale_after = "2s"']),
      // Node c sends its security events to a webhook nobody listens on: deliveries are retried, then fail.
      c: await this.#writeConfig("c", portC, deadPort, `http://127.0.0.1:${portC}`, [
        "[events.webhook]",
        `url = ${toml(`http://127.0.0.1:${deadPort}/hooks/tessera`)}`,
        `secret_file = ${toml(path.join(this.dir, "webhook-secret"))}`,
        "max_attempts = 2",
        'backoff_base = "100ms"',
        'timeout = "1s"',
      ]),
    };
    await this.cli(["user", "add", "alice", "--password-stdin"], `${PASSWORD}\n`);
    const client = JSON.parse(await this.cli(["client", "add", EXCHANGE_CLIENT, "--audience", "ledger", "--audience", "tessera",
      "--grant", "client_credentials,token_exchange", "--json"]));
    this.clientSecret = client.client_secret;
    for (const node of Object.values(this.nodes)) await this.#startNode(node);

    const rules = await ruleFiles();
    const targets = Object.values(this.nodes).map((node) => `127.0.0.1:${node.port}`);
    await mkdir(path.join(this.dir, "prometheus"));
    this.prometheus = await startPrometheus(path.join(this.dir, "prometheus"), [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "  evaluation_interval: 1s",
      "rule_files:",
      ...rules.map((file) => `  - ${JSON.stringify(file)}`),
      "scrape_configs:",
      "  - job_name: tessera",
      "    static_configs:",
      `      - targets: ${JSON.stringify(targets)}`,
    ].join("\n") + "\n");
    this.#children.push(this.prometheus.child);
  }

  /** A node's tessera.toml; `extra` holds its store and revocation settings (none: SQLite in its data directory). */
  async #writeConfig(name, port, deadPort, issuer, extra) {
    const config = path.join(this.dir, `node-${name}.toml`);
    await writeFile(config, [
      `data_dir = ${toml(path.join(this.dir, `data-${name}`))}`,
      `issuer = ${toml(issuer)}`,
      "[server]",
      `listen = ${toml(`127.0.0.1:${port}`)}`,
      `admin_token_file = ${toml(path.join(this.dir, "admin-token"))}`,
      "[rate_limits]",
      // Low, so that a few wrong passwords lock an address out (tessera_rate_limited_total, login_locked).
      "failed_login_per_user_and_ip = 3",
      "[gateway]",
      "require_audience = true",
      ...extra,
      "[[token_exchange]]",
      `client = ${toml(EXCHANGE_CLIENT)}`,
      'audience = "ledger"',
      "scopes = []",
      "[[trusted_issuers]]",
      'issuer = "https://partner.example/"',
      `jwks_url = ${toml(`http://127.0.0.1:${deadPort}/jwks.json`)}`,
      'audiences = ["partner-api"]',
    ].join("\n") + "\n");
    return { name, port, config, origin: `http://127.0.0.1:${port}` };
  }

  async #startNode(node) {
    node.child = await serveTessera(`tessera node ${node.name}`, node.config, this.env, node.origin);
    this.#children.push(node.child);
  }

  /** `tessera --config <node a's file> ...`; fails with the command's error unless it exits 0. */
  async cli(args, input) {
    const result = await run(TESSERA_BIN, ["--config", path.join(this.dir, "node-a.toml"), ...args], { env: this.env, input });
    if (result.code !== 0) throw new Error(`tessera ${args[0]} ${args[1] ?? ""} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  }

  logs() {
    return this.#children.map((child) => `--- ${child.name} ---\n${child.output()}`).join("\n");
  }

  async close() {
    for (const child of this.#children.reverse()) await child.stop().catch(() => {});
    this.#children = [];
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }

  // ---- Requests ----

  async request(node, method, pathname, { json, form, headers = {}, timeout = 10_000 } = {}) {
    const body = json !== undefined ? JSON.stringify(json) : form !== undefined ? new URLSearchParams(form).toString() : undefined;
    const type = json !== undefined ? { "content-type": "application/json" } : form !== undefined ? { "content-type": "application/x-www-form-urlencoded" } : {};
    const response = await fetch(`${this.nodes[node].origin}${pathname}`, { method, headers: { ...type, ...headers }, body, signal: AbortSignal.timeout(timeout) });
    const text = await response.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Not JSON: kept as text.
    }
    return { status: response.status, body: parsed };
  }

  /** Asserts the answer's status; the failure names the request and the error (never a token). */
  async expect(status, node, method, pathname, options) {
    const answer = await this.request(node, method, pathname, options);
    if (answer.status !== status) {
      const error = typeof answer.body === "object" ? answer.body?.error : String(answer.body).slice(0, 200);
      throw new Error(`${method} ${pathname} on node ${node} answered ${answer.status}, expected ${status} (${error})`);
    }
    return answer.body;
  }

  login(node, password = PASSWORD, username = "alice") {
    return this.request(node, "POST", "/auth/login", { json: { username, password, refresh_token_delivery: "body" } });
  }

  async session(node = "a") {
    const answer = await this.login(node);
    if (answer.status !== 200) throw new Error(`login answered ${answer.status}`);
    return answer.body;
  }

  refresh(node, refreshToken, timeout) {
    return this.request(node, "POST", "/oauth2/token", { form: { grant_type: "refresh_token", refresh_token: refreshToken }, timeout });
  }

  verify(node, token, audience = "tessera") {
    return this.request(node, "GET", `/verify${audience ? `?audience=${audience}` : ""}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  }

  admin(node, method, pathname, json) {
    return this.expect(200, node, method, pathname, { json, headers: { authorization: `Bearer ${this.adminToken}` } });
  }

  clientAuth(secret = this.clientSecret) {
    return { authorization: `Basic ${Buffer.from(`${EXCHANGE_CLIENT}:${secret}`).toString("base64")}` };
  }

  async metric(node, name) {
    const text = await (await fetch(`${this.nodes[node].origin}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
    const line = text.split("\n").find((candidate) => candidate.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.split(" ")[1]);
  }

  // ---- The traffic ----

  /** Everything the dashboards and rules are about, once; returns when it is done. */
  async drive() {
    // Logins: good ones on both nodes, a wrong password, then an address locked out of an account.
    const sessions = [await this.session("a"), await this.session("a"), await this.session("b"), await this.session("a")];
    await this.expect(401, "a", "POST", "/auth/login", { json: { username: "alice", password: "not-the-password" } });
    for (let i = 0; i < 5; i += 1) await this.login("a", "not-the-password", "mallory");

    // Refreshes, then a reuse: the first refresh token presented again after its successor was issued.
    const [first, second, third, fourth] = sessions;
    const rotated = await this.expect(200, "a", "POST", "/oauth2/token", { form: { grant_type: "refresh_token", refresh_token: first.refresh_token } });
    await this.expect(200, "a", "POST", "/oauth2/token", { form: { grant_type: "refresh_token", refresh_token: rotated.refresh_token } });
    await this.expect(400, "a", "POST", "/oauth2/token", { form: { grant_type: "refresh_token", refresh_token: first.refresh_token } });
    await this.expect(400, "b", "POST", "/oauth2/token", { form: { grant_type: "refresh_token", refresh_token: "not-a-refresh-token" } });

    // Service tokens and a token exchange; a client with the wrong secret.
    await this.expect(200, "a", "POST", "/oauth2/token", { form: { grant_type: "client_credentials", audience: "ledger" }, headers: this.clientAuth() });
    await this.expect(401, "a", "POST", "/oauth2/token", { form: { grant_type: "client_credentials", audience: "ledger" }, headers: this.clientAuth("wrong") });
    await this.expect(200, "a", "POST", "/oauth2/token", {
      form: {
        grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
        subject_token: second.access_token,
        subject_token_type: "urn:ietf:params:oauth:token-type:access_token",
        audience: "ledger",
      },
      headers: this.clientAuth(),
    });

    // /verify on both nodes: valid, garbage, no audience (refused before the token is read).
    for (const node of ["a", "b"]) {
      await this.expect(200, node, "GET", "/verify?audience=tessera", { headers: { authorization: `Bearer ${third.access_token}` } });
      await this.expect(401, node, "GET", "/verify?audience=tessera", { headers: { authorization: "Bearer not.a.token" } });
      await this.expect(400, node, "GET", "/verify", { headers: { authorization: `Bearer ${third.access_token}` } });
    }

    // Revocations: by jti, sid and subject through the admin API, by RFC 7009, by logout, and one written to the
    // store by the command line, which the nodes learn by propagation. Each revoked token is then refused by both.
    const claims = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
    await this.admin("a", "POST", "/admin/v1/revocations", { jti: claims(second.access_token).jti, reason: "observability test" });
    await this.admin("a", "POST", "/admin/v1/revocations", { sid: claims(third.access_token).sid, reason: "observability test" });
    await this.expect(200, "a", "POST", "/oauth2/revoke", { form: { token: fourth.refresh_token, client_id: "tessera" } });
    const fifth = await this.session("a");
    await this.expect(204, "a", "POST", "/auth/logout", { headers: { authorization: `Bearer ${fifth.access_token}` } });
    const sixth = await this.session("b");
    await this.cli(["revoke", "--jti", claims(sixth.access_token).jti, "--reason", "observability test"]);
    for (const node of ["a", "b"]) {
      await eventually(`node ${node} to refuse the revoked tokens`, async () =>
        (await this.verify(node, second.access_token)).status === 401 && (await this.verify(node, sixth.access_token)).status === 401
        && (await this.verify(node, third.access_token)).status === 401, { timeout: 15_000, interval: 100 });
    }
    const survivor = await this.session("a");
    await this.admin("a", "POST", "/admin/v1/revocations", { sub: "mallory", reason: "observability test" });
    // Node c's security events go to a webhook nobody listens on: an admin revocation there raises two, whose
    // deliveries are retried once and then fail.
    await this.admin("c", "POST", "/admin/v1/revocations", { sub: "mallory", reason: "observability test" });
    await eventually("node c's webhook deliveries to fail", async () =>
      (await this.metric("c", 'tessera_webhook_deliveries_total{outcome="failed"}')) >= 2, { timeout: 15_000 });

    // A scheduled key rotation: a next key appears.
    await this.cli(["keys", "rotate"]);
    return survivor;
  }

  /**
   * A Redis outage: frozen (SIGSTOP), so calls time out rather than fail fast. Refreshes on node a answer 503 and open
   * its breaker; node b's index goes stale (2 s) and, failing open, accepts a valid token anyway. Then Redis runs on
   * and both breakers close.
   */
  async outage(session) {
    this.redis.pause();
    try {
      const attempts = Array.from({ length: 4 }, () => this.refresh("a", session.refresh_token, 8_000).catch(() => null));
      await eventually("node a's breaker to open", async () => (await this.metric("a", "tessera_redis_breaker_state")) === 2, { timeout: 15_000 });
      await eventually("node b's index to go stale", async () =>
        (await this.metric("b", "tessera_revocation_index_age_seconds")) > 2.5, { timeout: 15_000 });
      await this.expect(200, "b", "GET", "/verify?audience=tessera", { headers: { authorization: `Bearer ${session.access_token}` } });
      await Promise.all(attempts);
    } finally {
      this.redis.resume();
    }
    for (const node of ["a", "b"]) {
      await eventually(`node ${node}'s breaker to close`, async () => (await this.metric(node, "tessera_redis_breaker_state")) === 0, { timeout: 20_000 });
    }
    // Traffic after the outage, so that the rates over the last minute hold both.
    await this.session("a");
  }
}
