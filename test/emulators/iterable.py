#!/usr/bin/python3
"""A local emulator of Iterable's API (bulk user update, bulk events, lists, user deletion), for tests.

Usage:
    /usr/bin/python3 test/emulators/iterable.py --port-file FILE --api-key KEY [--list 1234 ...]

From Iterable's OpenAPI (Swagger 2.0) document, Iterable/api-client : api-docs.json
(version 1.8, host api.iterable.com), and Iterable's own client in that repository
(src/errors.ts, tests/unit/error-handling.test.ts, tests/integration/*.test.ts):
  Auth: securityDefinitions api_key, header "Api-Key".  A missing or wrong key: HTTP 401
      {"msg": "Invalid API key", "code": "BadApiKey", "params": {"ip", "endpoint"}} (the body
      as in Iterable's client tests).  Errors use the envelope IterableApiResponse {"code",
      "msg", "params"}, code one of Success, BadApiKey, BadJsonBody, BadParams, BatchTooLarge,
      RateLimitExceeded, ... (the spec's enum).
  POST /api/users/bulkUpdate  {"users": [OptionalApiUser {email, userId, dataFields,
      preferUserId, mergeNestedObjects}], "createNewFields"}.  "Max size of request body: 4MB.
      Rate limit: 5 requests/second, per project."  Fields are added or overwritten, omitted
      top-level fields kept; mergeNestedObjects merges top-level objects one level deep; a
      field keeps its data type ("you cannot change its data type").  Answer 200
      UserBulkUpdateListResponse: successCount, failCount, createdFields, filteredOutFields,
      the deprecated invalidEmails / invalidUserIds ("users that failed to update") AND
      failedUpdates (FailedUserUpdates): invalidEmails, invalidUserIds, notFoundEmails,
      notFoundUserIds, invalidDataEmails, invalidDataUserIds, conflictEmails, conflictUserIds,
      forgottenEmails, forgottenUserIds.  The current spec shows both shapes (the top-level
      lists deprecated): both are given, every list always present.
  POST /api/events/trackBulk  {"events": [TrackRequest {email, userId, eventName (required),
      id, createdAt (unix timestamp), dataFields, campaignId, templateId, createNewFields}]}.
      "Rate limit: 10 requests/second, per project."  An event id that exists is updated; the
      id is at most 512 bytes.  Answer 200 BulkTrackResponse: successCount, failCount,
      disallowedEventNames, createdFields, filteredOutFields, deprecated invalidEmails
      ("malformed") and invalidUserIds ("not found"), failedUpdates (FailedEventUpdates):
      invalidEmails, invalidUserIds, notFoundEmails, notFoundUserIds, forgottenEmails,
      forgottenUserIds.
  POST /api/lists/subscribe  SubscribeRequest {"listId", "subscribers": [OptionalApiUser],
      "updateExistingUsersOnly"} and POST /api/lists/unsubscribe UnsubscribeRequest {"listId",
      "subscribers": [{email | userId}], "campaignId", "channelUnsubscribe"}: both answer
      UserBulkUpdateListResponse; notFoundEmails / notFoundUserIds are "for subscribe/
      unsubscribe only".  updateExistingUsersOnly (false by default) skips unknown users,
      otherwise they are created.  An unknown list: HTTP 400 {"msg":
      "error.lists.invalidListId(N)", "code": "Success" (sic), "params": {"projectId",
      "listId"}} (Iterable's client test).  The spec gives no rate limit for these.
  DELETE /api/users/{email} and DELETE /api/users/byUserId/{userId} ("Asynchronous"; 100
      requests/second each): 200 {"msg", "code": "Success", "params"}.
  Identifiers: "Provide an email or a userId".  Malformed userIds: "empty, too long, or
      containing non-ASCII or non-printable characters or a trailing space".  preferUserId
      is "only respected in email-based projects" and updateExistingUsersOnly "only in userID-
      based and hybrid projects": this emulates a hybrid project, so the first is type-checked
      and ignored, the second obeyed.
  Unknown route: 404 with an HTML page titled "Action not found" (Iterable's client test).
From third parties (rudderlabs/rudder-transformer test/integrations/destinations/iterable,
mocks of Iterable answers; Fivetran's Iterable knowledge base; api-evangelist/iterable
errors/iterable-error-codes.yml, a capture of Iterable's "API Response Codes" page):
  - Statuses: BadJsonBody, BadParams, BatchTooLarge ("the batch ... exceeds the allowed
    limit") 400; BadApiKey ("missing, disabled ...") 401; RateLimitExceeded 429.
  - Bad shapes: 400 {"msg": "[/api/users/bulkUpdate] Invalid JSON body", "code":
    "BadJsonBody", "params": {"obj.users[1].preferUserId": "Boolean value expected"}}.
  - bulkUpdate answers also carry noOpEmails / noOpUserIds (here: known users left unchanged,
    counted as successes).
  - Deleting: "All users associated with X were successfully deleted"; an unknown user is 400
    {"msg": "User does not exist. Email: E UserId: U", "code": "BadParams", "params": null}.
  - 429 {"msg": "Exceeded rate limit for endpoint: /api/..., project: N ", "code":
    "RateLimitExceeded", "params": {}}.

Where the documentation is silent, chosen as plausible:
  - Order: route (404), key (401), body size (400 BatchTooLarge), rate (429), JSON and shape
    (400 BadJsonBody, BadParams), then the records.  Refused calls do not count against the
    rate.  Rates are per endpoint in a sliding 1 s window; lists subscribe and unsubscribe
    10/s each.  No Retry-After unless the control key retry_after sets one.
  - The 4 MB (4,194,304 bytes) limit is applied to every POST here and answered with the
    documented code BatchTooLarge, HTTP 400.
  - Only the header Api-Key is accepted (not the legacy api_key header or query parameter);
    a key found in a URL or body is counted in key_leaks.
  - A Content-Type other than application/json: BadJsonBody "Expecting text/json or
    application/json body".  A missing required field: "error.path.missing" (Play, which the
    spec's Cookie / Flash definitions show Iterable runs on); "String|Number|Object|Array value
    expected" follow the observed "Boolean value expected".  Nulls read as absent.
  - An item with neither email nor userId, or an event id over 512 bytes: 400 BadParams for
    the whole request.
  - Emails match case-insensitively and must look like a@b.c; userIds over 1024 characters
    are too long.  With both email and userId, the user is found by email, else by userId; a
    userId held by another user fails as conflictUserIds (so conflictEmails stays empty); a
    new email or userId is set on the user found.
  - Field types are project-wide and top-level: string, long, double (takes longs), boolean,
    object, array; a mismatch fails the record as invalidDataEmails / invalidDataUserIds.
    New fields are allowed unless createNewFields is false (or allow_new_fields is off):
    created / filtered names are top-level.  email and userId are known fields.
  - trackBulk: an unknown email creates the user, an unknown userId is notFoundUserIds.
    Event dataFields types are not checked.  createdAt is kept as sent.
  - Unsubscribing a user not in the list succeeds; channelUnsubscribe marks the user.
  - Deletion is immediate and also removes the user's list memberships and events.
  - Control fail_once fails a record once: invalidData* on bulkUpdate, notFound* on trackBulk
    and lists (no transient per-record failure is documented).  reject: invalidEmails /
    invalidUserIds every time.  forget: the user is deleted and, as GDPR-forgotten, refused
    as forgottenEmails / forgottenUserIds.

Control (no auth):
  GET  /_state   {"users_by_email": {email: user}, "users_by_userid": {userId: user}, each user
                  {"email", "userId", "dataFields", "lists", "events", "unsubscribedChannel"};
                  "lists": {listId: [email or userId]}, "deleted": [{"email", "userId"}],
                  "forgotten", "fields", "events_received", "requests" (API calls), "limited"
                  (429s), "by_endpoint" (admitted calls), "peak" (most calls tried in any 1 s,
                  per endpoint), "max_items", "max_bytes", "key_leaks", "rates", "codes": {n
                  by envelope code, "failedUpdates.<list>", "disallowedEventNames",
                  "invalidListId"}}
  POST /_control {"fail_once": [ids], "reject": [ids], "forget": [ids], "disallow_events":
                  [names], "delay_ms": n, "rate": n | {endpoint: n}, "retry_after": s | null,
                  "body_limit": bytes, "allow_new_fields": bool}, any of them: {"ok": true}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import json
import re
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlsplit

from serve import serve

PROJECT_ID = 4242
BODY_LIMIT = 4 * 1024 * 1024
RATES = {"/api/users/bulkUpdate": 5, "/api/events/trackBulk": 10, "/api/lists/subscribe": 10,
         "/api/lists/unsubscribe": 10, "/api/users/{email}": 100, "/api/users/byUserId/{userId}": 100}
USER = {"email": "string", "userId": "string", "dataFields": "object", "preferUserId": "boolean",
        "mergeNestedObjects": "boolean"}
EVENT = {"email": "string", "userId": "string", "eventName": "string!", "id": "string",
         "createdAt": "number", "dataFields": "object", "campaignId": "number", "templateId": "number",
         "createNewFields": "boolean"}
BODIES = {"/api/users/bulkUpdate": ({"users": "array!", "createNewFields": "boolean"}, "users", USER),
          "/api/events/trackBulk": ({"events": "array!"}, "events", EVENT),
          "/api/lists/subscribe": ({"listId": "number!", "subscribers": "array!",
                                    "updateExistingUsersOnly": "boolean"}, "subscribers", USER),
          "/api/lists/unsubscribe": ({"listId": "number!", "subscribers": "array!", "campaignId": "number",
                                      "channelUnsubscribe": "boolean"}, "subscribers",
                                     {"email": "string", "userId": "string"})}
EXPECTED = {"string": "String value expected", "number": "Number value expected", "boolean":
            "Boolean value expected", "object": "Object value expected", "array": "Array value expected"}
USER_LISTS = ("invalidEmails", "invalidUserIds", "notFoundEmails", "notFoundUserIds", "invalidDataEmails",
              "invalidDataUserIds", "conflictEmails", "conflictUserIds", "forgottenEmails", "forgottenUserIds")
EVENT_LISTS = ("invalidEmails", "invalidUserIds", "notFoundEmails", "notFoundUserIds", "forgottenEmails",
               "forgottenUserIds")
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
NOT_FOUND_PAGE = (b"<!DOCTYPE html><html><head><title>Action not found</title></head>"
                  b"<body><h1>Action not found</h1></body></html>")

lock = threading.Lock()
st = {"users": {}, "by_email": {}, "by_uid": {}, "lists": {}, "events": {}, "event_fields": {},
      "fields": {"email": "string", "userId": "string"}, "deleted": [], "forgotten": set(),
      "events_received": 0, "requests": 0, "limited": 0, "by_endpoint": {}, "peak": {}, "max_items": 0,
      "max_bytes": 0, "codes": {}, "key_leaks": 0, "rates": dict(RATES), "admitted": {}, "tried": {},
      "fail_once": [], "reject": set(), "disallow_events": set(), "delay_ms": 0, "retry_after": None,
      "body_limit": BODY_LIMIT, "allow_new_fields": True, "next_id": 0}
CONF = {}


class Refused(Exception):
    """A request-level error: an HTTP status and Iterable's envelope."""

    def __init__(self, status, code, msg, params=None, counted=None):
        super().__init__(msg)
        self.status, self.body = status, {"msg": msg, "code": code, "params": params}
        self.counted = counted or code


