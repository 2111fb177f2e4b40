"""A relying party as a Python developer would write one with Authlib and Flask: discovery, authorization code
with PKCE, state and nonce, the ID token validated by the library, userinfo, refresh, RP-initiated logout. It is
a confidential client (client_secret_basic). Configuration from the environment: ISSUER, CLIENT_ID,
CLIENT_SECRET, PORT. Loopback only, for the tests in ../test.

Its pages show what the library returned (claims, userinfo, which step ran, the algorithm the ID token was signed
with) as JSON in #result, never a token.
"""

import base64
import html
import json
import os
import secrets
from urllib.parse import urlencode

import requests
from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, request, session

ISSUER = os.environ["ISSUER"]
PORT = int(os.environ["PORT"])
ORIGIN = f"http://127.0.0.1:{PORT}"

app = Flask(__name__)
app.secret_key = secrets.token_bytes(32)
app.config.update(SESSION_COOKIE_NAME="rp_python", SESSION_COOKIE_SAMESITE="Lax")
oauth = OAuth(app)
oauth.register(
    "tessera",
    client_id=os.environ["CLIENT_ID"],
    client_secret=os.environ["CLIENT_SECRET"],
    server_metadata_url=f"{ISSUER}/.well-known/openid-configuration",
    client_kwargs={"scope": "openid profile email", "code_challenge_method": "S256"},
)
# Access tokens handed to this app, per browser session id: kept server-side, never in the cookie.
tokens = {}


def page(state, result, status=200):
    body = json.dumps(result)
    return (
        f'<!doctype html><title>python app</title><pre id="result" data-state="{state}">{html.escape(body)}</pre>',
        status,
        {"cache-control": "no-store"},
    )


@app.errorhandler(Exception)
def refused(error):
    # The library's refusal, as the library words it: what a test of a refusal looks for.
    return page("error", {"step": "error", "error": type(error).__name__, "message": str(error)}, 502)


@app.route("/login")
def login():
    return oauth.tessera.authorize_redirect(f"{ORIGIN}/callback")


@app.route("/callback")
def callback():
    token = oauth.tessera.authorize_access_token()
    userinfo = oauth.tessera.userinfo(token=token)
    session["id"] = session.get("id") or secrets.token_urlsafe(16)
    tokens[session["id"]] = {"all": [token["access_token"]], "refresh": token["refresh_token"], "id": token["id_token"]}
    # Authlib has verified the ID token's signature against the JWKS by now; which algorithm did it verify?
    header = token["id_token"].split(".")[0]
    alg = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["alg"]
    result = {"step": "callback", "claims": dict(token["userinfo"]), "userinfo": dict(userinfo), "id_token_alg": alg}
    return page("signed-in", result)


@app.route("/refresh")
def refresh():
    mine = tokens[session["id"]]
    token = oauth.tessera.fetch_access_token(grant_type="refresh_token", refresh_token=mine["refresh"])
    mine["all"].append(token["access_token"])
    mine["refresh"] = token["refresh_token"]
    return page("refreshed", {"step": "refresh", "count": len(mine["all"])})


@app.route("/check")
def check():
    statuses = []
    for access in tokens.get(session.get("id"), {}).get("all", []):
        answer = requests.get(f"{ISSUER}/oauth2/userinfo", headers={"Authorization": f"Bearer {access}"}, timeout=5)
        statuses.append(answer.status_code)
    return page("checked", {"step": "check", "statuses": statuses})


@app.route("/logout")
def logout():
    metadata = oauth.tessera.load_server_metadata()
    query = urlencode(
        {"id_token_hint": tokens[session["id"]]["id"], "post_logout_redirect_uri": f"{ORIGIN}/bye", "state": "py-bye"}
    )
    return redirect(f"{metadata['end_session_endpoint']}?{query}")


@app.route("/bye")
def bye():
    return page("signed-out", {"step": "bye", "state": request.args.get("state")})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT)
