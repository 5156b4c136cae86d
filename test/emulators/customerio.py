#!/usr/bin/python3
"""A local emulator of Customer.io's Track API (v2 batch and entity, v1 customers), for tests.

Usage:
    /usr/bin/python3 test/emulators/customerio.py --port-file FILE --site-id ID
        --api-key KEY [--email-update-by-id] [--segment SEGMENT_ID ...]

From Customer.io's Track API OpenAPI (docs.customer.io/files/journeys-track.json,
archived in api-evangelist/customer-io: openapi/customer-io-track-v2-api-openapi.yml;
an older copy with the limits tables: konfig-sdks/openapi-examples:
customer-io/journeys-track/openapi.yaml), docs.customer.io reserved-attributes,
Customer.io's mobile SDK core (customerio/mobile-shared: tracking/api/model/
TrackingError.kt, TrackingErrorReason.kt) and Segment's Customer.io destination
(segmentio/action-destinations: destinations/customerio/utils.ts, types.ts):
  Auth: HTTP basic, site id as user name, API key as password; otherwise 401.
  POST /api/v2/batch {"batch": [entity, ...]}: smaller than 500kb, each entity
      32kb or smaller.  200 (an empty object) when all were accepted; 207 ("At
      least one object in the batch was invalid; all other requests are
      accepted") {"errors": [{"batch_index": 0-based, "reason", "field",
      "message"}]}; 400 {"errors": [{"reason", "field", "message"}]} when the
      entire request was malformed.  Reasons: invalid | parse_error | required
      (the SDK's enum).  The 207 and batch_index are in the current spec (older
      copies lack batch_index); Segment's parser reads them the same way.
  POST /api/v2/entity: one entity, under 32kb: 200, or 400 {"errors": [...]}.
  Entity {"type": "person", "action", "identifiers": exactly one of id | email
      | phone | cio_id ("You cannot pass multiple identifiers"; phone only if the
      workspace enables it, not here)}:  identify: "attributes" added or updated,
      "timestamp" (integer, "can be used to control the order of attribute
      updates"), attributes._update true: only update an existing person.
      delete.  event | page | screen: "name" required, "id" (a valid ULID, to
      deduplicate), "timestamp", "attributes" (the event data).  suppress:
      delete, and refuse the person's identifiers until unsuppress.  merge
      ("primary", "secondary"), relationships and devices, and the types
      "object" and "delivery", are checked for required fields and counted only.
  PUT /api/v1/customers/{identifier} (the body is the attributes, with _update,
      cio_relationships), DELETE /api/v1/customers/{identifier}, POST
      /api/v1/customers/{identifier}/events {"name" (required), "data",
      "timestamp", "id", "type": event | page | screen}: 200 "an empty object".
      The identifier: an id, an email, or "cio_<cio_id>".
  POST /api/v1/segments/{segment_id}/add_customers and .../remove_customers
      ?id_type=id | email | cio_id (default id), {"ids": [string, ...]}, 1 to
      1000: a manual segment's members (the Track API's "Track Segments"; a
      segment must exist, made in the App API or the UI: here --segment);
      values that match nobody are ignored; 200 "an empty object".  Removal
      "requires people to have id attributes".
  Identify (the v1 identify text): a person is added when no identifier
      matches; path identifier unknown but the body's matches a person: that
      person is updated and given the path identifier; both match different
      people: 200 but an "Attribute Update Failure"; set identifiers change only
      through cio_id (email also by id with the workspace setting "Allow updates
      to email using ID"); an unknown or deleted cio_id: dropped.  Emails match
      case-insensitively.
  Limits: ID 150 bytes; attribute name 150 bytes, value 1000 bytes, 300
      attributes per person or identify call; event name 100 bytes, event data
      100000 bytes; email a valid address.
  Rate: a fair-use 100 requests a second (v1 and v2), "no strictly enforced
      rate limit"; 429 is documented only for the App API.

Where the documentation is silent, chosen as plausible:
  - 401 {"meta": {"error": "Unauthorized request"}} (no body in the spec; v1 and
    App errors use "meta").  Basic credentials in standard or URL-safe base64.
  - Order: unknown path 404, method 405; auth 401; rate 429; size 413; JSON 400.
  - Over 500kb (512,000 bytes) on /batch or 32kb (32,768) on /entity: 413
    {"errors": [{"reason": "invalid", "field": "", "message"}]}.  In a batch, an
    entity over 32,768 bytes (as compact UTF-8 JSON) is a 207 error "invalid".
    A missing or empty "batch": 400 "required".
  - Entity errors name a dotted field: parse_error (not an object); required
    (type, action, identifiers[.kind], name, primary, secondary, device,
    cio_relationships, delivery fields); invalid (unknown type or action, not
    exactly one identifier, phone, an over-long id, a bad email in identifiers
    or attributes.email, attributes not an object, a name or value too long,
    over 300 attributes, timestamp not an integer, id not a ULID, event name or
    data too long).  A failing entity changes nothing.
  - v1 errors: 400 {"meta": {"errors": [message]}} (the spec's shared 400).  A
    path identifier with "@" is an email.
  - null or "" removes an attribute (documented for objects and relationships).
    An identify older (timestamp) than the newest applied is ignored.  An event
    for an unknown person creates them; a repeated event id for a person is
    dropped.  Deleting an unknown person: 200.
  - Rate: 100 per 1 s window, counted when admitted; beyond, 429 {"meta":
    {"error": "Too many requests"}}, no Retry-After (none documented).
  - "Allow updates to email using ID": off unless --email-update-by-id.
  - Manual segments: an unknown segment 404 {"meta": {"error": "Not
    Found"}}; a body without 1 to 1000 string ids, or an unknown id_type,
    400 {"meta": {"errors": [message]}}; remove_customers with an id_type
    other than id, 400 (the removal text above).  Deleting a person takes
    them out of every segment.
  - fail_once / reject: the entity fails with reason "invalid", field
    "identifiers.<kind>" (no transient reason is documented); on v1, a 400.

Control (no auth):
  GET  /_state   {"people": {id, else email, else cio_<n>: attributes with id, email,
                  cio_id}, "events": {same key: [{"type", "name", "data", "timestamp",
                  "id"}]}, "deleted": [keys, in order], "suppressed", "update_failures":
                  [{"person", "attribute", "value", "reason"}], "requests" (/api/ calls),
                  "limited" (429s), "max_items", "max_bytes", "max_item_bytes", "codes":
                  {status: n, each non-200}, "reasons": {reason: n}, "dropped",
                  "duplicates", "stale", "objects", "deliveries", "other_actions",
                  "secret_seen" (requests with the API key outside Authorization),
                  "rate", "window", "segments": {segment id: [person keys, sorted]}}
  POST /_control {"fail_once": [identifiers], "reject": [identifiers], "delay_ms": n,
                  "rate": n | null (100), "window": seconds, "email_update_by_id":
                  bool, "reset": true}: {"ok": true}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import base64
import binascii
import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from serve import serve

MAX_BATCH, MAX_ENTITY, MAX_READ = 500 * 1024, 32 * 1024, 8 * 1024 * 1024
MAX_ID, MAX_NAME, MAX_VALUE, MAX_ATTRS, MAX_EVENT_NAME, MAX_EVENT_DATA = 150, 150, 1000, 300, 100, 100000
RATE, WINDOW = 100, 1.0
PERSON_ACTIONS = {"identify", "delete", "event", "page", "screen", "merge", "suppress", "unsuppress",
                  "add_relationships", "delete_relationships", "add_device", "delete_device"}
OBJECT_ACTIONS = {"identify", "identify_anonymous", "delete", "add_relationships", "delete_relationships"}
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", re.I)
ROUTES = [(re.compile(r"/api/v2/batch"), {"POST": "batch"}),
          (re.compile(r"/api/v2/entity"), {"POST": "entity"}),
          (re.compile(r"/api/v1/customers/([^/]+)"), {"PUT": "v1_identify", "DELETE": "v1_delete"}),
          (re.compile(r"/api/v1/customers/([^/]+)/events"), {"POST": "v1_event"}),
          (re.compile(r"/api/v1/segments/([^/]+)/(add_customers|remove_customers)"), {"POST": "v1_segment"})]
MAX_SEGMENT_IDS = 1000

lock = threading.Lock()
CONF = {}
st = {}


def reset():
    st.update(people={}, by_id={}, by_email={}, deleted=[], suppressed=set(), update_failures=[],
              requests=0, limited=0, max_items=0, max_bytes=0, max_item_bytes=0, codes={}, reasons={},
              dropped=0, duplicates=0, stale=0, objects=0, deliveries=0, other_actions=0, secret_seen=0,
              times=deque(), next_cio=3000000, segments={s: set() for s in CONF.get("segments", [])})
    st.update(fail_once=[], reject=set())
    for k, v in (("rate", RATE), ("window", WINDOW), ("delay_ms", 0), ("email_update_by_id", False)):
        st.setdefault(k, v)


class Invalid(Exception):
    """One entity's error: (reason, field, message)."""

    def __init__(self, reason, field, message):
        super().__init__(message)
        self.reason, self.field, self.message = reason, field, message