def count(code, n=1):
    st["codes"][code] = st["codes"].get(code, 0) + n


def typed(v, kind):
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, {"string": str, "boolean": bool, "object": dict, "array": list}[kind])


def shape(obj, fields, path, errs):
    """Check obj's fields ("kind", "kind!" when required) as Play JSON reads would."""
    for name, kind in fields.items():
        v = obj.get(name)
        if v is None:
            if kind.endswith("!"):
                errs["%s.%s" % (path, name)] = "error.path.missing"
        elif not typed(v, kind.rstrip("!")):
            errs["%s.%s" % (path, name)] = EXPECTED[kind.rstrip("!")]


def ftype(v):
    for t, k in ((bool, "boolean"), (int, "long"), (float, "double"), (str, "string"), (dict, "object"),
                 (list, "array")):
        if isinstance(v, t):
            return k
    return None


def norm(ident):
    """Emails compare case-insensitively, userIds exactly."""
    return ident.lower() if ident is not None and "@" in ident else ident


def bad_uid(uid):
    return (uid == "" or len(uid) > 1024 or uid != uid.rstrip(" ")
            or any(not (0x20 <= ord(c) < 0x7f) for c in uid))


def find(email, uid):
    e = st["by_email"].get(email.lower()) if email is not None else None
    u = st["by_uid"].get(uid) if uid is not None else None
    return e, u


