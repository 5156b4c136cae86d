#!/usr/bin/python3
"""Local webhook receiver for retl tests, demos and benchmarks.

Usage:
    /usr/bin/python3 test/receiver.py --port 0 --port-file FILE [--log FILE] [--quiet]
        [--tls-cert CERT --tls-key KEY --tls-port-file FILE]

With --tls-cert, a second port answers the same deliveries over TLS (the
control API stays on the first, plain HTTP port).

Every request whose path does not start with "/_" is a *delivery*: it is
recorded (in memory and optionally as one JSON line in --log) and answered
according to the current failure-injection rules (200 {"ok":true} when none
apply).  Paths starting with "/_" form the control API:

    POST /_control   {"rules": [rule, ...]} or a single rule object; replaces rules
    GET  /_requests  all recorded deliveries (?ok=1: only 2xx ones)
    GET  /_stats     {"count": n, "ok": n_2xx, "records": total len(body["records"]) over 2xx,
                      "max_concurrent": most deliveries handled at once}
    POST /_clear     forget recorded deliveries and rules

A rule is {"status": 503, "count": 3, "retry_after": "2", "delay_ms": 0,
"body": "...", "location": "...", "reset": false}; "count" is how many deliveries it applies to
(-1 = forever, default 1).  "reset" drops the connection with an RST instead
of answering; such deliveries are recorded with status 0.  "path" limits a
rule to one path and "match" to bodies containing a text; "delay_ms_max"
makes the delay random between delay_ms and it.  "location" adds that
Location header (for redirects); a "body" given as {"repeat": "x", "times": n}
is that text n times (oversized responses).  "echo" answers with the
request's Authorization header as a careless server would echo it: "raw",
"json" (JSON-escaped, non-ASCII as \\uXXXX), "json_slash" (also \\/), "url"
(form-encoded), "base64", or "basic_decoded" (a Basic credential decoded);
"pad" puts that many "x" before it.

Stdlib only, and bound to 127.0.0.1 only.
"""

import argparse
import base64
import json
import os
import random
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote_plus, urlsplit


QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class State:
    """Recorded deliveries, counters and failure rules, shared by all threads."""

    def __init__(self, log_path):
        self.lock = threading.Lock()
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.seq = 0
        self.rules = []  # list of dicts; "count" is decremented in place
        self.reset()

    def reset(self):
        self.deliveries = []
        self.n_ok = 0
        self.n_records = 0
        self.active = 0          # deliveries being handled right now
        self.max_active = 0      # the most at once since the last clear

    def enter(self):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def leave(self):
        with self.lock:
            self.active -= 1

    def clear(self):
        with self.lock:
            self.reset()
            self.rules = []

    def set_rules(self, rules):
        with self.lock:
            self.rules = rules

    def next_delivery(self, path, raw):
        """Assign a sequence number and consume one application of the first
        rule that applies ("path": only that path; "match": only bodies that
        contain that text).

        Done at arrival time (not response time), so the rules are applied in
        the order deliveries arrive even when some of them are delayed.
        """
        with self.lock:
            self.seq += 1
            self.rules = [r for r in self.rules if r["count"] != 0]
            for rule in self.rules:
                if "path" in rule and rule["path"] != path:
                    continue
                if "match" in rule and rule["match"].encode() not in raw:
                    continue
                if rule["count"] > 0:
                    rule["count"] -= 1
                return self.seq, rule
            return self.seq, None

    def record(self, entry):
        ok = 200 <= entry["status"] < 300
        line = json.dumps(entry, ensure_ascii=False) + "\n" if self.log else None
        with self.lock:
            self.deliveries.append(entry)
            if ok:
                self.n_ok += 1
                body = entry["body"]
                if isinstance(body, dict) and isinstance(body.get("records"), list):
                    self.n_records += len(body["records"])
            if line is not None:
                self.log.write(line)
                self.log.flush()

    def snapshot(self, only_ok):
        with self.lock:
            items = list(self.deliveries)
        if only_ok:
            items = [d for d in items if 200 <= d["status"] < 300]
        # Delayed deliveries are appended when answered; report arrival order.
        items.sort(key=lambda d: d["seq"])
        return items

    def stats(self):
        with self.lock:
            return {"count": len(self.deliveries), "ok": self.n_ok,
                    "records": self.n_records, "max_concurrent": self.max_active}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response has Content-Length
    # Buffer writes so headers and body leave in one segment, and disable
    # Nagle: otherwise write-write-read can stall ~40 ms on delayed ACKs.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server_version = "retl-test-receiver"

    state = None  # set in main()
    quiet = False

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("receiver: %s %s\n" % (self.address_string(), fmt % args))

    # -- helpers ---------------------------------------------------------

    def read_body(self):
        if QUICKACK is not None:
            # Clients without TCP_NODELAY (HTTP::Tiny) send headers and body
            # as separate segments; Nagle holds the body until the headers
            # are ACKed, and our delayed ACK would cost ~40 ms per request.
            try:
                self.connection.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
            except OSError:
                pass
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Skip trailers up to the terminating empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body, headers=()):
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            ctype = "application/json"
        else:
            data = str(body).encode()
            ctype = "text/plain; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def reset_connection(self):
        """Drop the connection with an RST and no response at all."""
        self.close_connection = True
        sock = self.connection
        try:
            # Linger 0 turns close() into an RST instead of an orderly FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # rfile/wfile keep the socket open past sock.close(), so detach the
        # fd and close it directly; the socket object is left harmlessly closed.
        os.close(sock.detach())

    # -- dispatch --------------------------------------------------------

    def handle_any(self):
        try:
            if self.path.startswith("/_"):
                self.handle_control()
            else:
                self.handle_delivery()
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any

    def handle_delivery(self):
        self.state.enter()
        self.left = False
        try:
            self.deliver()
        finally:
            self.leave()

    def leave(self):
        # before the answer goes out: a client that got it may send its next
        # delivery at once, which must not count as concurrent with this one
        if not self.left:
            self.left = True
            self.state.leave()

    def deliver(self):
        t = time.time()
        raw = self.read_body()
        seq, rule = self.state.next_delivery(self.path, raw)
        rule = rule or {}

        try:
            body = json.loads(raw) if raw else ""
        except ValueError:
            body = raw.decode("utf-8", errors="replace")

        if rule.get("delay_ms_max"):
            time.sleep(random.uniform(rule["delay_ms"], rule["delay_ms_max"]) / 1000.0)
        elif rule.get("delay_ms"):
            time.sleep(rule["delay_ms"] / 1000.0)

        reset = rule.get("reset", False)
        status = 0 if reset else rule.get("status", 200)
        # Recorded before answering, so a client that got its response can
        # rely on the delivery already being visible in /_requests.
        self.state.record({
            "seq": seq,
            "t": t,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "status": status,
            # signed requests: the exact bytes, to check the signature
            **({"raw": raw.decode("utf-8", errors="replace")}
               if "webhook-signature" in self.headers else {}),
        })

        self.leave()
        if reset:
            self.reset_connection()
            return
        headers = []
        if rule.get("retry_after") is not None:
            headers.append(("Retry-After", rule["retry_after"]))
        if rule.get("location") is not None:
            headers.append(("Location", rule["location"]))
        if rule.get("echo"):
            resp = "x" * int(rule.get("pad", 0)) + echo(rule["echo"], self.headers)
        elif isinstance(rule.get("body"), dict) and "repeat" in rule["body"]:
            resp = str(rule["body"]["repeat"]) * int(rule["body"].get("times", 1))
        elif "body" in rule:
            resp = rule["body"]
        elif 200 <= status < 300:
            resp = {"ok": True}
        else:
            resp = {"ok": False, "status": status}
        self.send(status, resp, headers)

    def handle_control(self):
        url = urlsplit(self.path)
        route = (self.command, url.path)
        raw = self.read_body()

        if route == ("POST", "/_control"):
            try:
                spec = json.loads(raw) if raw else {"rules": []}
            except ValueError as e:
                return self.send(400, {"ok": False, "error": "bad json: %s" % e})
            if isinstance(spec, dict) and "rules" in spec:
                rules = spec["rules"]
            elif isinstance(spec, dict):
                rules = [spec]
            else:
                rules = spec
            try:
                rules = [normalize_rule(r) for r in rules]
            except (TypeError, ValueError, AttributeError) as e:
                return self.send(400, {"ok": False, "error": "bad rule: %s" % e})
            self.state.set_rules(rules)
            return self.send(200, {"ok": True})

        if route == ("GET", "/_requests"):
            only_ok = parse_qs(url.query).get("ok", ["0"])[0] not in ("", "0")
            return self.send(200, self.state.snapshot(only_ok))

        if route == ("GET", "/_stats"):
            return self.send(200, self.state.stats())

        if route == ("POST", "/_clear"):
            self.state.clear()
            return self.send(200, {"ok": True})

        self.send(404, {"ok": False, "error": "unknown control endpoint"})


