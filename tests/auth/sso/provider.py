"""A real OpenID Connect provider on loopback, for Tollgate's SSO tests: Authlib's
authorization server (the authorization code grant with its OpenID Connect extension and
PKCE, S256 required) in Flask, signing ID tokens (RS256, or ES256 after an ES256 rotation)
with keys it publishes at its JWKS URI, and discovery at /.well-known/openid-configuration.

The provider does not ask who is signing in: the test names the person the next
authorization is for (POST /control/person). The test can also make the next token
misbehave the way a broken or hostile provider would (POST /control/fault: audience,
expired, signature, nonce, unverified_email) and rotate the signing key (POST
/control/rotate). GET /control/stats counts the key-set fetches.

Usage: python provider.py CLIENT_ID CLIENT_SECRET REDIRECT_URI (or "any": any Tollgate's
callback, for a runtime whose public URL the test does not choose)
Prints "listening on http://127.0.0.1:PORT" once it serves; stops when stdin closes.
"""

import os
import sys
import threading
import time

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain HTTP on loopback only

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from werkzeug.serving import make_server

client_id, client_secret, redirect_uri = sys.argv[1:4]
app = Flask(__name__)
server = make_server("127.0.0.1", 0, app, threaded=True)
issuer = f"http://127.0.0.1:{server.server_port}"

state = {
    "keys": [RSAKey.generate_key(2048, parameters={"kid": "key-1"})],
    "person": {"sub": "p-1", "email": "ada@forge.example", "email_verified": True, "name": "Ada"},
    "fault": None,
    "jwks_fetches": 0,
    "codes": {},
}


class Client(ClientMixin):
    id_token_signed_response_alg = "RS256"

    def get_client_id(self):
        return client_id

    def get_default_redirect_uri(self):
        return None if redirect_uri == "any" else redirect_uri

    def get_allowed_scope(self, scope):
        return scope

    def check_redirect_uri(self, uri):
        if redirect_uri == "any":
            return uri.endswith("/api/v1/auth/sso/callback")
        return uri == redirect_uri

    def check_client_secret(self, secret):
        return secret == client_secret

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_post", "client_secret_basic")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


class Code(AuthorizationCodeMixin):
    def __init__(self, code, person, request):
        self.code = code
        self.person = person
        self.redirect_uri = request.payload.redirect_uri
        self.scope = request.scope
        self.nonce = request.payload.data.get("nonce")
        self.code_challenge = request.payload.data.get("code_challenge")
        self.code_challenge_method = request.payload.data.get("code_challenge_method")
        self.auth_time = int(time.time())

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post", "client_secret_basic"]

    def save_authorization_code(self, code, request):
        state["codes"][code] = Code(code, request.user, request)

    def query_authorization_code(self, code, client):
        return state["codes"].get(code)

    def delete_authorization_code(self, authorization_code):
        state["codes"].pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.person


def algorithm(key):
    return "ES256" if isinstance(key, ECKey) else "RS256"


class IdToken(OpenIDCode):
    def exists_nonce(self, nonce, request):
        return any(code.nonce == nonce for code in state["codes"].values())

    def resolve_client_private_key(self, client):
        return state["keys"][0]

    def get_client_algorithm(self, client):
        return algorithm(state["keys"][0])

    def get_encode_header(self, client):
        return {"alg": algorithm(state["keys"][0]), "kid": state["keys"][0].kid}

    def get_client_claims(self, client):
        return {"iss": issuer, "aud": [client_id], "exp": int(time.time()) + 3600}

    def generate_user_info(self, user, scope):
        return dict(user)


authorization = AuthorizationServer(
    app, query_client=lambda wanted: Client() if wanted == client_id else None,
    save_token=lambda token, request: None,
)
authorization.register_grant(CodeGrant, [IdToken(require_nonce=True), CodeChallenge(required=True)])


def misbehave(id_token):
    """The ID token as the fault the test asked for makes it, signed again."""
    fault, state["fault"] = state["fault"], None
    if fault is None:
        return id_token
    key = state["keys"][0]
    claims = jwt.decode(id_token, key, algorithms=[algorithm(key)]).claims
    header = {"alg": algorithm(key), "kid": key.kid}
    if fault == "audience":
        claims["aud"] = ["someone-else"]
    elif fault == "expired":
        claims["iat"] = int(time.time()) - 7200
        claims["exp"] = int(time.time()) - 3600
    elif fault == "nonce":
        claims["nonce"] = "not-the-nonce-of-this-sign-in"
    elif fault == "unverified_email":
        claims["email_verified"] = False
    elif fault == "signature":
        # The published key's id, another key's signature.
        key = RSAKey.generate_key(2048, parameters={"kid": key.kid})
        header["alg"] = "RS256"
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


@app.get("/.well-known/openid-configuration")
def discovery():
    return jsonify({
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
    })


@app.get("/jwks")
def jwks():
    state["jwks_fetches"] += 1
    return jsonify({"keys": [key.as_dict(private=False) for key in state["keys"]]})


@app.get("/authorize")
def authorize():
    return authorization.create_authorization_response(grant_user=dict(state["person"]))


@app.post("/token")
def token():
    response = authorization.create_token_response()
    body = response.get_json()
    if response.status_code == 200 and "id_token" in body:
        body["id_token"] = misbehave(body["id_token"])
        return jsonify(body)
    return response


@app.post("/control/person")
def person():
    state["person"] = request.get_json()
    return jsonify(state["person"])


@app.post("/control/fault")
def fault():
    state["fault"] = request.get_json()["fault"]
    return jsonify({"fault": state["fault"]})


@app.post("/control/rotate")
def rotate():
    """A new signing key, RS256 or (with {"alg": "ES256"}) a P-256 key; the old stay published."""
    kid = f"key-{len(state['keys']) + 1}"
    if (request.get_json(silent=True) or {}).get("alg") == "ES256":
        key = ECKey.generate_key("P-256", parameters={"kid": kid})
    else:
        key = RSAKey.generate_key(2048, parameters={"kid": kid})
    state["keys"].insert(0, key)
    return jsonify({"kid": kid})


@app.get("/control/stats")
def stats():
    return jsonify({"jwks_fetches": state["jwks_fetches"]})


threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"listening on {issuer}", flush=True)
sys.stdin.read()
server.shutdown()