def nbytes(v):
    return len((v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), ensure_ascii=False)).encode())


def count(table, key):
    st[table][str(key)] = st[table].get(str(key), 0) + 1


# -- people (all under the lock)

def norm(kind, value):
    """An identifier as matched: emails case-insensitively."""
    return str(value).lower() if kind == "email" else str(value)


def find(kind, value):
    cio = str(value) if kind == "cio_id" else st["by_" + kind].get(norm(kind, value))
    return st["people"].get(cio) if cio else None


def key(rec):
    a = rec["attrs"]
    return str(a["id"]) if a.get("id") is not None else a.get("email") or "cio_" + rec["cio"]


def set_ident(rec, kind, value):
    """Set (None: unset) a person's id or email, keeping the index."""
    if kind in rec["attrs"]:
        st["by_" + kind].pop(norm(kind, rec["attrs"].pop(kind)), None)
    if value is not None:
        st["by_" + kind][norm(kind, value)] = rec["cio"]
        rec["attrs"][kind] = value


def create(kind, value):
    st["next_cio"] += 1
    rec = {"cio": "a%07d" % st["next_cio"], "attrs": {}, "ts": None, "event_ids": set(), "events": []}
    st["people"][rec["cio"]] = rec
    set_ident(rec, kind, value)
    return rec


