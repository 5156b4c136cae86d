#!/usr/bin/python3
"""A local emulator of Braze's REST API (user data: track and delete), for tests.

Usage:
    /usr/bin/python3 test/emulators/braze.py --port-file FILE --api-key KEY

From Braze's documentation (braze-inc/braze-docs, _docs/_api/: endpoints/user_data/
post_user_track.md, post_user_delete.md, objects_filters/{user_attributes,event,
purchase,user_alias}_object.md, errors.md, api_limits.md; nested_custom_attribute_
support.md; braze.com/docs/api/endpoints/user_data for the payload limit):
  Every call: "Authorization: Bearer <REST API key>" (the api_key body or query
      parameter is being sunset: not accepted here).  A body over 4 MB: 413 Request
      Entity Too Large.  Answers are JSON {"message": "success", ...}; non-fatal errors
      add "errors": [...]; a fatal error is 4XX/5XX {"message": <fatal error>,
      "errors": [...]}.  Fatal statuses: 400 Bad Request (bad syntax), 400 Max Input
      Length Exceeded (too many /users/track objects), 400 "The max number of
      external_ids and aliases per request was exceeded" / "The max number of ids per
      request was exceeded" (over 50), 401 Unauthorized (invalid API key), 403 Access
      Denied (key lacks the permission users.track / users.delete), 404 Not Found
      (invalid URL), 429 Rate Limited, 5XX (retry with exponential backoff).
      Answers carry X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (UTC
      epoch seconds at which the current window resets).
  POST /users/track {"attributes": [...], "events": [...], "purchases": [...]}, each
      optional.  Each object needs one of "external_id", "user_alias" ({"alias_name",
      "alias_label"}, both required), "braze_id", "email", "phone"; with both email
      and phone the email identifies.  "_update_existing_only": true only updates;
      omitted, an unknown external_id (or email, phone) creates a profile; with a
      user_alias update-only is the default, an alias-only profile is created only by
      an attributes object with _update_existing_only false, and events and purchases
      by alias are always update-only; a braze_id is assigned by Braze (never
      creates).  Several profiles with one email: the most recently updated one with
      an external_id, else the most recently updated.
      Attributes: a value overwrites, null removes, {"inc": n} increments, {"add":
      [...], "remove": [...]} edits an array (unique values; an added value moves to
      the end), an array sets (duplicates dropped), an object sets a nested attribute
      (deep-merged into the old one with "_merge_objects": true).
      Events: "name" and "time" (ISO 8601 or yyyy-MM-dd'T'HH:mm:ss:SSSZ) required;
      "properties" names non-empty, at most 255 characters, no leading $, not "time"
      or "event_name"; string values at most 255 characters.  Purchases: "product_id"
      (at most 255), "currency" (ISO 4217 alphabetic), "price" and "time" required;
      "quantity" an integer 1..100.
      At most 75 objects a request across the three arrays (api_limits.md: "Up to 75
      total objects combined across attributes, events, and purchases"; accounts on
      legacy limits: 75 per array, control "per_array").  Processed in the order
      attributes, events, purchases.  Answer {"message": "success",
      "attributes_processed": n, "events_processed": n, "purchases_processed": n}
      (each only when that array was sent), "errors" when some were refused.
      Rate: 3,000 requests per three seconds a workspace; 429 beyond.
  POST /users/delete: one of "external_ids", "user_aliases", "braze_ids",
      "email_addresses", "phone_numbers" a request, at most 50.  Emails and phones
      carry {"email" | "phone", "prioritization": [...]}: an ordered array of
      "identified" | "unidentified" (not both) | "most_recently_updated"; no deletion
      if several profiles still match.  Answer {"deleted": n}, n the identifiers
      queued for deletion.  Rate: 20,000 requests a minute.

From third-party clients' tests against the real API (dietdoctor/go-braze
users_test.go, segmentio/action-destinations braze/__tests__/multistatus.test.ts and
utils.ts, rudderlabs server tests): /users/track succeeds with 201; a refused object
is {"type": "<reason>", "input_array": "attributes" | "events" | "purchases",
"index": i} (the index within that array), e.g. "'external_id' or 'braze_id' or
'user_alias' is required"; when no object is valid: 400 {"message": "Valid data must
be provided in the 'attributes', 'events', or 'purchases' fields.", "errors": [...]}.
post_user_track.md names "provided external_id is blacklisted and disallowed"
(dummy users): used for control "reject".

Where the documentation is silent, chosen as plausible:
  - 401 {"message": "Invalid API key: <the key presented>"} (as clients report: the
    presented key is echoed, so error bodies must not be logged verbatim); without
    a header the key is empty.  403 {"message": "Access Denied"}; 404 {"message":
    "Not Found"}; 429 {"message": "Rate Limited"}, no Retry-After; 413 {"message":
    "Request Entity Too Large"}; bad JSON or a body not an object: 400 {"message":
    "Bad Request"}; a Content-Type other than application/json: 400 "Bad Request:
    Content-Type must be application/json"; too many objects: 400 {"message": "Max
    Input Length Exceeded"}.  A fatal error with no per-object errors has no
    "errors" key.  Other per-object "type" wordings are this emulator's (the
    Minor(...) raises below).
  - Order: 413; route (404); key (401, 403); rate (429); injected 503; the body.
    Only 400, 503 and 2xx answers count against the rate; the rate headers are sent
    with those and with 429.  Windows are fixed, aligned on multiples of the window
    since the epoch.  4 MB is 4,194,304 bytes.
  - More than one of external_id, braze_id, user_alias in an object: refused ("only
    one of ... may be given"); email and phone beside one of them are profile
    fields (as in Braze's examples).  Emails match case-insensitively; a phone must
    look like E.164 (7 to 15 digits, optional +).
  - An update-only object matching no profile counts as processed and is dropped
    (Braze queues it): _state "dropped" lists it.
  - /users/delete: 201 {"deleted": n, "message": "success"}, n counting every
    identifier (found or not); _state "deleted" lists the profiles deleted.  Two
    identifier types, none, over 50 or malformed items: 400.  A deleted external_id
    may be used again (a new profile).
  - fail_once refuses an object once with type "internal error, please retry" (no
    transient per-object error is documented); fail_requests answers the next n
    calls 503 {"message": "Service Unavailable"} (the documented 5XX class).
  - Not emulated: push tokens, subscription groups, "$add"/"$update" on arrays of
    objects (stored as a nested object), /users/track/bulk, other endpoints.

Control (no auth):
  GET  /_state   {"users": {braze_id: {"braze_id", "external_id", "user_aliases":
                  {label: name}, "attributes", "events", "purchases", "updated"}},
                  "external_ids": {external_id: braze_id}, "deleted": [profiles],
                  "dropped": [{"input_array", "index", "identifier"}], "requests"
                  (API calls), "admitted" (counted against the rate), "limited"
                  (429s), "track_requests", "delete_requests", "events_received",
                  "purchases_received", "max_items" (most objects or ids in a call),
                  "max_bytes", "codes": {HTTP status: n}, "minor_errors": {type: n}}
  POST /_control {"fail_once": [ids], "reject": [ids], "delay_ms": n, "rate": n and
                  "window": seconds (/users/track: 3000 per 3), "delete_rate": n (a
                  minute: 20000), "max_objects": n (75), "per_array": bool,
                  "fail_requests": n, "deny": ["users.track" | "users.delete"],
                  "reset": true}, any of them: {"ok": true}.  ids: external_id,
                  braze_id, email, phone or alias_name values.

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import copy
import datetime
import json
import math
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from serve import serve

MAX_BODY = 4 * 1024 * 1024
ARRAYS = ("attributes", "events", "purchases")
PRIMARY = ("external_id", "braze_id", "user_alias")
NOT_ATTRIBUTES = {"external_id", "braze_id", "user_alias", "_update_existing_only", "push_token_import",
                  "_merge_objects"}
DELETE_KEYS = {"external_ids": "The max number of external_ids and aliases per request was exceeded",
               "user_aliases": "The max number of external_ids and aliases per request was exceeded",
               "braze_ids": "The max number of ids per request was exceeded",
               "email_addresses": "The max number of ids per request was exceeded",
               "phone_numbers": "The max number of ids per request was exceeded"}
NO_VALID = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
ISO = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.:]\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
PHONE = re.compile(r"\+?\d{7,15}")

lock = threading.Lock()
CONF = {}


def fresh():
    return {"users": {}, "deleted": [], "dropped": [], "requests": 0, "admitted": 0, "limited": 0,
            "track_requests": 0, "delete_requests": 0, "events_received": 0, "purchases_received": 0,
            "max_items": 0, "max_bytes": 0, "codes": {}, "minor_errors": {}, "seq": 0,
            "windows": {}, "fail_once": [], "reject": set(), "delay_ms": 0, "fail_requests": 0,
            "deny": set(), "limits": {"track": [3000, 3.0], "delete": [20000, 60.0]},
            "max_objects": 75, "per_array": False}


st = fresh()


class Minor(Exception):
    """One object refused: its "type"."""


class Fatal(Exception):
    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def count(table, key):
    st[table][key] = st[table].get(key, 0) + 1


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def valid_time(v):
    if not isinstance(v, str) or not ISO.fullmatch(v.strip()):
        return False
    s = v.strip().replace(" ", "T").replace("Z", "+00:00")
    s = re.sub(r"(T\d{2}:\d{2}:\d{2}):(\d{1,9})", r"\1.\2", s)  # the :SSS form
    s = re.sub(r"\.(\d{6})\d+", r".\1", s)
    s = re.sub(r"\.(\d{1,5})(?=[+-]|$)", lambda m: "." + m.group(1).ljust(6, "0"), s)
    s = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", s)
    try:
        datetime.datetime.fromisoformat(s)
    except ValueError:
        return False
    return True


def check_properties(props):
    if props is None:
        return
    if not isinstance(props, dict):
        raise Minor("'properties' must be an object")
    for k, v in props.items():
        if not k or len(k) > 255 or k.startswith("$"):
            raise Minor("invalid property name %s" % json.dumps(k))
        if k in ("time", "event_name"):
            raise Minor("property name '%s' is reserved" % k)
        if isinstance(v, str) and len(v) > 255:
            raise Minor("property '%s' is longer than 255 characters" % k)


# -- profiles (under the lock)

def touch(user):
    st["seq"] += 1
    user["updated"] = st["seq"]


def identifier(obj):
    """(kind, value, label) naming the profile an object is for, or Minor."""
    given = [k for k in PRIMARY if obj.get(k) is not None]
    if len(given) > 1:
        raise Minor("only one of 'external_id', 'braze_id' or 'user_alias' may be given")
    if given:
        kind, value = given[0], obj[given[0]]
        if kind == "user_alias":
            if not isinstance(value, dict) or not all(isinstance(value.get(f), str) and value.get(f)
                                                      for f in ("alias_name", "alias_label")):
                raise Minor("'user_alias' must have a string alias_name and alias_label")
            return kind, value["alias_name"], value["alias_label"]
        if not isinstance(value, str) or not value:
            raise Minor("'%s' must be a non-empty string" % kind)
        return kind, value, None
    for kind in ("email", "phone"):
        value = obj.get(kind)
        if value is not None:
            if not isinstance(value, str) or (kind == "email" and "@" not in value) or \
                    (kind == "phone" and not PHONE.fullmatch(re.sub(r"[\s().-]", "", value))):
                raise Minor("invalid %s %s" % (kind, json.dumps(value)))
            return kind, value, None
    raise Minor("'external_id' or 'braze_id' or 'user_alias' is required")


def by_contact(kind, value):
    norm = (lambda v: str(v).lower()) if kind == "email" else (lambda v: re.sub(r"[^\d]", "", str(v)))
    found = [u for u in st["users"].values()
             if u["attributes"].get(kind) is not None and norm(u["attributes"][kind]) == norm(value)]
    return found


def find(kind, value, label):
    users = st["users"].values()
    if kind == "external_id":
        return next((u for u in users if u["external_id"] == value), None)
    if kind == "braze_id":
        return st["users"].get(value)
    if kind == "user_alias":
        return next((u for u in users if u["user_aliases"].get(label) == value), None)
    found = by_contact(kind, value)
    known = [u for u in found if u["external_id"] is not None] or found
    return max(known, key=lambda u: u["updated"]) if known else None


def create(kind, value, label):
    user = {"braze_id": secrets.token_hex(12), "external_id": value if kind == "external_id" else None,
            "user_aliases": {label: value} if kind == "user_alias" else {}, "attributes": {},
            "events": [], "purchases": [], "updated": 0}
    if kind in ("email", "phone"):
        user["attributes"][kind] = value
    st["users"][user["braze_id"]] = user
    return user


def apply_attributes(attrs, obj):
    """The attributes after obj's changes (a new dict), or Minor."""
    new = copy.deepcopy(attrs)
    merge = obj.get("_merge_objects") is True
    for k, v in obj.items():
        if k in NOT_ATTRIBUTES:
            continue
        cur = new.get(k)
        if v is None:
            new.pop(k, None)
        elif isinstance(v, dict) and v and set(v) <= {"inc"}:
            if not is_number(v["inc"]) or (cur is not None and not is_number(cur)):
                raise Minor("cannot increment '%s'" % k)
            new[k] = (cur or 0) + v["inc"]
        elif isinstance(v, dict) and v and set(v) <= {"add", "remove"}:
            if not all(isinstance(x, list) for x in v.values()) or (cur is not None and not isinstance(cur, list)):
                raise Minor("invalid array update for '%s'" % k)
            arr = [x for x in (cur or []) if x not in v.get("remove", [])]
            for x in v.get("add", []):
                if x in arr:
                    arr.remove(x)
                arr.append(x)
            new[k] = arr
        elif isinstance(v, dict):
            if merge and isinstance(cur, dict):
                def deep(a, b):
                    for kk, vv in b.items():
                        a[kk] = deep(a[kk], vv) if isinstance(a.get(kk), dict) and isinstance(vv, dict) else vv
                    return a
                new[k] = deep(cur, copy.deepcopy(v))
            else:
                new[k] = copy.deepcopy(v)
        elif isinstance(v, list):
            arr = []
            for x in v:
                if isinstance(x, (dict, list)) or x not in arr:
                    arr.append(x)
            new[k] = arr
        else:
            new[k] = v
    return new