def echo(how, headers):
    """The request's Authorization header as a careless server echoes it."""
    # http.server reads header bytes as latin-1; a server reads them as UTF-8
    value = headers.get("Authorization", "").encode("latin-1").decode("utf-8", "replace")
    if how == "raw":
        return value
    if how == "json":          # Python's json: \uXXXX for non-ASCII
        return json.dumps({"headers": {"authorization": value}})
    if how == "json_slash":    # PHP's json_encode: \/ too
        return json.dumps({"headers": {"authorization": value}}).replace("/", "\\/")
    if how == "url":
        return "auth=" + quote_plus(value)
    if how == "base64":
        return base64.b64encode(value.encode("utf-8")).decode("ascii")
    if how == "basic_decoded":  # "Basic <base64>", decoded
        try:
            return base64.b64decode(value.split(" ", 1)[-1], validate=True).decode("utf-8", "replace")
        except ValueError:
            return value
    raise ValueError("unknown echo %r" % how)


def normalize_rule(rule):
    """Validate a rule and coerce its fields, so bad rules fail at /_control."""
    rule = dict(rule)  # a private copy: "count" is decremented in place
    rule["count"] = int(rule.get("count", 1))
    if "status" in rule:
        rule["status"] = int(rule["status"])
        if not 100 <= rule["status"] <= 599:
            raise ValueError("status out of range")
    rule["delay_ms"] = float(rule.get("delay_ms") or 0)
    rule["delay_ms_max"] = float(rule.get("delay_ms_max") or 0)
    for field in ("path", "match"):
        if field in rule:
            rule[field] = str(rule[field])
    rule["reset"] = bool(rule.get("reset"))
    if rule.get("retry_after") is not None:
        rule["retry_after"] = str(rule["retry_after"])
    if rule.get("location") is not None:
        rule["location"] = str(rule["location"])
    return rule


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    quiet = False

    def handle_error(self, request, client_address):
        # Clients (including retl under test) hang up mid-request on purpose.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, BrokenPipeError, TimeoutError)):
            return
        if not self.quiet:
            super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", required=True, help="written atomically once listening")
    ap.add_argument("--log", help="append each delivery as a JSON line")
    ap.add_argument("--quiet", action="store_true", help="no per-request stderr logging")
    ap.add_argument("--tls-cert", help="also serve deliveries over TLS with this certificate")
    ap.add_argument("--tls-key", help="the certificate's private key")
    ap.add_argument("--tls-port-file", help="the TLS port, written once listening")
    args = ap.parse_args()

    Handler.state = State(args.log)
    Handler.quiet = args.quiet
    Server.quiet = args.quiet
    server = Server(("127.0.0.1", args.port), Handler)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    # serve_forever() runs in a thread because shutdown() must be called from
    # another thread than the one serving; the main thread waits for a signal.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              daemon=True)
    thread.start()
    tls_server = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        tls_server = Server(("127.0.0.1", 0), Handler)
        tls_server.socket = ctx.wrap_socket(tls_server.socket, server_side=True)
        threading.Thread(target=tls_server.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
        write_port_file(args.tls_port_file, tls_server.server_address[1])
    write_port_file(args.port_file, server.server_address[1])
    if not args.quiet:
        sys.stderr.write("receiver: listening on 127.0.0.1:%d\n" % server.server_address[1])

    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    if tls_server:
        tls_server.shutdown()
        tls_server.server_close()
    if Handler.state.log:
        Handler.state.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
