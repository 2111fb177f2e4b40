// A relying party as a Node developer would write one with openid-client (panva), the certified OpenID Connect
// client: discovery, authorization code with PKCE, state and nonce, the ID token validated by the library,
// userinfo, refresh, RP-initiated logout. It is a public client (no secret). Configuration from the environment:
// ISSUER, CLIENT_ID, PORT. Loopback only, for the tests in ../test.
//
// Its pages show what the library returned (claims, userinfo, which step ran) as JSON in #result, never a token.
import { randomBytes } from "node:crypto";
import http from "node:http";
import * as client from "openid-client";

const { ISSUER, CLIENT_ID, PORT } = process.env;
const ORIGIN = `http://127.0.0.1:${PORT}`;
const REDIRECT_URI = `${ORIGIN}/callback`;

// http is allowed for the loopback issuer of the tests only; the library refuses it otherwise.
const config = await client.discovery(new URL(ISSUER), CLIENT_ID, undefined, client.None(), {
  execute: [client.allowInsecureRequests],
});

/** Per-browser state, by the `rp_node` cookie. */
const sessions = new Map();

function session(request, response) {
  const id = /(?:^|;\s*)rp_node=([\w-]+)/.exec(request.headers.cookie ?? "")?.[1];
  if (id && sessions.has(id)) return sessions.get(id);
  const fresh = randomBytes(16).toString("base64url");
  sessions.set(fresh, {});
  response.setHeader("set-cookie", `rp_node=${fresh}; Path=/; HttpOnly; SameSite=Lax`);
  return sessions.get(fresh);
}

function page(response, status, state, result) {
  const body = `<!doctype html><title>node app</title><pre id="result" data-state="${state}">${
    JSON.stringify(result).replace(/</g, "\\u003c")}</pre>`;
  response.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(body);
}

const routes = {
  async "/login"(request, response, own) {
    own.verifier = client.randomPKCECodeVerifier();
    own.state = client.randomState();
    own.nonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT_URI,
      scope: "openid profile email",
      code_challenge: await client.calculatePKCECodeChallenge(own.verifier),
      code_challenge_method: "S256",
      state: own.state,
      nonce: own.nonce,
    });
    response.writeHead(302, { location: url.href }).end();
  },
  async "/callback"(request, response, own) {
    const tokens = await client.authorizationCodeGrant(config, new URL(request.url, ORIGIN), {
      pkceCodeVerifier: own.verifier,
      expectedState: own.state,
      expectedNonce: own.nonce,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    Object.assign(own, { tokens, claims, accessTokens: [tokens.access_token] });
    page(response, 200, "signed-in", { step: "callback", claims, userinfo, scope: tokens.scope });
  },
  async "/refresh"(request, response, own) {
    const tokens = await client.refreshTokenGrant(config, own.tokens.refresh_token);
    own.tokens = { ...own.tokens, ...tokens };
    own.accessTokens.push(tokens.access_token);
    page(response, 200, "refreshed", { step: "refresh", rotated: tokens.refresh_token !== undefined, count: own.accessTokens.length });
  },
  /** Whether each access token this browser was given still opens userinfo: the statuses, oldest first. */
  async "/check"(request, response, own) {
    const statuses = [];
    for (const token of own.accessTokens ?? []) {
      const answer = await fetch(`${ISSUER}/oauth2/userinfo`, { headers: { authorization: `Bearer ${token}` } });
      statuses.push(answer.status);
    }
    page(response, 200, "checked", { step: "check", statuses });
  },
  async "/logout"(request, response, own) {
    const url = client.buildEndSessionUrl(config, {
      id_token_hint: own.tokens.id_token,
      post_logout_redirect_uri: `${ORIGIN}/bye`,
      state: "node-bye",
    });
    response.writeHead(302, { location: url.href }).end();
  },
  async "/bye"(request, response) {
    page(response, 200, "signed-out", { step: "bye", state: new URL(request.url, ORIGIN).searchParams.get("state") });
  },
};

http.createServer(async (request, response) => {
  const route = routes[new URL(request.url, ORIGIN).pathname];
  if (!route) return response.writeHead(404).end();
  try {
    await route(request, response, session(request, response));
  } catch (error) {
    // The library's refusal, as the library words it: what a test of a refusal looks for.
    page(response, 502, "error", { step: "error", error: error.code ?? error.name, message: error.message });
  }
}).listen(Number(PORT), "127.0.0.1", () => console.log(`node app on ${ORIGIN}`));