def check_object(array, obj):
    """Validate one event or purchase object's own fields, or Minor."""
    if array == "events":
        if not isinstance(obj.get("name"), str) or not obj["name"]:
            raise Minor("'name' is required")
    else:
        pid = obj.get("product_id")
        if not isinstance(pid, str) or not pid or len(pid) > 255:
            raise Minor("'product_id' is required (a string of at most 255 characters)")
        if not isinstance(obj.get("currency"), str) or not re.fullmatch(r"[A-Za-z]{3}", obj["currency"]):
            raise Minor("'currency' must be an ISO 4217 alphabetic code")
        if not is_number(obj.get("price")):
            raise Minor("'price' is required (a number)")
        q = obj.get("quantity")
        if q is not None and (not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 100):
            raise Minor("'quantity' must be an integer from 1 to 100")
    if obj.get("time") is None:
        raise Minor("'time' is required")
    if not valid_time(obj["time"]):
        raise Minor("'time' must be an ISO 8601 datetime")
    check_properties(obj.get("properties"))
    if obj.get("app_id") is not None and not isinstance(obj["app_id"], str):
        raise Minor("'app_id' must be a string")


def track_one(array, index, obj):
    """Process one object; True if processed, or Minor."""
    if not isinstance(obj, dict):
        raise Minor("each object must be a JSON object")
    kind, value, label = identifier(obj)
    values = {k: obj[k] for k in ("external_id", "braze_id", "email", "phone") if isinstance(obj.get(k), str)}
    if kind == "user_alias":
        values[kind] = value
    hit = next((k for k, v in values.items() if v in st["reject"]), None)
    if hit:
        raise Minor("provided %s is blacklisted and disallowed" % hit)
    failing = next((v for v in st["fail_once"] if v in values.values()), None)
    if failing is not None:
        st["fail_once"].remove(failing)
        raise Minor("internal error, please retry")
    only = obj.get("_update_existing_only")
    if only is not None and not isinstance(only, bool):
        raise Minor("'_update_existing_only' must be a boolean")
    if kind == "user_alias":
        only = True if array != "attributes" or only is None else only
    elif kind == "braze_id":
        only = True
    if array != "attributes":
        check_object(array, obj)
    user = find(kind, value, label)
    if array == "attributes":
        attrs = apply_attributes(user["attributes"] if user else {}, obj)
    if user is None and only:
        st["dropped"].append({"input_array": array, "index": index,
                              "identifier": {kind: {"alias_name": value, "alias_label": label}
                                             if kind == "user_alias" else value}})
        return
    if user is None:
        user = create(kind, value, label)
        if array == "attributes":
            attrs = apply_attributes(user["attributes"], obj)
    if array == "attributes":
        user["attributes"] = attrs
    elif array == "events":
        user["events"].append({k: obj.get(k) for k in ("name", "time", "properties", "app_id")})
        st["events_received"] += 1
    else:
        user["purchases"].append({k: obj.get(k) for k in ("product_id", "currency", "price", "quantity",
                                                          "time", "properties", "app_id")})
        st["purchases_received"] += 1
    touch(user)


