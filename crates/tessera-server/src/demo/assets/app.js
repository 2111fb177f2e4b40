// The Tessera demo: everything the page shows comes through @tessera/browser. Server data is only ever written
// with textContent (never innerHTML), and no token is ever put on the page: the library does not hand tokens to
// the application except through getAccessToken(), which this demo does not call.
import { createTessera } from "/demo/tessera-browser.js";

const $ = (id) => document.getElementById(id);

// One sentence per typed error code of the library, so every failure reads as something a user can act on.
const ERROR_MESSAGES = {
  network: "Tessera could not be reached. Check the connection and try again in a moment.",
  server: "Tessera had a problem answering (HTTP {status}). Try again in a moment.",
  invalid_response: "Tessera sent an answer this page could not read. Try again in a moment.",
  invalid_credentials: "Wrong username or password.",
  rate_limited: "Too many attempts. Wait {retryAfter} seconds and try again.",
  session_ended: "Your session has ended (it expired or was ended elsewhere). Please log in again.",
  cookies_blocked: "Your browser refused Tessera's session cookie. Allow cookies for this site to stay signed in.",
  not_logged_in: "You are not logged in.",
  csrf: "Tessera refused the request as a possible cross-site request forgery. Reload the page and try again.",
  not_in_rollout: "Your current session cannot be carried over yet. Keep using your usual sign-in for now.",
  use_legacy_login: "Please sign in through the existing application for now: this account is not on tokens yet.",
};

const LOGOUT_MESSAGES = {
  user: "You have logged out.",
  everywhere: "You have logged out on every device.",
  session_ended: "Your session has ended (it expired or was ended elsewhere). Please log in again.",
  other_tab: "You logged out in another tab.",
};

// A failure this page itself detected, with its sentence.
class Problem extends Error {}

const codeOf = (error) => error?.code;

function describeError(error) {
  if (error instanceof Problem) return error.message;
  const template = ERROR_MESSAGES[codeOf(error)];
  if (!template) return "Something unexpected went wrong. Reload the page and try again.";
  return template
    .replace("{status}", String(error.status ?? "unknown"))
    .replace("{retryAfter}", String(error.retryAfter ?? "a few"));
}

function showError(error) {
  const box = $("error");
  box.textContent = describeError(error);
  box.dataset.code = error instanceof Problem ? "app" : String(codeOf(error) ?? "unknown");
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
  $("login-view").hidden = state !== "logged-out";
  $("app-view").hidden = state !== "logged-in";
  renderMigrate();
}

// Migration from the application's legacy session cookie (issue #18): the button is offered only while signed
// out and only to a browser whose session the rollout steers to tokens, as GET /auth/migrate says.
let migrationOffered = false;
let migrationCheck = 0;

function renderMigrate() {
  const hidden = !migrationOffered || $("status").dataset.state !== "logged-out";
  $("migrate-view").hidden = hidden;
  $("migrate").hidden = hidden;
}

async function checkMigration() {
  const mine = ++migrationCheck;
  let offered = false;
  try {
    offered = (await client.migrationStatus()).method === "token";
  } catch {
    // No migration running, no legacy session, or Tessera unreachable: nothing to offer, nothing to report.
  }
  if (mine !== migrationCheck) return; // a later check (after a later logout) decides
  migrationOffered = offered;
  renderMigrate();
}

const client = createTessera({
  onLogout(reason) {
    showLoggedOut(LOGOUT_MESSAGES[reason] ?? "You have been logged out.");
  },
  onTokenRefreshed: renderCountdown,
  onError: showError,
});

function showLoggedOut(message) {
  setStatus("logged-out", message);
  checkMigration();
  renderCountdown();
  $("sessions").replaceChildren();
  $("api-result").textContent = "";
  $("api-result").dataset.state = "idle";
  $("user").textContent = "…";
}

async function showLoggedIn() {
  setStatus("logged-in", "You are logged in.");
  renderCountdown();
  await Promise.all([callApi(), loadSessions()]);
}