def remove(rec):
    """Delete a person; their identifiers [(kind, value)]."""
    st["deleted"].append(key(rec))
    for members in st["segments"].values():
        members.discard(rec["cio"])
    idents = [(k, rec["attrs"][k]) for k in ("id", "email") if rec["attrs"].get(k) is not None]
    set_ident(rec, "id", None)
    set_ident(rec, "email", None)
    del st["people"][rec["cio"]]
    return idents


def is_suppressed(kind, value):
    return (kind, norm(kind, value)) in st["suppressed"]


def identifier(ids, field="identifiers"):
    """Check an identifiers object; (kind, value)."""
    if ids is None:
        raise Invalid("required", field, "%s is required" % field)
    if not isinstance(ids, dict) or len(ids) != 1 or not set(ids) <= {"id", "email", "phone", "cio_id"}:
        raise Invalid("invalid", field, "%s must hold exactly one of id, email, phone, cio_id" % field)
    (kind, value), = ids.items()
    f = "%s.%s" % (field, kind)
    if value is None or value == "":
        raise Invalid("required", f, "%s is required" % f)
    if isinstance(value, int) and not isinstance(value, bool) and kind == "id":
        value = str(value)
    if not isinstance(value, str):
        raise Invalid("invalid", f, "%s must be a string" % f)
    if kind == "phone":
        raise Invalid("invalid", f, "phone is not enabled as an identifier in this workspace")
    if kind == "id" and nbytes(value) > MAX_ID:
        raise Invalid("invalid", f, "id is longer than %d bytes" % MAX_ID)
    if kind == "email" and not EMAIL.fullmatch(value):
        raise Invalid("invalid", f, "%r is not a valid email address" % value)
    return kind, value


def injected(kind, value):
    """Control fail_once / reject on this identifier, under the lock."""
    v = norm(kind, value)
    if v in st["reject"]:
        raise Invalid("invalid", "identifiers." + kind, "invalid value for identifiers.%s" % kind)
    if v in st["fail_once"]:
        st["fail_once"].remove(v)
        raise Invalid("invalid", "identifiers." + kind, "invalid value for identifiers.%s" % kind)


def check_timestamp(ts):
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        raise Invalid("invalid", "timestamp", "timestamp must be an integer unix timestamp")