def users_track(body):
    arrays = {}
    for a in ARRAYS:
        if body.get(a) is not None:
            if not isinstance(body[a], list):
                raise Fatal(400, "'%s' must be an array" % a)
            arrays[a] = body[a]
    sizes = [len(v) for v in arrays.values()]
    st["max_items"] = max(st["max_items"], sum(sizes))
    if (max(sizes or [0]) if st["per_array"] else sum(sizes)) > st["max_objects"]:
        raise Fatal(400, "Max Input Length Exceeded")
    processed, errors = {a: 0 for a in arrays}, []
    for a in ARRAYS:
        for i, obj in enumerate(arrays.get(a, [])):
            try:
                track_one(a, i, obj)
                processed[a] += 1
            except Minor as e:
                count("minor_errors", str(e))
                errors.append({"type": str(e), "input_array": a, "index": i})
    if not sum(processed.values()):
        raise Fatal(400, NO_VALID, errors)
    answer = {"message": "success"}
    answer.update({"%s_processed" % a: n for a, n in processed.items()})
    if errors:
        answer["errors"] = errors
    return 201, answer


def pick(found, prioritization):
    for p in prioritization:
        if p == "identified":
            found = [u for u in found if u["external_id"] is not None] or found
        elif p == "unidentified":
            found = [u for u in found if u["external_id"] is None] or found
        elif found:
            found = [max(found, key=lambda u: u["updated"])]
    return found[0] if len(found) == 1 else None


