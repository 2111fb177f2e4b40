// The programs the observability suite runs — Redis, Tessera, Prometheus, promtool — each on a free loopback port
// in a temporary directory, killed when the suite's process exits whatever happens. Nothing here builds or
// downloads anything: a missing program fails naming the Debian package that installs it.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const SUITE = path.resolve(fileURLToPath(import.meta.url), "../..");
export const REPO = path.resolve(SUITE, "../..");

const PROGRAMS = {
  "redis-server": { candidates: ["/usr/bin/redis-server", "/usr/local/bin/redis-server"], install: "apt-get install redis-server" },
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

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns a truthy value (returned) or `timeout` ms pass; then fails naming `what`. */
export async function eventually(what, check, { timeout = 15_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
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

/** `count` different free ports (a port just released may be handed out again by the next call). */
export async function freePorts(count) {
  const ports = new Set();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
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

/** A long-running child; its last output lines are kept to explain a failure. */
export class Child {
  #output = [];

  constructor(name, command, args, options = {}) {
    this.name = name;
    this.process = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
    const keep = (chunk) => {
      this.#output.push(...String(chunk).split("\n").filter(Boolean));
      this.#output.splice(0, Math.max(0, this.#output.length - 40));
    };
    this.process.stdout.on("data", keep);
    this.process.stderr.on("data", keep);
    this.process.on("error", (error) => keep(`spawn failed: ${error.message}`));
    this.exited = new Promise((resolve) => this.process.once("exit", resolve));
    const reap = () => this.process.kill("SIGKILL");
    process.once("exit", reap);
    this.exited.then(() => process.removeListener("exit", reap));
  }

  get running() {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  output() {
    return `--- ${this.name} ---\n${this.#output.join("\n")}`;
  }

  signal(name) {
    if (this.running) this.process.kill(name);
  }

  /** SIGTERM (and SIGCONT, should it be stopped), then SIGKILL after `grace` ms. */
  async stop(grace = 5_000) {
    if (!this.running) return;
    this.process.kill("SIGTERM");
    this.process.kill("SIGCONT");
    const timer = setTimeout(() => this.process.kill("SIGKILL"), grace);
    await this.exited;
    clearTimeout(timer);
  }

  /** Waits until `check` holds, failing at once (with the output) should the child exit first. */
  async until(what, check, options) {
    await eventually(what, () => {
      if (!this.running) throw new Error(`${this.name} exited`);
      return check();
    }, options).catch((error) => {
      throw new Error(`${error.message}\n${this.output()}`);
    });
  }
}

async function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** A redis-server of its own in `dir`: loopback only, nothing saved. SIGSTOP freezes it like a stalled store. */
export async function startRedis(dir) {
  const binary = program("redis-server");
  const [port] = await freePorts(1);
  const child = new Child("redis", binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--dir", dir, "--protected-mode", "yes", "--loglevel", "warning"]);
  await child.until(`redis to listen on ${port}`, () => accepts(port));
  return {
    child,
    url: `redis://127.0.0.1:${port}`,
    freeze: () => child.signal("SIGSTOP"),
    thaw: () => child.signal("SIGCONT"),
  };
}

/**
 * A Prometheus of its own: `config` (the YAML text) in `dir`, its TSDB there too, its API on a free port.
 * Resolves once it answers /-/ready.
 */
export async function startPrometheus(dir, config) {
  const binary = program("prometheus");
  const [port] = await freePorts(1);
  const file = path.join(dir, "prometheus.yml");
  await writeFile(file, config);
  const child = new Child("prometheus", binary, [`--config.file=${file}`, `--storage.tsdb.path=${path.join(dir, "tsdb")}`,
    `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"]);
  const url = `http://127.0.0.1:${port}`;
  await child.until("prometheus to be ready", async () => (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) })).ok,
    { timeout: 30_000 });
  return { child, url };
}
