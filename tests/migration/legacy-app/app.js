// The "legacy" application of issue 18: what a team has before it adopts Tessera. A small Express app whose users
// log in with server-side sessions (express-session, kept in Redis by connect-redis: cookie `connect.sid`, keys
// `sess:<id>`), plus the protected API the gateway puts Tessera's /verify in front of.
//
// Configuration, from the environment (argv[2] may name the port instead):
//   PORT            the port to listen on, on 127.0.0.1 (required)
//   REDIS_URL       the Redis holding the sessions (default redis://127.0.0.1:6379)
//   SESSION_SECRETS a JSON array of signing secrets, newest first, as express-session takes them (required)
//
// Once listening it prints one line `legacy-app listening on http://127.0.0.1:<port>` on stdout. It never prints a
// cookie, a session id or a secret.
import express from "express";
import session from "express-session";
import { RedisStore } from "connect-redis";
import { createClient } from "redis";

const port = Number(process.argv[2] ?? process.env.PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("legacy-app: give the port as PORT or the first argument");
  process.exit(2);
}
let secrets;
try {
  secrets = JSON.parse(process.env.SESSION_SECRETS ?? "");
} catch {
  secrets = null;
}
if (!Array.isArray(secrets) || secrets.length === 0 || !secrets.every((s) => typeof s === "string" && s.length > 0)) {
  console.error('legacy-app: SESSION_SECRETS must be a JSON array of secrets, newest first (e.g. ["new","old"])');
  process.exit(2);
}

const redis = createClient({
  url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
  // Give up on a command quickly while Redis is away, so a request fails (500) instead of hanging.
  disableOfflineQueue: true,
  socket: { connectTimeout: 1_000, reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 1_000) },
});
// Without a listener node-redis would crash the process on a lost connection; tests stop Redis on purpose.
let lastError = "";
redis.on("error", (error) => {
  const text = String(error?.message ?? error);
  if (text !== lastError) console.error(`legacy-app: redis: ${text}`);
  lastError = text;
});
redis.on("ready", () => (lastError = ""));
await redis.connect();

const sessions = session({
  store: new RedisStore({ client: redis, prefix: "sess:" }),
  name: "connect.sid",
  secret: secrets,
  resave: false,
  saveUninitialized: false,
  cookie: { httpOnly: true, sameSite: "lax", secure: false, path: "/", maxAge: 24 * 60 * 60 * 1000 },
});

/** The roles the legacy app gives a user: staff accounts are named `staff...`. */
function rolesOf(username) {
  return username.startsWith("staff") ? ["staff"] : ["user"];
}

const app = express();
app.disable("x-powered-by");
app.use(express.json({ limit: "4kb" }));

// Only the legacy routes use the session. /api/ is behind the gateway, which decides who the caller is.
app.post("/login", sessions, (req, res, next) => {
  const username = req.body?.username;
  if (typeof username !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(username)) {
    res.status(400).json({ error: "username must be 1 to 64 letters, digits, '.', '_' or '-'" });
    return;
  }
  // A new session id at login, as any session-fixation-aware app does.
  req.session.regenerate((error) => {
    if (error) return next(error);
    req.session.user = { id: username, roles: rolesOf(username) };
    req.session.save((error) => {
      if (error) return next(error);
      res.json(req.session.user);
    });
  });
});

app.post("/logout", sessions, (req, res, next) => {
  req.session.destroy((error) => {
    if (error) return next(error);
    res.clearCookie("connect.sid", { path: "/" });
    res.status(204).end();
  });
});

// The "who am I" endpoint Tessera's whoami adapter calls with the browser's cookie.
app.get("/whoami", sessions, (req, res) => {
  res.set("Cache-Control", "no-store");
  const user = req.session?.user;
  if (!user) {
    res.status(401).json({ error: "not logged in" });
    return;
  }
  const expires = req.session.cookie.expires;
  res.json({
    id: user.id,
    roles: user.roles,
    expires: expires ? Math.floor(new Date(expires).getTime() / 1000) : null,
  });
});

// The protected upstream: it trusts only what the gateway (nginx + Tessera's /verify) tells it, never a cookie.
app.get("/api/me", (req, res) => {
  res.set("Cache-Control", "no-store");
  res.json({
    user: req.get("x-user-id") ?? null,
    roles: req.get("x-user-roles") ?? null,
    method: req.get("x-auth-method") ?? null,
    deprecation: req.get("x-auth-deprecation") ?? null,
  });
});

app.use((req, res) => res.status(404).json({ error: "not found" }));
// A session store that is down is a 500 here: the legacy app has no better answer.
// eslint-disable-next-line no-unused-vars
app.use((error, req, res, next) => {
  console.error(`legacy-app: ${req.method} ${req.path}: ${error?.message ?? error}`);
  res.status(500).json({ error: "internal error" });
});

const server = app.listen(port, "127.0.0.1", () => {
  console.log(`legacy-app listening on http://127.0.0.1:${port}`);
});
server.on("error", (error) => {
  console.error(`legacy-app: ${error.message}`);
  process.exit(1);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, () => {
    server.close();
    server.closeAllConnections?.();
    redis.destroy?.();
    process.exit(0);
  });
}