def users_delete(body):
    given = [k for k in DELETE_KEYS if body.get(k) is not None]
    if len(given) != 1:
        raise Fatal(400, "Exactly one of %s must be given" % ", ".join(DELETE_KEYS))
    key, items = given[0], body[given[0]]
    if not isinstance(items, list) or not items:
        raise Fatal(400, "'%s' must be a non-empty array" % key)
    st["max_items"] = max(st["max_items"], len(items))
    if len(items) > 50:
        raise Fatal(400, DELETE_KEYS[key])
    targets = []
    for it in items:
        if key in ("external_ids", "braze_ids"):
            if not isinstance(it, str) or not it:
                raise Fatal(400, "'%s' must hold strings" % key)
            targets.append(find(key[:-1], it, None))
        elif key == "user_aliases":
            if not isinstance(it, dict) or not all(isinstance(it.get(f), str) for f in ("alias_name", "alias_label")):
                raise Fatal(400, "each user alias needs alias_name and alias_label")
            targets.append(find("user_alias", it["alias_name"], it["alias_label"]))
        else:
            field = "email" if key == "email_addresses" else "phone"
            prio = it.get("prioritization") if isinstance(it, dict) else None
            if not isinstance(it, dict) or not isinstance(it.get(field), str) or not isinstance(prio, list) or \
                    not prio or not set(prio) <= {"identified", "unidentified", "most_recently_updated"} or \
                    {"identified", "unidentified"} <= set(prio):
                raise Fatal(400, "each of '%s' needs '%s' and a valid 'prioritization' array" % (key, field))
            targets.append(pick(by_contact(field, it[field]), prio))
    for user in targets:
        if user is not None and user["braze_id"] in st["users"]:
            del st["users"][user["braze_id"]]
            st["deleted"].append(user)
    return 201, {"deleted": len(items), "message": "success"}


