#!/usr/bin/python3
"""A local emulator of Marketo's REST API (identity, leads, static lists), for tests.

Usage:
    /usr/bin/python3 test/emulators/marketo.py --port-file FILE --client-id ID
        --client-secret SECRET [--token-lifetime 3599] [--list 1001 ...]

From Adobe's Marketo developer documentation (experienceleague.adobe.com
marketo-developer; its source AdobeDocs/marketo-developer.en, help/rest-api/:
authentication.md, error-codes.md, leads.md, list-membership.md, rest-api.md)
and the Lead Database OpenAPI (as generated into neclimdul/marketo-rest):
  GET|POST /identity/oauth/token?grant_type=client_credentials&client_id=&client_secret=
      (a POST may carry the fields as a form body instead).  200 {"access_token":
      "<uuid>:ab", "token_type": "bearer", "expires_in": seconds left, "scope"}.
      Asked again while the token is valid: the same token and its remaining
      lifespan; once it has expired, a new one.  Bad credentials: HTTP 401.
  Every REST call: "Authorization: Bearer <token>" (the access_token query
      parameter is being removed, and is not accepted here).  Answers are HTTP 200
      {"requestId": "hex#hex", "success": true, "result": [...]} or {"requestId",
      "success": false, "errors": [{"code": "601", "message"}]}, codes as strings:
      601 Access token invalid, 602 Access token expired, 605 HTTP Method not
      supported, 606 Max rate limit '100' exceeded with in '20' secs (100 calls in
      20 s), 607 Daily quota reached, 609 Invalid JSON, 610 Requested resource not
      found, 612 Invalid Content Type, 615 Concurrent access limit reached (10 at
      once), 701 %s cannot be blank.  A call answered with such an error does not
      count against the daily quota or the rate limit.  A body over 1 MB: HTTP 413.
  POST /rest/v1/leads.json {"action": "createOrUpdate" (default) | "createOnly" |
      "updateOnly" | "createDuplicate", "lookupField" (default "email"), "input":
      [lead records]}, at most 300.  result[i] follows input order: {"id", "status":
      "created" | "updated"} or {"status": "skipped", "reasons": [{"code",
      "message"}]}: 1004 Lead not found (updateOnly), 1005 Lead already exists
      (createOnly), 1006 Field '%s' not found, 1007 Multiple leads match the lookup
      criteria, 1003 Invalid data (such as an id with an action other than
      updateOnly: id is only a key for updateOnly).  A lookupField that is a lead
      field but not a key: 1011 Field '%s' not supported.
  POST /rest/v1/leads/delete.json {"input": [{"id"}]}, at most 300: "deleted", or
      skipped 1004 Lead not found.
  POST | DELETE /rest/v1/lists/{listId}/leads.json: plural "lists", as on the List
      Membership page and in the OpenAPI (the singular /list/ appears only for the
      older GET of members, not emulated).  Lead ids as "id" query parameters or a
      JSON body {"input": [{"id"}]}, at most 300: "added" | "removed", or skipped
      1004 Lead not found | 1015 Lead not in list.  Unknown list: 1013 Object not found.

Where the documentation is silent, chosen as plausible:
  - No Authorization header: 600 "Access token missing" (the error table starts
    at 601; the mrkt client maps 600 to EmptyAccessToken).
  - Identity errors (the bodies are Spring Security OAuth2's): unknown client_id
    401 {"error": "unauthorized", "error_description": "No client with requested
    id: X"}; wrong secret 401 {"error": "invalid_client", "error_description":
    "Bad client credentials"}; a field missing 400 {"error": "invalid_request"};
    another grant type 400 {"error": "unsupported_grant_type"}.
  - Order: 413; route (610, 605); token (600, 601, 602); limits (615, 606, 607);
    then the call (612, 609, 701, 1xxx).
  - Request-level 1003 for more than 300 records or an unknown action, 1006 for
    an unknown lookupField; the 1003 messages are this emulator's wording (the
    docs give "Invalid data").  Per record, 1003 also for an email without "@",
    a leadScore that is not an integer (a string of digits is taken), or a
    record without its lookupField value.  Emails are matched case-insensitively.
  - Control fail_once skips a record with 1029 "Too many jobs in queue": no
    transient per-record code is documented for Sync Leads; 1029 is documented
    for the bulk job queue.
  - Adding a lead already in the list answers "added" again.
  - An unknown /rest/ path is HTTP 200 with 610; any other unknown path HTTP 404.
  - 1 MB is 1,048,576 bytes.
Lead fields: id, email, firstName, lastName, company, phone, title, leadScore
(integer), externalId (a custom field marked unique, so usable as lookupField).

Control (no auth):
  GET  /_state   {"leads": {id: fields}, "lists": {listId: [lead ids]}, "calls"
                  (REST requests), "admitted" (those counted against the limits),
                  "token_requests", "codes": {code: n} (every response- and
                  record-level code given, and 413), "max_records", "max_in_flight",
                  "token", "quota_left"}
  POST /_control {"expire_token": true, "daily_quota": n | null, "fail_once":
                  [lookup values], "delay_ms": n}, any of them: {"ok": true}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import json
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from serve import serve

FIELDS = {"id", "email", "firstName", "lastName", "company", "phone", "title", "leadScore", "externalId"}
KEYS = {"email", "id", "externalId"}
ACTIONS = {"createOrUpdate", "createOnly", "updateOnly", "createDuplicate"}
MAX_RECORDS, MAX_BODY, RATE, WINDOW, CONCURRENCY = 300, 1024 * 1024, 100, 20, 10
ROUTES = [(re.compile(r"/rest/v1/leads\.json"), {"POST": "sync_leads"}),
          (re.compile(r"/rest/v1/leads/delete\.json"), {"POST": "delete_leads"}),
          (re.compile(r"/rest/v1/lists/(\d+)/leads\.json"), {"POST": "add_to_list", "DELETE": "remove_from_list"})]

lock = threading.Lock()
st = {"leads": {}, "lists": {}, "calls": 0, "admitted": 0, "token_requests": 0, "codes": {},
      "max_records": 0, "in_flight": 0, "max_in_flight": 0, "token": None, "expires": 0.0,
      "old_tokens": set(), "times": deque(), "quota": None, "fail_once": [], "delay_ms": 0,
      "next_id": 100}
CONF = {}


class Refused(Exception):
    """A response-level error: success false, one error."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def request_id():
    return "%x#%x" % (secrets.randbits(16), int(time.time() * 1000))