def set_ids(iid, email, uid):
    user, changed = st["users"][iid], False
    if email is not None and user["email"] != email:
        if user["email"] is not None:
            st["by_email"].pop(user["email"].lower(), None)
        user["email"], changed = email, True
        st["by_email"][email.lower()] = iid
    if uid is not None and user["userId"] != uid:
        if user["userId"] is not None:
            st["by_uid"].pop(user["userId"], None)
        user["userId"], changed = uid, True
        st["by_uid"][uid] = iid
    return changed


def create(email, uid):
    st["next_id"] += 1
    st["users"][st["next_id"]] = {"email": None, "userId": None, "dataFields": {}, "unsubscribedChannel": False}
    set_ids(st["next_id"], email, uid)
    return st["next_id"]


def delete(iid):
    user = st["users"].pop(iid)
    st["by_email"].pop((user["email"] or "").lower(), None)
    st["by_uid"].pop(user["userId"], None)
    for members in st["lists"].values():
        if iid in members:
            members.remove(iid)
    for k in [k for k, ev in st["events"].items() if ev["user"] == iid]:
        del st["events"][k]
    st["deleted"].append({"email": user["email"], "userId": user["userId"]})


def screen(email, uid, df, transient):
    """The checks every record goes through; a failing (list, value) or None.  Under the lock."""
    side = "Emails" if email is not None else "UserIds"
    key = email if email is not None else uid
    if email is not None and not EMAIL.fullmatch(email):
        return "invalidEmails", email
    if isinstance((df or {}).get("email"), str) and not EMAIL.fullmatch(df["email"]):
        return "invalidEmails", df["email"]
    if uid is not None and bad_uid(uid):
        return "invalidUserIds", uid
    if norm(email) in st["reject"] or uid in st["reject"]:
        return "invalid" + side, key
    if norm(email) in st["forgotten"] or uid in st["forgotten"]:
        return "forgotten" + side, key
    for v in (norm(email), uid):
        if v is not None and v in st["fail_once"]:
            st["fail_once"].remove(v)
            return transient + side, key
    return None