ROUTES = {"/users/track": ("track", "users.track", users_track),
          "/users/delete": ("delete", "users.delete", users_delete)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        if not self.path.startswith("/_"):
            with lock:
                count("codes", str(status))
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.route(self.command)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def route(self, method):
        path = urlsplit(self.path).path
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            while n > 0:  # drain it, so that the client reads the answer
                chunk = self.rfile.read(min(n, 65536))
                n = n - len(chunk) if chunk else 0
            with lock:
                st["requests"] += 1
                st["max_bytes"] = max(st["max_bytes"], int(self.headers.get("Content-Length")))
            return self.send(413, {"message": "Request Entity Too Large"})
        raw = self.rfile.read(n) if n else b""
        if path == "/_state" and method == "GET":
            return self.state()
        if path == "/_control" and method == "POST":
            return self.control(raw)
        with lock:
            st["requests"] += 1
            st["max_bytes"] = max(st["max_bytes"], len(raw))
        if path not in ROUTES or method != "POST":
            return self.send(404, {"message": "Not Found"})
        self.api(ROUTES[path], raw)

    def admit(self, name, now):
        """Count a call in its window; (admitted, rate limit headers).  Under the lock."""
        limit, window = st["limits"][name]
        start = math.floor(now / window) * window
        w = st["windows"].get(name)
        if w is None or w[0] != start:
            w = st["windows"][name] = [start, 0]
        ok = w[1] < limit
        if ok:
            w[1] += 1
            st["admitted"] += 1
        else:
            st["limited"] += 1
        return ok, {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, limit - w[1])),
                    "X-RateLimit-Reset": str(math.ceil(start + window))}

    def api(self, route, raw):
        name, permission, handler = route
        auth = self.headers.get("Authorization") or ""
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if key != CONF["api_key"]:
            return self.send(401, {"message": "Invalid API key: %s" % key})
        with lock:  # (send takes the lock: never call it under the lock)
            st[name + "_requests"] += 1
            denied = permission in st["deny"]
            ok, headers = (False, {}) if denied else self.admit(name, time.time())
            failing = ok and st["fail_requests"] > 0
            st["fail_requests"] -= failing
            delay = st["delay_ms"]
        if denied:
            return self.send(403, {"message": "Access Denied"})
        if not ok:
            return self.send(429, {"message": "Rate Limited"}, headers)
        time.sleep(delay / 1000.0)
        if failing:
            return self.send(503, {"message": "Service Unavailable"}, headers)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return self.send(400, {"message": "Bad Request: Content-Type must be application/json"}, headers)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.send(400, {"message": "Bad Request"}, headers)
        try:
            with lock:
                status, answer = handler(body)
        except Fatal as e:
            status, answer = e.status, {"message": e.message}
            if e.errors is not None:
                answer["errors"] = e.errors
        self.send(status, answer, headers)

    # -- control

    def state(self):
        with lock:
            body = {k: st[k] for k in ("users", "deleted", "dropped", "requests", "admitted", "limited",
                                       "track_requests", "delete_requests", "events_received",
                                       "purchases_received", "max_items", "max_bytes", "codes", "minor_errors")}
            body["external_ids"] = {u["external_id"]: b for b, u in st["users"].items() if u["external_id"]}
            body = json.loads(json.dumps(body))  # a snapshot
        self.send(200, body)

    def control(self, raw):
        global st
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                if body.get("reset"):
                    st = fresh()
                for k, conv in (("delay_ms", int), ("max_objects", int), ("per_array", bool),
                                ("fail_requests", int)):
                    if k in body:
                        st[k] = max(0, conv(body[k]))
                for k, (name, i, conv) in {"rate": ("track", 0, int), "window": ("track", 1, float),
                                           "delete_rate": ("delete", 0, int)}.items():
                    if k in body:
                        st["limits"][name][i] = conv(body[k])
                        st["windows"].pop(name, None)
                if "fail_once" in body:
                    st["fail_once"] = [str(v) for v in body["fail_once"]]
                for k in ("reject", "deny"):
                    if k in body:
                        st[k] = {str(v) for v in body[k]}
        except (ValueError, TypeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--api-key", required=True)
    args = ap.parse_args()
    CONF["api_key"] = args.api_key
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
