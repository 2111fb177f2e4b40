// The process helpers every Node test suite of the repository shares: tests/observability (Redis, Tessera nodes,
// Prometheus, promtool), tests/migration (Redis, the legacy app, nginx, Tessera, `tessera migrate`) and
// clients/browser/test/e2e (Tessera). Each suite imports this file by relative path, so it uses Node's built-ins
// only: no suite has to install anything for it, and it has no package of its own to keep in step.
//
// What it gives: polling (`eventually`), free loopback ports, the programs a suite runs (a missing one fails naming
// the Debian package that installs it), children that are killed when the suite's process exits whatever happens
// and whose last output lines explain a failure, a redis-server of a test's own, and `tessera serve`.
// Nothing here builds or downloads anything, and nothing here prints a token, a cookie or a secret.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(fileURLToPath(import.meta.url), "../../..");
export const TESSERA_BIN = process.env.TESSERA_BIN ?? path.join(REPO, "target/debug/tessera");

// Where Debian (or a local build) puts the programs the suites run, and the package that installs each.
const PROGRAMS = {
  "redis-server": {
    candidates: ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"],
    install: "apt-get install redis-server",
  },
  nginx: { candidates: ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"], install: "apt-get install nginx" },
  prometheus: { candidates: ["/usr/bin/prometheus", "/usr/local/bin/prometheus"], install: "apt-get install prometheus" },
  promtool: { candidates: ["/usr/bin/promtool", "/usr/local/bin/promtool"], install: "apt-get install prometheus" },
};

/** The path of `name` (a key of PROGRAMS); fails naming the package to install when it is missing. */
export function program(name) {
  const { candidates, install } = PROGRAMS[name];
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) throw new Error(`${name} is not installed: \`${install}\``);
  return found;
}

/** Fails saying how to build it unless the tessera binary is there. */
export function requireTessera() {
  if (!existsSync(TESSERA_BIN)) {
    throw new Error(`tessera binary not found at ${TESSERA_BIN}: build it with \`cargo build -p tessera\` (or set TESSERA_BIN)`);
  }
}

// Children get no TESSERA_* variable of ours: only the test's configuration file (and what we pass) decides.
export function childEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("TESSERA_")));
  return { ...env, ...extra };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` until it returns a truthy value (returned) or `timeout` ms pass; then fails naming `what` and the
 * last error `check` threw. An aborted `signal` ends the wait at once with its reason.
 */
export async function eventually(what, check, { timeout = 10_000, interval = 50, signal } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) break;
    await sleep(interval);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** `count` different free loopback ports (a port just released may be handed out again by the next call). */
export async function freePorts(count) {
  const ports = new Set();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Runs a program to completion: { code, stdout, stderr }, whatever the exit code; killed after `timeout` ms. */
export function run(command, args, { env = process.env, input, timeout = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeout);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? `signal ${signal}`, stdout, stderr: stderr.trim() });
    });
    child.stdin.end(input ?? "");
  });
}

/**
 * A long-running child of the suite. Its last output lines are kept to explain a failure; it is killed when the
 * suite's process exits, whatever happens.
 */
export class Child {
  #output = [];
  #exit = new AbortController();

  constructor(name, command, args, options = {}) {
    this.name = name;
    this.process = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
    const keep = (chunk) => {
      this.#output.push(...String(chunk).split("\n").filter(Boolean));
      this.#output.splice(0, Math.max(0, this.#output.length - 60));
    };
    this.process.stdout.on("data", keep);
    this.process.stderr.on("data", keep);
    this.process.on("error", (error) => {
      keep(`spawn failed: ${error.message}`);
      // A child that could not be spawned emits no "exit": waiting for it would only run out the clock.
      if (!this.running) this.#exit.abort(new Error(`${this.name} failed to start (${error.message})`));
    });
    this.exited = new Promise((resolve) => this.process.once("exit", (code, signal) => resolve({ code, signal })));
    const reap = () => this.process.kill("SIGKILL");
    process.once("exit", reap);
    this.exited.then(({ code, signal }) => {
      process.removeListener("exit", reap);
      this.#exit.abort(new Error(`${this.name} exited (${code ?? signal})`));
    });
  }

  get running() {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** The last lines the child printed. */
  output() {
    return this.#output.join("\n");
  }

  signal(name) {
    if (this.running) this.process.kill(name);
  }

  /** SIGTERM, then SIGKILL after `grace` ms. A stopped (SIGSTOP) child is continued so that it can exit. */
  async stop(grace = 5_000) {
    if (!this.running) return;
    this.process.kill("SIGTERM");
    this.process.kill("SIGCONT");
    const timer = setTimeout(() => this.process.kill("SIGKILL"), grace);
    await this.exited;
    clearTimeout(timer);
  }

  /**
   * Waits until `check` holds (`options` as for eventually), failing at once should the child exit first; a failure
   * carries the child's output.
   */
  async until(what, check, options) {
    try {
      return await eventually(what, check, { ...options, signal: this.#exit.signal });
    } catch (error) {
      const message = this.#exit.signal.aborted ? `${this.#exit.signal.reason.message} before ${what}` : error.message;
      throw new Error(`${message}\n--- ${this.name} output ---\n${this.output()}`);
    }
  }

  /** Waits until the child accepts TCP connections on 127.0.0.1:`port`. */
  untilListening(port, { timeout = 15_000 } = {}) {
    return this.until(`${this.name} to listen on port ${port}`, () => accepts(port), { timeout });
  }
}

/**
 * A redis-server of its own in `dir`: loopback only, nothing saved. `pause` freezes it (SIGSTOP): connections stay
 * open and nothing answers, like a stalled store; `resume` lets it run on.
 */
export async function startRedis(dir, name = "redis") {
  const binary = program("redis-server");
  const [port] = await freePorts(1);
  const child = new Child(name, binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--dir", dir, "--protected-mode", "yes", "--loglevel", "warning"]);
  await child.untilListening(port);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    child,
    pause: () => child.signal("SIGSTOP"),
    resume: () => child.signal("SIGCONT"),
    stop: () => child.stop(),
  };
}

/**
 * `tessera --config <config> serve` (with `env`) as a Child called `name`; resolves once `origin`/healthz answers
 * 200. A server that does not become healthy is stopped, and the failure carries its output.
 */
export async function serveTessera(name, config, env, origin) {
  const child = new Child(name, TESSERA_BIN, ["--config", config, "serve"], { env });
  try {
    await child.until(`${name} to become healthy at ${origin}`, async () =>
      (await fetch(`${origin}/healthz`, { signal: AbortSignal.timeout(1_000) })).ok, { timeout: 30_000, interval: 100 });
  } catch (error) {
    await child.stop();
    throw error;
  }
  return child;
}