def check_attributes(attrs):
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise Invalid("invalid", "attributes", "attributes must be an object")
    if len(attrs) > MAX_ATTRS:
        raise Invalid("invalid", "attributes", "at most %d attributes per call" % MAX_ATTRS)
    for k, v in attrs.items():
        if nbytes(k) > MAX_NAME:
            raise Invalid("invalid", "attributes", "attribute name %r is longer than %d bytes" % (k[:40], MAX_NAME))
        if v is not None and nbytes(v) > MAX_VALUE:
            raise Invalid("invalid", "attributes." + k, "attribute value is longer than %d bytes" % MAX_VALUE)
    email = attrs.get("email")
    if email not in (None, "") and not (isinstance(email, str) and EMAIL.fullmatch(email)):
        raise Invalid("invalid", "attributes.email", "%r is not a valid email address" % (email,))
    aid = attrs.get("id")
    if aid not in (None, "") and (not isinstance(aid, (str, int)) or isinstance(aid, bool) or nbytes(str(aid)) > MAX_ID):
        raise Invalid("invalid", "attributes.id", "id must be a string of at most %d bytes" % MAX_ID)
    return dict(attrs)


def identify(kind, value, attrs, ts):
    attrs = check_attributes(attrs)
    check_timestamp(ts)
    update_only = bool(attrs.pop("_update", False))
    attrs.pop("cio_id", None)  # immutable
    rec, adopt = find(kind, value), False
    if rec is None and kind != "cio_id":
        other = "email" if kind == "id" else "id"
        if attrs.get(other) not in (None, ""):  # the body's identifier names a person: give them this one
            rec = find(other, attrs[other])
            if rec is not None and rec["attrs"].get(kind) is not None:
                rec = None
            adopt = rec is not None
    if rec is not None:  # check the attribute count before changing anything
        after = {k for k in rec["attrs"] if k not in ("id", "email")}
        after |= {k for k, v in attrs.items() if v not in (None, "") and k not in ("id", "email")}
        after -= {k for k, v in attrs.items() if v in (None, "")}
        if len(after) > MAX_ATTRS:
            raise Invalid("invalid", "attributes", "a person may have at most %d attributes" % MAX_ATTRS)
    injected(kind, value)
    if kind == "cio_id" and rec is None or is_suppressed(kind, value) or any(
            is_suppressed(k, attrs[k]) for k in ("id", "email") if attrs.get(k)):
        st["dropped"] += 1  # an unknown or deleted cio_id, or a suppressed identifier: dropped
        return
    if rec is None and update_only:
        return
    if ts is not None and rec is not None and rec["ts"] is not None and ts < rec["ts"]:
        st["stale"] += 1
        return
    if rec is None:
        rec = create(kind, value)
    elif adopt:
        set_ident(rec, kind, value)
    if ts is not None:
        rec["ts"] = ts
    for k, v in attrs.items():
        if k in ("id", "email"):
            change_ident(rec, kind, k, v)
        elif v is None or v == "":
            rec["attrs"].pop(k, None)
        else:
            rec["attrs"][k] = v


def change_ident(rec, by, kind, v):
    if v is not None and kind == "id":
        v = str(v)
    cur = rec["attrs"].get(kind)
    same = (lambda a, b: str(a).lower() == str(b).lower()) if kind == "email" else (lambda a, b: str(a) == str(b))
    if v in (None, "") and cur is None or cur is not None and v not in (None, "") and same(cur, v):
        return
    other = find(kind, v) if v not in (None, "") else None
    reason = None
    if other is not None and other is not rec:
        reason = "%s already belongs to another person" % kind
    elif cur is not None and by != "cio_id" and not (kind == "email" and by == "id" and st["email_update_by_id"]):
        reason = "identifiers can only be changed when the person is referenced by cio_id"
    if reason:
        st["update_failures"].append({"person": key(rec), "attribute": kind, "value": v, "reason": reason})
    else:
        set_ident(rec, kind, v if v not in (None, "") else None)


