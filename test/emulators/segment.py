#!/usr/bin/python3
"""A local emulator of Segment's HTTP Tracking API (api.segment.io/v1), for tests.

Usage:
    /usr/bin/python3 test/emulators/segment.py --port-file FILE --write-key KEY

From Segment's documentation (segmentio/segment-docs: src/connections/sources/
catalog/libraries/server/http-api/index.md, "HTTP API Source"; the spec field
includes in src/_includes/content/spec-field-*.md; guides/duplicate-data.md):
  Auth: HTTP Basic with the write key as user name and an empty password
      ("Authorization: Basic base64(KEY:)"; the key encoded without the colon
      "might work due to backward compatibility", and is taken here), or the
      key as "writeKey" in the JSON body, with no Authorization header.
  Content-Type "must be set to application/json".
  POST /v1/batch {"batch": [call, ...], "context"?, "integrations"?, "writeKey"?}:
      each call "must have a type property with a valid method name" (identify,
      track, group, page, screen, alias); the batch-level context and
      integrations "will be merged with" each call's own.  At most 500 KB a
      request and 32 KB a call; "each batch request can only have up to 2500
      events ... Segment returns a 200 response but rejects the event when the
      number of batched events exceeds the limit" (here: every event of it).
  POST /v1/identify | track | group | page | screen | alias: one call as the
      body, at most 32 KB ("a maximum of 32KB per normal API request").
  Answers: "Segment returns a 200 response for all API requests except errors
      caused by large payloads and JSON errors (which return 400 responses)";
      Segment does not say which events it kept.  Silently dropped (200 all the
      same): a call without userId and anonymousId ("no_user_anon_id"; the spec:
      "A userId or an anonymousId is required"), a track without an "event"
      name string, a group without groupId and an alias without previousId
      (both "required" in the spec tables), a call without a valid type.
  Dedup: "Segment deduplicates on the event's messageId, not on the contents",
      over a look-back of at least 24 hours, not scoped to a source; the HTTP
      API gives a call sent without messageId a unique one, so it is never
      deduplicated.  messageId "is limited to 100 characters".
  Rate: "Segment recommends you to not exceed 1,000 requests per second";
      beyond, "Requests that exceed acceptable limits may be rejected with HTTP
      Status Code 429", with "Retry-After and X-RateLimit-Reset headers, which
      contains the number of seconds after which you can retry".
From Segment's maintainers and observed answers (third-party, not the docs):
  - A wrong write key is answered 200 {"success": true} and its events are
    dropped: "The edge is stateless and always returns 200"
    (segmentio/analytics-node#59, analytics-ruby#136).  An empty key is
    answered 400 {"success": false, "message": "An invalid write key was
    provided"} (observed with curl, segmentio/analytics-go#205); the 200
    body {"success": true} is from the same report.
  - The 400 for size carries the message "Exceed payload limit"
    (segment-docs PR #7422, on Analytics.js).
  - Body writeKey wins over the Authorization header (rudder-server#80).
  - /v1/import is an alias of /v1/batch (segmentio/analytics-php#96).
  - 500 KB and 32 KB as 500,000 and 32,000 bytes: Segment's Go library
    (analytics-go: maxBatchBytes = 500000, maxMessageBytes = 32000), the
    strictest of its libraries (Python: 32 << 10 and 475,000).

Where the documentation is silent, chosen as plausible:
  - Every 4xx/5xx body is {"success": false, "message"}: "Exceed payload
    limit", "Invalid JSON", "An invalid write key was provided" (no key at all,
    or an empty one), "Content-Type must be application/json" (400),
    "batch must be an array" (400), "Too Many Requests" (429),
    "Internal Server Error" (500, only by failure injection).
  - Order: route (404, no body); body size (400); rate (429); content type,
    JSON, key, shape, size of each call (400); failure injection (500); the
    events.  One call over 32 KB in a batch refuses the whole request (400).
  - A call's size is its compact JSON (UTF-8) as received; the request's is
    its body, after gunzip when Content-Encoding is gzip.
  - userId, anonymousId, groupId, previousId: a string, or a number taken as
    its decimal string; anything else counts as absent.  A messageId that is
    not a string, or longer than 100 characters, drops the call.
  - Only kept calls register their messageId; duplicates are counted, not
    kept.  The look-back never ends here (see "forget_message_ids").
  - Merging: a call's own context/integrations keys win over the batch's;
    identify traits are merged shallowly into the profile (null kept as null).
  - The rate window is 1 s, sliding; every request counts in it (a 400 too)
    but a 429; Retry-After and X-RateLimit-Reset both carry the whole seconds
    (at least 1) until a place frees.  An OAuth Bearer token is not emulated (only the writeKey counts).
  - Other methods or paths: 404 without body.

Control (no auth):
  GET  /_state   {"users": {userId: {"traits", "tracks": [{"event",
                  "properties", "timestamp", "messageId"}], "groups": {groupId:
                  traits}, "pages", "screens"}}, "anonymous": {anonymousId:
                  same}, "groups": {groupId: {"traits", "members"}}, "aliases",
                  "events" (every kept call, as stored), "dropped": [{"reason",
                  "event"}], "accepted", "duplicates", "duplicate_ids",
                  "no_message_id", "requests" (API calls), "limited" (429s),
                  "max_items", "max_bytes", "max_event_bytes", "codes":
                  {status: n}, "auth": {"basic", "body"}, "wrong_key" (requests
                  with a wrong key), "key_leaks" (requests whose calls or URL
                  carry the write key: give a distinctive key), "rate", "window"}
  POST /_control {"fail_once": [ids]: the next request holding a call with one
                  of these userId/anonymousId/groupId/messageId values is
                  answered 500 and nothing of it is kept (once per id);
                  "keep_and_fail_once": [ids]: the same, but the request's calls
                  are kept before the 500 (a lost answer: a retry must be
                  deduplicated); "drop_once": [ids]: such a call is dropped
                  silently once (200); "reject": [ids]: always dropped silently;
                  "delay_ms": n; "rate": n requests per "window" seconds
                  (default 1000 per 1); "forget_message_ids": true (the
                  look-back passed); "reset": true (forget all data and
                  counters)}, any of them: {"ok": true}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import base64
import binascii
import datetime
import gzip
import json
import math
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from serve import serve

TYPES = ("identify", "track", "group", "page", "screen", "alias")
SINGLE = {"/v1/" + t: t for t in TYPES}
BATCH = {"/v1/batch", "/v1/import"}
MAX_REQUEST, MAX_EVENT, MAX_EVENTS, MAX_MESSAGE_ID = 500000, 32000, 2500, 100
HARD_CAP = 8 * 1024 * 1024  # a body beyond this is drained unread
CONF = {}
lock = threading.Lock()


def fresh():
    return {"users": {}, "anonymous": {}, "groups": {}, "aliases": [], "events": [], "dropped": [],
            "accepted": 0, "message_ids": set(), "duplicates": 0, "duplicate_ids": [], "no_message_id": 0,
            "requests": 0, "limited": 0, "max_items": 0, "max_bytes": 0, "max_event_bytes": 0, "codes": {},
            "auth": {"basic": 0, "body": 0}, "wrong_key": 0, "key_leaks": 0, "times": deque(),
            "rate": 1000, "window": 1.0, "fail_once": set(), "keep_and_fail_once": set(),
            "drop_once": set(), "reject": set(), "delay_ms": 0}


st = fresh()


class Refused(Exception):
    """A request-level error: (status, message)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ident(v):
    """An identifier as a string, or None when absent or unusable."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return str(int(v)) if float(v).is_integer() else str(v)
    if isinstance(v, str) and v != "":
        return v
    return None


def ids_of(ev):
    return {i for i in (ident(ev.get(k)) for k in ("userId", "anonymousId", "groupId", "messageId")) if i}


def size_of(ev):
    return len(json.dumps(ev, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def invalid(ev, key_ok):
    """Why Segment would drop this call silently, or None."""
    if not key_ok:
        return "invalid_write_key"
    if ev.get("type") not in TYPES:
        return "invalid_type"
    mid = ev.get("messageId")
    if mid is not None and not isinstance(mid, str):
        return "invalid_message_id"
    if isinstance(mid, str) and len(mid) > MAX_MESSAGE_ID:
        return "message_id_too_long"
    if not ident(ev.get("userId")) and not ident(ev.get("anonymousId")):
        return "no_user_anon_id"
    if ev["type"] == "track" and not (isinstance(ev.get("event"), str) and ev["event"]):
        return "missing_event_name"
    if ev["type"] == "group" and not ident(ev.get("groupId")):
        return "no_group_id"
    if ev["type"] == "alias" and not ident(ev.get("previousId")):
        return "no_previous_id"
    return None


def profile(ev):
    uid, aid = ident(ev.get("userId")), ident(ev.get("anonymousId"))
    where, key = (st["users"], uid) if uid else (st["anonymous"], aid)
    return where.setdefault(key, {"traits": {}, "tracks": [], "groups": {}, "pages": [], "screens": []})


def apply(ev):
    """Fold a kept call into the profiles, under the lock."""
    p = profile(ev)
    kind = ev["type"]
    traits = ev.get("traits") if isinstance(ev.get("traits"), dict) else {}
    if kind == "identify":
        p["traits"].update(traits)
    elif kind == "track":
        p["tracks"].append({"event": ev["event"], "properties": ev.get("properties", {}),
                            "timestamp": ev["timestamp"], "messageId": ev["messageId"]})
    elif kind == "group":
        gid = ident(ev["groupId"])
        p["groups"].setdefault(gid, {}).update(traits)
        g = st["groups"].setdefault(gid, {"traits": {}, "members": []})
        g["traits"].update(traits)
        member = ident(ev.get("userId")) or ident(ev.get("anonymousId"))
        if member not in g["members"]:
            g["members"].append(member)
    elif kind in ("page", "screen"):
        p[kind + "s"].append(ev.get("name"))
    elif kind == "alias":
        st["aliases"].append({"previousId": ident(ev["previousId"]), "userId": ident(ev.get("userId"))})


def ingest(ev, key_ok, received):
    """One call of an admitted request, under the lock: kept, dropped or deduplicated."""
    if not isinstance(ev, dict):
        st["dropped"].append({"reason": "not_an_object", "event": ev})
        return
    reason = invalid(ev, key_ok)
    ids = ids_of(ev)
    if reason is None and ids & st["reject"]:
        reason = "rejected"
    if reason is None and ids & st["drop_once"]:
        st["drop_once"] -= ids
        reason = "dropped_once"
    if reason:
        st["dropped"].append({"reason": reason, "event": ev})
        return
    mid = ev.get("messageId")
    if not mid:
        st["no_message_id"] += 1
        ev["messageId"] = mid = "api-" + str(uuid.uuid4())
    elif mid in st["message_ids"]:
        st["duplicates"] += 1
        st["duplicate_ids"].append(mid)
        return
    st["message_ids"].add(mid)
    ev["receivedAt"] = received
    ev.setdefault("timestamp", received)
    st["events"].append(ev)
    st["accepted"] += 1
    apply(ev)


def merged(ev, body):
    """A batch call with the batch-level context and integrations merged in (the call's own win)."""
    if not isinstance(ev, dict):
        return ev
    ev = dict(ev)
    ev.pop("writeKey", None)
    for k in ("context", "integrations"):
        outer = body.get(k)
        if isinstance(outer, dict):
            inner = ev.get(k) if isinstance(ev.get(k), dict) else {}
            ev[k] = dict(outer, **inner)
    return ev


def count(status):
    st["codes"][str(status)] = st["codes"].get(str(status), 0) + 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def fail(self, status, message, headers=None):
        with lock:
            count(status)
        self.send(status, {"success": False, "message": message}, headers)

    def read_body(self):
        """The raw body, or None when it is past HARD_CAP (drained); and the length announced."""
        n = int(self.headers.get("Content-Length") or 0)
        if n > HARD_CAP:
            left = n
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                left = left - len(chunk) if chunk else 0
            return None, n
        return (self.rfile.read(n) if n else b""), n

    def do_GET(self):
        if urlsplit(self.path).path == "/_state":
            return self.state()
        self.read_body()
        self.send(404)

    def do_POST(self):
        path = urlsplit(self.path).path
        if path == "/_control":
            return self.control(self.read_body()[0] or b"")
        if path in BATCH or path in SINGLE:
            return self.api(path)
        self.read_body()
        self.send(404)

    def do_PUT(self):
        self.read_body()
        self.send(404)

    do_DELETE = do_PATCH = do_PUT

    # -- the Tracking API

    def admit(self):
        """Count the request against the rate; the seconds to wait when over it, else None."""
        now = time.time()
        with lock:
            st["requests"] += 1
            times, window = st["times"], st["window"]
            while times and now - times[0] >= window:
                times.popleft()
            if len(times) >= st["rate"]:
                st["limited"] += 1
                return max(1, math.ceil(times[0] + window - now))
            times.append(now)
        return None

    def api(self, path):
        raw, announced = self.read_body()
        limit = MAX_REQUEST if path in BATCH else MAX_EVENT
        try:
            if raw is not None and (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                try:
                    raw = gzip.decompress(raw)
                except (OSError, EOFError):
                    raw = b"\xff"  # not JSON: answered as such below
            size = announced if raw is None else len(raw)
            with lock:
                st["max_bytes"] = max(st["max_bytes"], size)
            wait = self.admit()
            if size > limit:
                raise Refused(400, "Exceed payload limit")
            if wait is not None:
                return self.fail(429, "Too Many Requests", {"Retry-After": str(wait), "X-RateLimit-Reset": str(wait)})
            if st["delay_ms"]:
                time.sleep(st["delay_ms"] / 1000.0)
            self.track_api(path, raw)
        except Refused as e:
            self.fail(e.status, e.message)

    def write_key(self, body):
        """(key, how) from the body's writeKey, else Basic auth; (None, None) when there is none."""
        k = body.get("writeKey")
        if isinstance(k, str) and k:
            return k, "body"
        auth = self.headers.get("Authorization") or ""
        if auth[:6].lower() != "basic ":
            return None, None
        try:
            user = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").split(":", 1)[0]
        except (binascii.Error, ValueError):
            return None, None
        return (user, "basic") if user else (None, None)

    def track_api(self, path, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refused(400, "Content-Type must be application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refused(400, "Invalid JSON")
        if not isinstance(body, dict):
            raise Refused(400, "Invalid JSON")
        key, how = self.write_key(body)
        if key is None:
            raise Refused(400, "An invalid write key was provided")
        if path in BATCH:
            items = body.get("batch")
            if not isinstance(items, list):
                raise Refused(400, "batch must be an array")
            calls = [merged(ev, body) for ev in items]
        else:
            items = [body]
            ev = dict(body)
            ev.pop("writeKey", None)
            ev["type"] = SINGLE[path]
            calls = [ev]
        sizes = [size_of(ev) for ev in items]
        with lock:
            st["max_items"] = max(st["max_items"], len(items))
            st["max_event_bytes"] = max([st["max_event_bytes"]] + sizes)
            st["auth"][how] += 1
            if key != CONF["write_key"]:
                st["wrong_key"] += 1
            if CONF["write_key"] in json.dumps(calls) or CONF["write_key"] in self.path:
                st["key_leaks"] += 1
        if any(s > MAX_EVENT for s in sizes):
            raise Refused(400, "Exceed payload limit")
        ids = set().union(*[ids_of(ev) for ev in calls if isinstance(ev, dict)])
        received = now_iso()
        with lock:
            hit = ids & st["fail_once"]
            if hit:
                st["fail_once"] -= hit
            kept = ids & st["keep_and_fail_once"]
            if not hit:
                if len(calls) > MAX_EVENTS:
                    st["dropped"].extend({"reason": "over_2500_events", "event": ev} for ev in calls)
                else:
                    for ev in calls:
                        ingest(ev, key == CONF["write_key"], received)
                if kept:
                    st["keep_and_fail_once"] -= kept
        if hit or kept:
            raise Refused(500, "Internal Server Error")
        with lock:
            count(200)
        self.send(200, {"success": True})

    # -- control

    def state(self):
        with lock:
            body = {k: v for k, v in st.items()
                    if k not in ("message_ids", "times", "fail_once", "keep_and_fail_once", "drop_once", "reject")}
            body = json.loads(json.dumps(body))  # a snapshot
        self.send(200, body)

    def control(self, raw):
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                if body.get("reset"):
                    keep = {k: st[k] for k in ("rate", "window", "delay_ms")}
                    st.clear()
                    st.update(fresh(), **keep)
                for k in ("fail_once", "keep_and_fail_once", "drop_once", "reject"):
                    if k in body:
                        st[k] = {str(v) for v in body[k]}
                if "delay_ms" in body:
                    st["delay_ms"] = max(0, int(body["delay_ms"]))
                if "rate" in body:
                    st["rate"] = max(1, int(body["rate"]))
                if "window" in body:
                    st["window"] = max(0.001, float(body["window"]))
                if body.get("forget_message_ids"):
                    st["message_ids"] = set()
        except (ValueError, TypeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--write-key", required=True)
    args = ap.parse_args()
    CONF["write_key"] = args.write_key
    # A burst near Segment's 1,000 requests a second overflows socketserver's
    # listen backlog of 5 (connections reset or delayed by SYN retries).
    ThreadingHTTPServer.request_queue_size = 1024
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