def count(code):
    st["codes"][code] = st["codes"].get(code, 0) + 1


def skipped(code, message):
    count(code)
    return {"status": "skipped", "reasons": [{"code": code, "message": message}]}


def lead_ids(items):
    ids = []
    for i in items:
        v = i.get("id") if isinstance(i, dict) else i
        if isinstance(v, str) and re.fullmatch(r"\d+", v.strip()):
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            raise Refused("1003", "Invalid lead id %s" % json.dumps(v))
        ids.append(v)
    return ids


def find(key, value):
    if key == "id":
        value = int(value) if re.fullmatch(r"\d+", str(value)) else None
        return [value] if value in st["leads"] else []
    norm = (lambda v: str(v).lower()) if key == "email" else str
    return [i for i, f in st["leads"].items() if f.get(key) is not None and norm(f[key]) == norm(value)]


def create(fields):
    st["next_id"] += 1
    st["leads"][st["next_id"]] = fields
    return {"id": st["next_id"], "status": "created"}


def upsert(rec, action, key):
    """One Sync Leads record, under the lock."""
    if not isinstance(rec, dict):
        return skipped("1003", "Invalid data: a lead record must be an object")
    unknown = [f for f in rec if f not in FIELDS]
    if unknown:
        return skipped("1006", "Field '%s' not found" % unknown[0])
    if "id" in rec and action != "updateOnly":
        return skipped("1003", "Invalid data: id may only be given with action updateOnly")
    email = rec.get("email")
    if email is not None and (not isinstance(email, str) or "@" not in email):
        return skipped("1003", "Value for field 'email' is invalid")
    fields = {k: v for k, v in rec.items() if k != "id"}
    score = fields.get("leadScore")
    if isinstance(score, str) and re.fullmatch(r"-?\d+", score.strip()):
        fields["leadScore"] = score = int(score)
    if score is not None and (not isinstance(score, int) or isinstance(score, bool)):
        return skipped("1003", "Value for field 'leadScore' is invalid")
    if action == "createDuplicate":
        return create(fields)
    value = rec.get(key)
    if value is None or value == "":
        return skipped("1003", "Invalid data: no value for lookup field '%s'" % key)
    if str(value) in st["fail_once"]:
        st["fail_once"].remove(str(value))
        return skipped("1029", "Too many jobs in queue")
    matches = find(key, value)
    if len(matches) > 1:
        return skipped("1007", "Multiple leads match the lookup criteria")
    if matches and action == "createOnly":
        return skipped("1005", "Lead already exists")
    if not matches and action == "updateOnly":
        return skipped("1004", "Lead not found")
    if not matches:
        return create(fields)
    st["leads"][matches[0]].update(fields)
    return {"id": matches[0], "status": "updated"}