def event(kind, value, action, name, eid, ts, data):
    if name is None or name == "":
        raise Invalid("required", "name", "name is required")
    if not isinstance(name, str):
        raise Invalid("invalid", "name", "name must be a string")
    name = name.strip()
    if nbytes(name) > MAX_EVENT_NAME:
        raise Invalid("invalid", "name", "event name is longer than %d bytes" % MAX_EVENT_NAME)
    if eid is not None and not (isinstance(eid, str) and ULID.fullmatch(eid)):
        raise Invalid("invalid", "id", "id must be a valid ULID")
    check_timestamp(ts)
    if data is not None and not isinstance(data, dict):
        raise Invalid("invalid", "attributes", "event data must be an object")
    if data is not None and nbytes(data) > MAX_EVENT_DATA:
        raise Invalid("invalid", "attributes", "event data is longer than %d bytes" % MAX_EVENT_DATA)
    rec = find(kind, value)
    injected(kind, value)
    if rec is None and kind == "cio_id" or is_suppressed(kind, value):
        st["dropped"] += 1
        return
    rec = rec or create(kind, value)
    if eid is not None:
        if eid.upper() in rec["event_ids"]:
            st["duplicates"] += 1
            return
        rec["event_ids"].add(eid.upper())
    rec["events"].append({"type": action, "name": name, "data": data or {}, "timestamp": ts, "id": eid})


def person(item):
    action = item.get("action")
    if action is None:
        raise Invalid("required", "action", "action is required")
    if action not in PERSON_ACTIONS:
        raise Invalid("invalid", "action", "unknown action %r for type person" % (action,))
    if action == "merge":  # checked and counted, not modelled
        identifier(item.get("primary"), "primary")
        identifier(item.get("secondary"), "secondary")
        st["other_actions"] += 1
        return
    kind, value = identifier(item.get("identifiers"))
    if action == "identify":
        return identify(kind, value, item.get("attributes"), item.get("timestamp"))
    if action in ("event", "page", "screen"):
        return event(kind, value, action, item.get("name"), item.get("id"), item.get("timestamp"),
                     item.get("attributes"))
    need = {"add_relationships": "cio_relationships", "delete_relationships": "cio_relationships",
            "add_device": "device", "delete_device": "device"}.get(action)
    if need and not (item.get(need) if need == "cio_relationships" else (item.get(need) or {}).get("token")):
        raise Invalid("required", need, "%s is required" % ("device.token" if need == "device" else need))
    injected(kind, value)
    rec = find(kind, value)
    idents = remove(rec) if action in ("delete", "suppress") and rec is not None else []
    if action == "suppress":
        for k, v in [(kind, value)] + idents:
            st["suppressed"].add((k, norm(k, v)))
    elif action == "unsuppress":
        st["suppressed"].discard((kind, norm(kind, value)))
    elif action != "delete":
        st["other_actions"] += 1


def apply_entity(item, size):
    """Check and apply one v2 entity, under the lock; raises Invalid."""
    if not isinstance(item, dict):
        raise Invalid("parse_error", "", "each entity must be a JSON object")
    if size > MAX_ENTITY:
        raise Invalid("invalid", "", "entity is %d bytes; each must be 32kb or smaller" % size)
    typ = item.get("type")
    if typ is None:
        raise Invalid("required", "type", "type is required")
    if typ == "person":
        return person(item)
    action, ids, attrs = item.get("action"), item.get("identifiers"), item.get("attributes")
    ids, attrs = (ids if isinstance(ids, dict) else {}), (attrs if isinstance(attrs, dict) else {})
    if typ == "object":
        if action not in OBJECT_ACTIONS:
            raise Invalid("invalid" if action else "required", "action", "bad action for type object")
        if not (ids.get("object_type_id") and ids.get("object_id") or ids.get("cio_object_id")):
            raise Invalid("required", "identifiers", "object_type_id and object_id, or cio_object_id, are required")
        st["objects"] += 1
        return
    if typ == "delivery":
        if action != "event" or item.get("name") not in ("opened", "converted", "delivered"):
            raise Invalid("invalid", "name", "a delivery needs action event, name opened | converted | delivered")
        if not (ids.get("id") and attrs.get("device_token")):
            raise Invalid("required", "attributes.device_token", "identifiers.id and device_token are required")
        st["deliveries"] += 1
        return
    raise Invalid("invalid", "type", "type must be person, object or delivery")