def upsert(rec, allow_new, create_missing, out, transient="invalidData"):
    """One user of bulkUpdate or subscribe, under the lock: (iid, noop) or None once failed into out."""
    email, uid, df = rec.get("email"), rec.get("userId"), rec.get("dataFields") or {}
    side = "Emails" if email is not None else "UserIds"
    failed = screen(email, uid, df, transient)
    e, u = find(email, uid)
    if failed is None and e is not None and u is not None and e != u:
        failed = "conflictUserIds", uid
    iid = e if e is not None else u
    if failed is None and iid is None and not create_missing:
        failed = "notFound" + side, email if email is not None else uid
    if failed is None:
        fields = st["fields"]
        for k, v in df.items():
            have, got = fields.get(k), ftype(v)
            if have and got and have != got and not (have == "double" and got == "long"):
                failed = "invalidData" + side, email if email is not None else uid
                break
    if failed:
        out["failedUpdates"][failed[0]].append(failed[1])
        return None
    new = [k for k, v in df.items() if k not in st["fields"] and v is not None]
    if new and not allow_new:
        out["filteredOutFields"].update(new)
        df = {k: v for k, v in df.items() if k not in new}
    else:
        out["createdFields"].update(new)
        for k in new:
            st["fields"][k] = ftype(df[k])
    noop = iid is not None
    if iid is None:
        iid = create(email, uid)
    elif set_ids(iid, email, uid):
        noop = False
    data = st["users"][iid]["dataFields"]
    for k, v in df.items():
        if rec.get("mergeNestedObjects") and isinstance(v, dict) and isinstance(data.get(k), dict):
            v = dict(data[k], **v)
        if k not in data or data[k] != v:
            data[k], noop = v, False
    return iid, noop