def token(p, now):
    """The identity endpoint's (status, answer), under the lock."""
    for f in ("grant_type", "client_id", "client_secret"):
        if not p.get(f):
            return 400, {"error": "invalid_request", "error_description": "Missing %s" % f.replace("_", " ")}
    if p["client_id"] != CONF["client_id"]:
        return 401, {"error": "unauthorized", "error_description": "No client with requested id: %s" % p["client_id"]}
    if p["client_secret"] != CONF["client_secret"]:
        return 401, {"error": "invalid_client", "error_description": "Bad client credentials"}
    if p["grant_type"] != "client_credentials":
        return 400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type: %s" % p["grant_type"]}
    if st["token"] is None or now >= st["expires"]:
        if st["token"]:
            st["old_tokens"].add(st["token"])
        st["token"], st["expires"] = "%s:ab" % uuid.uuid4(), now + CONF["lifetime"]
    return 200, {"access_token": st["token"], "token_type": "bearer",
                 "expires_in": math.ceil(st["expires"] - now), "scope": "apiuser@example.com"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, code, message):
        with lock:
            count(code)
        self.send(200, {"requestId": request_id(), "success": False, "errors": [{"code": code, "message": message}]})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PUT(self):
        self.route("PUT")

    def do_PATCH(self):
        self.route("PATCH")

    def route(self, method):
        url = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            while n > 0:  # drain it, so that the client reads the answer
                chunk = self.rfile.read(min(n, 65536))
                n = n - len(chunk) if chunk else 0
            with lock:
                st["calls"] += url.path.startswith("/rest/")
                count("413")
            return self.send(413)
        raw = self.rfile.read(n) if n else b""
        if url.path == "/identity/oauth/token" and method in ("GET", "POST"):
            return self.identity(url, raw)
        if url.path == "/_state" and method == "GET":
            return self.state()
        if url.path == "/_control" and method == "POST":
            return self.control(raw)
        if url.path.startswith("/rest/"):
            return self.rest(method, url, raw)
        self.send(404)

    # -- identity

    def identity(self, url, raw):
        q = parse_qs(url.query, keep_blank_values=True)
        if self.command == "POST" and raw:
            q.update(parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True))
        with lock:
            st["token_requests"] += 1
            status, body = token({k: v[0] for k, v in q.items()}, time.time())
        self.send(status, body)

    # -- REST

    def admit(self):
        """Check the token and the limits; an error (code, message), or None once the call is counted."""
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        now = time.time()
        with lock:
            if not token:
                return "600", "Access token missing"
            if token == st["token"] and now >= st["expires"] or token in st["old_tokens"]:
                return "602", "Access token expired"
            if token != st["token"]:
                return "601", "Access token invalid"
            if st["in_flight"] >= CONCURRENCY:
                return "615", "Concurrent access limit reached"
            times = st["times"]
            while times and now - times[0] >= WINDOW:
                times.popleft()
            if len(times) >= RATE:
                return "606", "Max rate limit '%d' exceeded with in '%d' secs" % (RATE, WINDOW)
            if st["quota"] is not None and st["quota"] <= 0:
                return "607", "Daily quota reached"
            times.append(now)
            if st["quota"] is not None:
                st["quota"] -= 1
            st["admitted"] += 1
            st["in_flight"] += 1
            st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])
            self.admitted_at = now
        return None

    def rest(self, method, url, raw):
        with lock:
            st["calls"] += 1
        for rx, methods in ROUTES:
            m = rx.fullmatch(url.path)
            if m:
                break
        else:
            return self.refuse("610", "Requested resource not found")
        if method not in methods:
            return self.refuse("605", "HTTP Method not supported")
        error = self.admit()
        if error:
            return self.refuse(*error)
        try:
            time.sleep(st["delay_ms"] / 1000.0)
            try:
                body = {"requestId": request_id(), "success": True,
                        "result": getattr(self, methods[method])(m, url, raw)}
            except Refused as e:
                with lock:  # an error does not count against the limits
                    count(e.code)
                    st["times"].remove(self.admitted_at)
                    if st["quota"] is not None:
                        st["quota"] += 1
                body = {"requestId": request_id(), "success": False, "errors": [{"code": e.code, "message": e.message}]}
        finally:
            with lock:
                st["in_flight"] -= 1
        self.send(200, body)

    def json_body(self, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refused("612", "Invalid Content Type")
        try:
            body = json.loads(raw)
        except ValueError:
            raise Refused("609", "Invalid JSON")
        if not isinstance(body, dict):
            raise Refused("609", "Invalid JSON")
        return body

    def records(self, items):
        if items is None or items == []:
            raise Refused("701", "input cannot be blank")
        if not isinstance(items, list):
            raise Refused("1003", "Invalid data: input must be an array")
        with lock:
            st["max_records"] = max(st["max_records"], len(items))
        if len(items) > MAX_RECORDS:
            raise Refused("1003", "Invalid data: %d records, at most %d a call" % (len(items), MAX_RECORDS))
        return items

    def sync_leads(self, m, url, raw):
        body = self.json_body(raw)
        items = self.records(body.get("input"))
        action = body.get("action") or "createOrUpdate"
        if action not in ACTIONS:
            raise Refused("1003", "Invalid action '%s'" % action)
        key = body.get("lookupField") or "email"
        if key not in FIELDS:
            raise Refused("1006", "Field '%s' not found" % key)
        if key not in KEYS:
            raise Refused("1011", "Field '%s' not supported" % key)
        with lock:
            return [upsert(r, action, key) for r in items]

    def delete_leads(self, m, url, raw):
        ids = lead_ids(self.records(self.json_body(raw).get("input")))
        result = []
        with lock:
            for i in ids:
                if st["leads"].pop(i, None) is None:
                    result.append({"id": i, **skipped("1004", "Lead not found")})
                    continue
                for members in st["lists"].values():
                    if i in members:
                        members.remove(i)
                result.append({"id": i, "status": "deleted"})
        return result

    def list_ids(self, m, url, raw):
        if int(m.group(1)) not in st["lists"]:
            raise Refused("1013", "Object not found")
        items = [v for q in parse_qs(url.query).get("id", []) for v in q.split(",") if v.strip()]
        if raw:
            body = self.json_body(raw).get("input")
            if body is not None and not isinstance(body, list):
                raise Refused("1003", "Invalid data: input must be an array")
            items += body or []
        return int(m.group(1)), lead_ids(self.records(items))

    def add_to_list(self, m, url, raw):
        list_id, ids = self.list_ids(m, url, raw)
        result = []
        with lock:
            members = st["lists"][list_id]
            for i in ids:
                if i not in st["leads"]:
                    result.append({"id": i, **skipped("1004", "Lead not found")})
                    continue
                if i not in members:
                    members.append(i)
                result.append({"id": i, "status": "added"})
        return result

    def remove_from_list(self, m, url, raw):
        list_id, ids = self.list_ids(m, url, raw)
        result = []
        with lock:
            members = st["lists"][list_id]
            for i in ids:
                if i not in st["leads"]:
                    result.append({"id": i, **skipped("1004", "Lead not found")})
                elif i not in members:
                    result.append({"id": i, **skipped("1015", "Lead not in list")})
                else:
                    members.remove(i)
                    result.append({"id": i, "status": "removed"})
        return result

    # -- control

    def state(self):
        with lock:
            body = {k: st[k] for k in ("leads", "lists", "calls", "admitted", "token_requests", "codes",
                                       "max_records", "max_in_flight", "token")}
            body["quota_left"] = st["quota"]
            body = json.loads(json.dumps(body))  # a snapshot
        self.send(200, body)

    def control(self, raw):
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                if body.get("expire_token") and st["token"]:
                    st["expires"] = time.time()
                if "daily_quota" in body:
                    st["quota"] = None if body["daily_quota"] is None else int(body["daily_quota"])
                if "fail_once" in body:
                    st["fail_once"] = [str(v) for v in body["fail_once"]]
                if "delay_ms" in body:
                    st["delay_ms"] = max(0, int(body["delay_ms"]))
        except (ValueError, TypeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--token-lifetime", type=float, default=3599)
    ap.add_argument("--list", type=int, action="append", help="a static list id that exists (repeatable; default 1001)")
    args = ap.parse_args()
    CONF.update(client_id=args.client_id, client_secret=args.client_secret, lifetime=args.token_lifetime)
    st["lists"] = {i: [] for i in (args.list or [1001])}
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