def path_identifier(raw):
    value = unquote(raw)
    if value.startswith("cio_"):
        return "cio_id", value[4:]
    return ("email" if "@" in value else "id"), value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        if status != 200:
            with lock:
                count("codes", status)
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, method):
        path = urlsplit(self.path).path
        n = int(self.headers.get("Content-Length") or 0)
        left = n if n > MAX_READ else 0
        while left > 0:  # too big to keep: drain it, so that the client reads the answer
            chunk = self.rfile.read(min(left, 65536))
            left = left - len(chunk) if chunk else 0
        raw = None if n > MAX_READ else self.rfile.read(n) if n else b""
        if path == "/_state" and method == "GET":
            return self.state()
        if path == "/_control" and method == "POST":
            return self.control(raw or b"")
        if not path.startswith("/api/"):
            return self.send(404, {"meta": {"error": "Not Found"}})
        secret = CONF["api_key"]
        with lock:
            st["requests"] += 1
            st["max_bytes"] = max(st["max_bytes"], n)
            if secret in self.path or raw and secret.encode() in raw or any(
                    secret in v for k, v in self.headers.items() if k.lower() != "authorization"):
                st["secret_seen"] += 1
        for rx, methods in ROUTES:
            m = rx.fullmatch(path)
            if m:
                break
        else:
            return self.send(404, {"meta": {"error": "Not Found"}})
        if method not in methods:
            return self.send(405, {"meta": {"error": "Method Not Allowed"}})
        if not self.authorized():
            return self.send(401, {"meta": {"error": "Unauthorized request"}})
        now = time.time()
        with lock:
            times = st["times"]
            while times and now - times[0] >= st["window"]:
                times.popleft()
            limited = len(times) >= st["rate"]
            st["limited"] += limited
            if not limited:
                times.append(now)
            delay = st["delay_ms"]
        if limited:
            return self.send(429, {"meta": {"error": "Too many requests"}})
        time.sleep(delay / 1000.0)
        getattr(self, methods[method])(m, raw)

    def authorized(self):
        auth = self.headers.get("Authorization") or ""
        token = auth[6:].strip().encode() if auth[:6].lower() == "basic " else b""
        try:
            decoded = base64.b64decode(token.translate(bytes.maketrans(b"-_", b"+/")), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.decode("utf-8", "replace").partition(":")
        return bool(sep) and user == CONF["site_id"] and password == CONF["api_key"]

    # -- v2

    def v2(self, m, raw, single=False):
        """/batch (single False) or /entity: 200 {}, 207 or 400 {"errors"}, or 413."""
        limit = MAX_ENTITY if single else MAX_BATCH
        if raw is None or len(raw) > limit:
            return self.send(413, {"errors": [{"reason": "invalid", "field": "",
                                               "message": "request must be smaller than %dkb" % (limit // 1024)}]})
        err = None
        try:
            body = json.loads(raw)
        except ValueError as e:
            body, err = None, {"reason": "parse_error", "field": "", "message": "invalid JSON: %s" % e}
        if err is None and not isinstance(body, dict):
            err = {"reason": "parse_error", "field": "", "message": "the body must be a JSON object"}
        items = [body] if single else (body or {}).get("batch")
        if err is None and (items is None or items == []):
            err = {"reason": "required", "field": "batch", "message": "batch is required"}
        elif err is None and not isinstance(items, list):
            err = {"reason": "invalid", "field": "batch", "message": "batch must be an array"}
        errors = [err] if err else []
        with lock:
            for i, item in enumerate(items if not err else []):
                size = len(raw) if single else nbytes(item)
                st["max_items"] = max(st["max_items"], len(items))
                st["max_item_bytes"] = max(st["max_item_bytes"], size)
                try:
                    apply_entity(item, size)
                except Invalid as e:
                    count("reasons", e.reason)
                    errors.append(dict({} if single else {"batch_index": i},
                                       reason=e.reason, field=e.field, message=e.message))
        if errors:
            return self.send(400 if err or single else 207, {"errors": errors})
        self.send(200, {})

    def batch(self, m, raw):
        self.v2(m, raw)

    def entity(self, m, raw):
        self.v2(m, raw, single=True)

    # -- v1

    def v1(self, m, raw, apply):
        """Run apply(kind, value, body) under the lock: 200 {}, or 400 {"meta": {"errors"}}."""
        if raw is None:
            return self.send(413, {"meta": {"error": "request too large"}})
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.send(400, {"meta": {"errors": ["the body must be a JSON object"]}})
        with lock:
            st["max_items"] = max(st["max_items"], 1)
            st["max_item_bytes"] = max(st["max_item_bytes"], len(raw))
            try:
                apply(*identifier(dict([path_identifier(m.group(1))]), "identifier"), body)
                err = None
            except Invalid as e:
                count("reasons", e.reason)
                err = e.message
        if err:
            return self.send(400, {"meta": {"errors": [err]}})
        self.send(200, {})

    def v1_identify(self, m, raw):
        self.v1(m, raw, lambda kind, value, body: identify(
            kind, value, {k: v for k, v in body.items() if k != "cio_relationships"}, None))

    def v1_delete(self, m, raw):
        def apply(kind, value, body):
            injected(kind, value)
            if find(kind, value) is not None:
                remove(find(kind, value))
        self.v1(m, raw, apply)

    def v1_event(self, m, raw):
        def apply(kind, value, body):
            action = body.get("type") or "event"
            if action not in ("event", "page", "screen"):
                raise Invalid("invalid", "type", "type must be event, page or screen")
            event(kind, value, action, body.get("name"), body.get("id"), body.get("timestamp"), body.get("data"))
        self.v1(m, raw, apply)

    def v1_segment(self, m, raw):
        """A manual segment's members added or removed: 200 {}, 400, 404."""
        sid, op = unquote(m.group(1)), m.group(2)
        id_type = (parse_qs(urlsplit(self.path).query).get("id_type") or ["id"])[0]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        ids = body.get("ids") if isinstance(body, dict) else None
        err = None
        if id_type not in ("id", "email", "cio_id"):
            err = "id_type must be id, email or cio_id"
        elif not isinstance(ids, list) or not 1 <= len(ids) <= MAX_SEGMENT_IDS or \
                not all(isinstance(i, str) for i in ids):
            err = "ids must be an array of 1 to %d strings" % MAX_SEGMENT_IDS
        elif op == "remove_customers" and id_type != "id":
            err = "people can be removed from a manual segment only by id"
        with lock:
            members = st["segments"].get(sid)
            if members is not None and err is None:
                st["max_items"] = max(st["max_items"], len(ids))
                for value in ids:
                    rec = find(id_type, value) if value else None
                    if rec is not None and op == "add_customers":
                        members.add(rec["cio"])
                    elif rec is not None:
                        members.discard(rec["cio"])
        if members is None:
            return self.send(404, {"meta": {"error": "Not Found"}})
        if err:
            return self.send(400, {"meta": {"errors": [err]}})
        self.send(200, {})

    # -- control

    def state(self):
        with lock:
            people = {key(r): dict(r["attrs"], cio_id=r["cio"]) for r in st["people"].values()}
            events = {key(r): r["events"] for r in st["people"].values() if r["events"]}
            body = {k: st[k] for k in ("deleted", "update_failures", "requests", "limited", "max_items",
                                       "max_bytes", "max_item_bytes", "codes", "reasons", "dropped",
                                       "duplicates", "stale", "objects", "deliveries", "other_actions",
                                       "secret_seen", "rate", "window")}
            body.update(people=people, events=events, suppressed=sorted("%s:%s" % s for s in st["suppressed"]),
                        segments={s: sorted(key(st["people"][c]) for c in m) for s, m in st["segments"].items()})
            body = json.loads(json.dumps(body))  # a snapshot
        self.send(200, body)

    def control(self, raw):
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                if body.get("reset"):
                    reset()
                if "fail_once" in body:
                    st["fail_once"] = [norm("email" if "@" in str(v) else "id", v) for v in body["fail_once"]]
                if "reject" in body:
                    st["reject"] = {norm("email" if "@" in str(v) else "id", v) for v in body["reject"]}
                if "delay_ms" in body:
                    st["delay_ms"] = max(0, int(body["delay_ms"]))
                if "rate" in body or "window" in body:
                    rate = body.get("rate", st["rate"])
                    st["rate"] = RATE if rate is None else max(0, int(rate))
                    st["window"], st["times"] = float(body.get("window", st["window"])), deque()
                if "email_update_by_id" in body:
                    st["email_update_by_id"] = bool(body["email_update_by_id"])
        except (ValueError, TypeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


for _m in ("GET", "POST", "PUT", "DELETE", "PATCH"):
    setattr(Handler, "do_" + _m, lambda self, _m=_m: self.route(_m))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--site-id", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--email-update-by-id", action="store_true",
                    help='the workspace setting "Allow updates to email using ID"')
    ap.add_argument("--segment", action="append", default=[],
                    help="a manual segment's id (repeatable)")
    args = ap.parse_args()
    CONF.update(site_id=args.site_id, api_key=args.api_key, segments=args.segment)
    reset()
    st["email_update_by_id"] = args.email_update_by_id
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
