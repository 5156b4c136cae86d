#!/usr/bin/python3
"""A local emulator of Slack's Web API chat.postMessage, for tests.

Usage:
    /usr/bin/python3 test/emulators/slack.py --port-file FILE --token xoxb-...

From Slack's documentation (https://api.slack.com/methods/chat.postMessage,
https://api.slack.com/web, https://api.slack.com/docs/rate-limits):
  POST /api/chat.postMessage
      Authorization: Bearer <bot token>; application/json body
      {"channel", "text" and/or "blocks"}.
      Every answer but a rate limit is HTTP 200: {"ok": true, "channel",
      "ts", "message"} or {"ok": false, "error": "not_authed" |
      "invalid_auth" | "channel_not_found" | "not_in_channel" | "no_text" |
      "invalid_blocks" | "invalid_json" | ...}.
      More than 3 messages within one second to a channel ("about one a
      second, bursts allowed"): HTTP 429, Retry-After: 1, {"ok": false,
      "error": "ratelimited"}.
  Channels: C0001 "#alerts" (the bot is a member), C0002 "#random" (it is not).

Control:
  GET  /_state   {"messages": [...], "ratelimited": n, "calls": n}
  POST /_fail    {"error": "internal_error", "count": n}: the next n posts answer
                 {"ok": false, "error": ...}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from serve import serve

CHANNELS = {"C0001": "alerts", "C0002": "random"}
MEMBER_OF = {"C0001"}
lock = threading.Lock()
st = {"messages": [], "ratelimited": 0, "calls": 0, "fail": None, "fail_count": 0, "recent": {}}
TOKEN = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_state":
            with lock:
                return self.send(200, {k: st[k] for k in ("messages", "ratelimited", "calls")})
        self.send(404, {"ok": False, "error": "unknown_method"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.path == "/_fail":
            spec = json.loads(raw)
            with lock:
                st["fail"], st["fail_count"] = spec["error"], int(spec.get("count", 1))
            return self.send(200, {"ok": True})
        if self.path != "/api/chat.postMessage":
            return self.send(404, {"ok": False, "error": "unknown_method"})
        with lock:
            st["calls"] += 1
        auth = self.headers.get("Authorization")
        if not auth:
            return self.send(200, {"ok": False, "error": "not_authed"})
        if auth != "Bearer " + TOKEN:
            return self.send(200, {"ok": False, "error": "invalid_auth"})
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self.send(200, {"ok": False, "error": "invalid_arguments"})
        try:
            msg = json.loads(raw)
        except ValueError:
            return self.send(200, {"ok": False, "error": "invalid_json"})
        chan = msg.get("channel")
        cid = chan if chan in CHANNELS else next(
            (k for k, v in CHANNELS.items() if chan in (v, "#" + v)), None)
        if cid is None:
            return self.send(200, {"ok": False, "error": "channel_not_found"})
        if cid not in MEMBER_OF:
            return self.send(200, {"ok": False, "error": "not_in_channel"})
        if not msg.get("text") and not msg.get("blocks"):
            return self.send(200, {"ok": False, "error": "no_text"})
        if "blocks" in msg and not isinstance(msg["blocks"], list):
            return self.send(200, {"ok": False, "error": "invalid_blocks"})
        now = time.time()
        with lock:
            recent = [t for t in st["recent"].get(cid, []) if now - t < 1.0]
            if len(recent) >= 3:
                st["ratelimited"] += 1
                st["recent"][cid] = recent
                return self.send(429, {"ok": False, "error": "ratelimited"}, headers=[("Retry-After", "1")])
            st["recent"][cid] = recent + [now]
            if st["fail_count"] > 0:
                st["fail_count"] -= 1
                return self.send(200, {"ok": False, "error": st["fail"]})
            ts = "%.6f" % now
            st["messages"].append({"channel": cid, "text": msg.get("text"), "blocks": msg.get("blocks"),
                                   "ts": ts})
        self.send(200, {"ok": True, "channel": cid, "ts": ts, "message": {"text": msg.get("text")}})


def main():
    global TOKEN
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--token", required=True)
    args = ap.parse_args()
    TOKEN = args.token
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