// Runs a user action; any failure is shown as a sentence and leaves the page's state as it was.
async function attempt(action) {
  try {
    clearError();
    await action();
  } catch (error) {
    showError(error);
  }
}

async function callApi() {
  const result = $("api-result");
  result.dataset.state = "loading";
  try {
    const response = await client.fetch("/demo/api/me");
    if (!response.ok) {
      // A refused refresh has already logged this page out; the status line says why.
      throw new Problem(
        client.isLoggedIn()
          ? `The demo API refused the request (HTTP ${response.status}).`
          : LOGOUT_MESSAGES.session_ended,
      );
    }
    const body = await response.json().catch(() => {
      throw new Problem("The demo API sent an answer that is not JSON.");
    });
    $("user").textContent = String(body.sub ?? "");
    result.textContent = JSON.stringify(body, null, 2);
    result.dataset.state = "ok";
  } catch (error) {
    result.dataset.state = "error";
    throw error;
  } finally {
    result.dataset.seq = String(Number(result.dataset.seq) + 1);
  }
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

async function loadSessions() {
  const sessions = await client.sessions();
  const items = sessions.map((session) => {
    const item = document.createElement("li");
    item.dataset.sessionId = session.id;
    item.dataset.current = String(Boolean(session.current));
    const text = document.createElement("span");
    text.textContent =
      `${session.current ? "This browser" : session.user_agent || "Unknown device"} — ` +
      `started ${when(session.created_at)}, last used ${when(session.last_used_at)}`;
    item.append(text);
    // The current session ends with "Log out", which also clears this page's state.
    if (!session.current) {
      const end = document.createElement("button");
      end.type = "button";
      end.className = "end-session";
      end.textContent = "End this session";
      end.addEventListener("click", () =>
        attempt(async () => {
          await client.endSession(session.id);
          await loadSessions();
        }),
      );
      item.append(end);
    }
    return item;
  });
  $("sessions").replaceChildren(...items);
}

function renderCountdown() {
  const countdown = $("countdown");
  const expiresAt = client.expiresAt();
  countdown.dataset.expiresAt = String(expiresAt ?? "");
  if (expiresAt === null) {
    countdown.textContent = "—";
    return;
  }
  const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
  const minutes = Math.floor(left / 60);
  countdown.textContent =
    left === 0 ? "now (a new one is fetched when needed)" : `${minutes}:${String(left % 60).padStart(2, "0")}`;
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const button = $("login-button");
  button.disabled = true;
  attempt(async () => {
    await client.login($("username").value, $("password").value);
    $("password").value = "";
    await showLoggedIn();
  }).finally(() => {
    button.disabled = false;
  });
});

$("migrate").addEventListener("click", () => {
  const button = $("migrate");
  button.disabled = true;
  attempt(async () => {
    try {
      await client.migrate();
    } catch (error) {
      // Not steered to tokens, or no valid legacy session: the button cannot work, so it goes away.
      if (codeOf(error) === "not_in_rollout" || codeOf(error) === "session_ended") {
        migrationOffered = false;
        renderMigrate();
      }
      throw error;
    }
    await showLoggedIn();
  }).finally(() => {
    button.disabled = false;
  });
});

$("call-api").addEventListener("click", () => attempt(callApi));
$("load-sessions").addEventListener("click", () => attempt(loadSessions));
$("logout").addEventListener("click", () =>
  attempt(async () => {
    await client.logout();
    showLoggedOut(LOGOUT_MESSAGES.user);
  }),
);
$("logout-all").addEventListener("click", () =>
  attempt(async () => {
    await client.logoutEverywhere();
    showLoggedOut(LOGOUT_MESSAGES.everywhere);
  }),
);

setInterval(renderCountdown, 1000);
renderCountdown();

attempt(async () => {
  try {
    if (await client.init()) {
      await showLoggedIn();
    } else {
      showLoggedOut("Please log in.");
    }
  } finally {
    if ($("status").dataset.state === "loading") showLoggedOut("Please log in.");
  }
});
