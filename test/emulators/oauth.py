#!/usr/bin/python3
"""A local OAuth 2.0 authorization server and the API it protects, for tests.

Usage:
    /usr/bin/python3 test/emulators/oauth.py --port-file FILE --client-id ID
        --client-secret SECRET [--refresh-token RT] [--port 0]

As RFC 6749 has it:
  POST /oauth/token   application/x-www-form-urlencoded (3.2); the client
                      authenticates with HTTP Basic or client_id and
                      client_secret in the form (2.3.1);
                      grant_type=client_credentials (4.4) or
                      grant_type=refresh_token (6), which rotates the refresh
                      token: the old one is invalid from then on.
                      200 {"access_token", "token_type": "Bearer",
                      "expires_in", ["refresh_token"], "instance_url"} (5.1),
                      or 400/401 {"error": "invalid_client" | "invalid_grant" |
                      "unsupported_grant_type" | "invalid_request"} (5.2).
As RFC 6750 has it:
  POST /api/things    Authorization: Bearer <a token issued, not expired, not
                      revoked>, else 401 with WWW-Authenticate:
                      Bearer error="invalid_token".

Control:
  POST /_config  {"expires_in": n, "down": n}   tokens' lifetime; the next n
                                                token requests answer 503
  POST /_expire                                 revoke every access token
  GET  /_state   {"issued", "unauthorized", "refresh_token", "grants", "things"}

Tokens are "AT-<hex>" and refresh tokens "RT-<hex>".  Stdlib only, bound to
127.0.0.1 only.
"""

import argparse
import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote_plus

from serve import serve

lock = threading.Lock()
st = {"issued": 0, "unauthorized": 0, "grants": [], "things": [], "tokens": {},
      "expires_in": 3600, "down": 0, "refresh_token": None}
CLIENT = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/_state":
            with lock:
                return self.send(200, {k: st[k] for k in
                                       ("issued", "unauthorized", "refresh_token", "grants", "things")})
        self.send(404, {"error": "not found"})

    def do_POST(self):
        raw = self.body()
        if self.path == "/_config":
            with lock:
                st.update(json.loads(raw))
            return self.send(200, {"ok": True})
        if self.path == "/_expire":
            with lock:
                st["tokens"].clear()
            return self.send(200, {"ok": True})
        if self.path == "/oauth/token":
            return self.token(raw)
        if self.path == "/api/things":
            return self.things(raw)
        self.send(404, {"error": "not found"})

    def token(self, raw):
        with lock:
            if st["down"] > 0:
                st["down"] -= 1
                return self.send(503, {"error": "temporarily_unavailable"})
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            return self.send(400, {"error": "invalid_request",
                                   "error_description": "form-encoded body expected"})
        form = {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        auth = self.headers.get("Authorization")
        if auth and auth.startswith("Basic "):
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            cid, csecret, how = unquote_plus(user), unquote_plus(pw), "basic"
        else:
            cid, csecret, how = form.get("client_id"), form.get("client_secret"), "post"
        if cid != CLIENT["id"] or csecret != CLIENT["secret"]:
            return self.send(401, {"error": "invalid_client"},
                             headers=[("WWW-Authenticate", 'Basic realm="token"')])
        grant = form.get("grant_type")
        answer = {"token_type": "Bearer", "instance_url": "https://instance.example"}
        with lock:
            if grant == "client_credentials":
                pass
            elif grant == "refresh_token":
                if not st["refresh_token"] or form.get("refresh_token") != st["refresh_token"]:
                    return self.send(400, {"error": "invalid_grant"})
                st["refresh_token"] = "RT-" + secrets.token_hex(8)
                answer["refresh_token"] = st["refresh_token"]
            else:
                return self.send(400, {"error": "unsupported_grant_type"})
            tok = "AT-" + secrets.token_hex(8)
            st["tokens"][tok] = time.time() + st["expires_in"]
            st["issued"] += 1
            st["grants"].append({"grant_type": grant, "client_auth": how,
                                 "scope": form.get("scope")})
            answer["access_token"] = tok
            answer["expires_in"] = st["expires_in"]
        self.send(200, answer)

    def things(self, raw):
        auth = self.headers.get("Authorization") or ""
        tok = auth[7:] if auth.startswith("Bearer ") else None
        with lock:
            ok = tok in st["tokens"] and st["tokens"][tok] > time.time()
            if not ok:
                st["unauthorized"] += 1
        if not ok:
            return self.send(401, {"error": "invalid_token"},
                             headers=[("WWW-Authenticate", 'Bearer error="invalid_token"')])
        with lock:
            st["things"].append(json.loads(raw))
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--refresh-token")
    args = ap.parse_args()
    CLIENT["id"], CLIENT["secret"] = args.client_id, args.client_secret
    st["refresh_token"] = args.refresh_token
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