def user_answer(out, n):
    fu = out["failedUpdates"]
    failed = sum(len(v) for v in fu.values())
    for name, vals in fu.items():
        if vals:
            count("failedUpdates." + name, len(vals))
    return {"successCount": n - failed, "failCount": failed,
            "invalidEmails": [v for k, l in fu.items() if k.endswith("Emails") for v in l],
            "invalidUserIds": [v for k, l in fu.items() if k.endswith("UserIds") for v in l],
            "createdFields": sorted(out["createdFields"]), "filteredOutFields": sorted(out["filteredOutFields"]),
            "failedUpdates": fu}


def new_out(lists):
    return {"failedUpdates": {k: [] for k in lists}, "createdFields": set(), "filteredOutFields": set()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None, headers=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        self.send_response(status)
        if data:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
        with lock:
            too_big = n > st["body_limit"]
        if too_big:
            raw, left = b"", n
            while left > 0:  # drain it, so that the client reads the answer
                chunk = self.rfile.read(min(left, 65536))
                left = left - len(chunk) if chunk else 0
        else:
            raw = self.rfile.read(n) if n else b""
        if url.path == "/_state" and method == "GET":
            return self.state()
        if url.path == "/_control" and method == "POST":
            return self.control(raw)
        template, arg = None, None
        if method == "POST" and url.path in BODIES:
            template = url.path
        elif method == "DELETE" and url.path.startswith("/api/users/byUserId/"):
            template, arg = "/api/users/byUserId/{userId}", unquote(url.path[len("/api/users/byUserId/"):])
        elif method == "DELETE" and url.path.startswith("/api/users/") and len(url.path) > len("/api/users/"):
            template, arg = "/api/users/{email}", unquote(url.path[len("/api/users/"):])
        if template is None:
            return self.send(404, raw=NOT_FOUND_PAGE, ctype="text/html; charset=utf-8")
        try:
            with lock:
                st["requests"] += 1
                st["max_bytes"] = max(st["max_bytes"], n)
                if CONF["key"] in unquote(self.path) or CONF["key"].encode() in raw:
                    st["key_leaks"] += 1
            self.admit(template, url.path, too_big, n)
            time.sleep(st["delay_ms"] / 1000.0)
            if arg is not None:
                status, body = self.delete_user(template, arg)
            else:
                status, body = 200, self.bulk(template, raw)
        except Refused as e:
            with lock:
                count(e.counted)
            headers = {}
            if e.status == 429 and st["retry_after"] is not None:
                headers["Retry-After"] = str(st["retry_after"])
            return self.send(e.status, e.body, headers)
        self.send(status, body)

    def admit(self, template, path, too_big, n):
        if (self.headers.get("Api-Key") or "") != CONF["key"]:
            raise Refused(401, "BadApiKey", "Invalid API key", {"ip": self.client_address[0], "endpoint": path})
        if too_big:
            raise Refused(400, "BatchTooLarge", "[%s] Request body of %d bytes is larger than the %d allowed"
                          % (path, n, st["body_limit"]))
        now = time.time()
        with lock:
            tried = st["tried"].setdefault(template, deque())
            tried.append(now)
            while now - tried[0] >= 1.0:
                tried.popleft()
            st["peak"][template] = max(st["peak"].get(template, 0), len(tried))
            times = st["admitted"].setdefault(template, deque())
            while times and now - times[0] >= 1.0:
                times.popleft()
            if len(times) >= st["rates"][template]:
                st["limited"] += 1
                raise Refused(429, "RateLimitExceeded", "Exceeded rate limit for endpoint: %s, project: %d "
                              % (path, PROJECT_ID), {})
            times.append(now)
            st["by_endpoint"][template] = st["by_endpoint"].get(template, 0) + 1

    def bulk(self, path, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in ("application/json", "text/json"):
            raise Refused(400, "BadJsonBody", "[%s] Expecting text/json or application/json body" % path)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Refused(400, "BadJsonBody", "[%s] Invalid JSON body" % path,
                          {"obj": "Invalid JSON" if body is None else "Object value expected"})
        fields, items_key, item_fields = BODIES[path]
        errs = {}
        shape(body, fields, "obj", errs)
        items = body.get(items_key) if isinstance(body.get(items_key), list) else []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                errs["obj.%s[%d]" % (items_key, i)] = "Object value expected"
            else:
                shape(item, item_fields, "obj.%s[%d]" % (items_key, i), errs)
        if errs:
            raise Refused(400, "BadJsonBody", "[%s] Invalid JSON body" % path, errs)
        for i, item in enumerate(items):
            if item.get("email") is None and item.get("userId") is None:
                raise Refused(400, "BadParams", "[%s] %s[%d]: an email or a userId is required" % (path, items_key, i))
            if len((item.get("id") or "").encode()) > 512:
                raise Refused(400, "BadParams", "[%s] %s[%d]: id is longer than 512 bytes" % (path, items_key, i))
        with lock:
            st["max_items"] = max(st["max_items"], len(items))
            if path == "/api/events/trackBulk":
                return self.track(items)
            if path == "/api/users/bulkUpdate":
                allow = body["createNewFields"] if body.get("createNewFields") is not None else st["allow_new_fields"]
                out = new_out(USER_LISTS)
                out["noOpEmails"], out["noOpUserIds"] = [], []
                for rec in items:
                    done = upsert(rec, allow, True, out)
                    if done and done[1]:
                        out["noOp" + ("Emails" if rec.get("email") is not None else "UserIds")].append(
                            rec.get("email") if rec.get("email") is not None else rec["userId"])
                return dict(user_answer(out, len(items)), noOpEmails=out["noOpEmails"], noOpUserIds=out["noOpUserIds"])
            return self.listing(path, body, items)

    def listing(self, path, body, items):
        list_id = body["listId"]
        if list_id not in st["lists"]:
            raise Refused(400, "Success", "error.lists.invalidListId(%s)" % json.dumps(list_id),
                          {"projectId": PROJECT_ID, "listId": list_id}, "invalidListId")
        members, out = st["lists"][list_id], new_out(USER_LISTS)
        for rec in items:
            if path == "/api/lists/subscribe":
                done = upsert(rec, st["allow_new_fields"], not body.get("updateExistingUsersOnly"), out, "notFound")
                if done and done[0] not in members:
                    members.append(done[0])
                continue
            email, uid = rec.get("email"), rec.get("userId")
            side = "Emails" if email is not None else "UserIds"
            failed = screen(email, uid, None, "notFound")
            e, u = find(email, uid)
            iid = e if e is not None else u
            if failed is None and iid is None:
                failed = "notFound" + side, email if email is not None else uid
            if failed:
                out["failedUpdates"][failed[0]].append(failed[1])
                continue
            if iid in members:
                members.remove(iid)
            if body.get("channelUnsubscribe"):
                st["users"][iid]["unsubscribedChannel"] = True
        return user_answer(out, len(items))

    def track(self, events):
        out, disallowed = new_out(EVENT_LISTS), []
        for ev in events:
            email, uid = ev.get("email"), ev.get("userId")
            side = "Emails" if email is not None else "UserIds"
            failed = screen(email, uid, None, "notFound")
            if failed is None and ev["eventName"] in st["disallow_events"]:
                disallowed.append(ev["eventName"])
                continue
            e, u = find(email, uid)
            iid = e if e is not None else u
            if failed is None and iid is None and email is None:
                failed = "notFoundUserIds", uid
            if failed:
                out["failedUpdates"][failed[0]].append(failed[1])
                continue
            if iid is None:
                iid = create(email, uid)
            known = st["event_fields"].setdefault(ev["eventName"], set())
            df = dict(ev.get("dataFields") or {})
            new = [k for k in df if k not in known]
            allow = ev["createNewFields"] if ev.get("createNewFields") is not None else st["allow_new_fields"]
            if new and not allow:
                out["filteredOutFields"].update(new)
                df = {k: v for k, v in df.items() if k not in new}
            else:
                out["createdFields"].update(new)
                known.update(new)
            eid = ev.get("id") or uuid.uuid4().hex
            st["events"].pop(eid, None)
            st["events"][eid] = {"user": iid, "id": eid, "eventName": ev["eventName"], "dataFields": df,
                                 "createdAt": ev.get("createdAt", int(time.time())),
                                 "campaignId": ev.get("campaignId"), "templateId": ev.get("templateId")}
            st["events_received"] += 1
        fu = out["failedUpdates"]
        for name, vals in fu.items():
            if vals:
                count("failedUpdates." + name, len(vals))
        if disallowed:
            count("disallowedEventNames", len(disallowed))
        failed = sum(len(v) for v in fu.values()) + len(disallowed)
        return {"successCount": len(events) - failed, "failCount": failed,
                "invalidEmails": list(fu["invalidEmails"]), "invalidUserIds": fu["invalidUserIds"] + fu["notFoundUserIds"],
                "disallowedEventNames": sorted(set(disallowed)), "createdFields": sorted(out["createdFields"]),
                "filteredOutFields": sorted(out["filteredOutFields"]), "failedUpdates": fu}

    def delete_user(self, template, arg):
        by_email = template == "/api/users/{email}"
        with lock:
            iid = find(arg, None)[0] if by_email else find(None, arg)[1]
            if iid is None:
                raise Refused(400, "BadParams", "User does not exist. Email: %s UserId: %s"
                              % (arg if by_email else "", "" if by_email else arg))
            delete(iid)
        return 200, {"msg": "All users associated with %s were successfully deleted" % arg, "code": "Success",
                     "params": None}

    # -- control

    def state(self):
        with lock:
            events = {}
            for ev in st["events"].values():
                events.setdefault(ev["user"], []).append({k: v for k, v in ev.items() if k != "user"})
            by_email, by_uid = {}, {}
            for iid, u in st["users"].items():
                view = dict(u, lists=[lid for lid, m in st["lists"].items() if iid in m], events=events.get(iid, []))
                if u["email"] is not None:
                    by_email[u["email"]] = view
                if u["userId"] is not None:
                    by_uid[u["userId"]] = view
            body = {"users_by_email": by_email, "users_by_userid": by_uid,
                    "lists": {lid: [st["users"][i]["email"] or st["users"][i]["userId"] for i in m]
                              for lid, m in st["lists"].items()},
                    "forgotten": sorted(st["forgotten"])}
            for k in ("deleted", "fields", "events_received", "requests", "limited", "by_endpoint", "peak",
                      "max_items", "max_bytes", "codes", "key_leaks", "rates"):
                body[k] = st[k]
            body = json.loads(json.dumps(body))  # a snapshot
        self.send(200, body)

    def control(self, raw):
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                if "fail_once" in body:
                    st["fail_once"] = [norm(str(v)) for v in body["fail_once"]]
                if "reject" in body:
                    st["reject"] = {norm(str(v)) for v in body["reject"]}
                for v in body.get("forget", []):
                    v = str(v)
                    st["forgotten"].add(norm(v))
                    e, u = find(v, None)[0], find(None, v)[1]
                    for iid in {i for i in (e, u) if i is not None}:
                        delete(iid)
                if "disallow_events" in body:
                    st["disallow_events"] = set(body["disallow_events"])
                if "delay_ms" in body:
                    st["delay_ms"] = max(0, int(body["delay_ms"]))
                if "rate" in body:
                    rate = body["rate"]
                    st["rates"] = ({k: int(rate.get(k, v)) for k, v in st["rates"].items()}
                                   if isinstance(rate, dict) else {k: int(rate) for k in st["rates"]})
                if "retry_after" in body:
                    st["retry_after"] = body["retry_after"]
                if "body_limit" in body:
                    st["body_limit"] = int(body["body_limit"])
                if "allow_new_fields" in body:
                    st["allow_new_fields"] = bool(body["allow_new_fields"])
        except (ValueError, TypeError, AttributeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--list", type=int, action="append", help="a static list id that exists (repeatable; default 1234)")
    args = ap.parse_args()
    CONF["key"] = args.api_key
    st["lists"] = {i: [] for i in (args.list or [1234])}
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
