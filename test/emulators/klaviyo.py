#!/usr/bin/python3
"""A local emulator of Klaviyo's REST API (bulk profile import jobs, list membership), for tests.

Usage:
    /usr/bin/python3 test/emulators/klaviyo.py --port-file FILE --api-key pk_...
        [--list Y6nRLr ...] [--revision 2024-10-15] [--job-steps 3]
The connector's base url is http://127.0.0.1:PORT (Klaviyo's: https://a.klaviyo.com).

From Klaviyo's OpenAPI spec (klaviyo/openapi : openapi/stable/apis/ bulk_import_profiles,
get_bulk_import_profiles_job, get_errors_for_bulk_import_profiles_job,
get_profiles_for_bulk_import_profiles_job, get_profile_ids_for_bulk_import_profiles_job,
add_profiles_to_list, remove_profiles_from_list, get_profiles_for_list, get_profile_ids_for_list)
and developers.klaviyo.com (rate_limits_and_error_handling, authenticate_,
api_versioning_and_deprecation_policy, use_klaviyos_bulk_profile_import_api):
  Every /api/ call: "Authorization: Klaviyo-API-Key <private key>" (else 401) and a required
      "revision: YYYY-MM-DD[.suffix]" header; bodies and answers application/vnd.api+json.  Errors:
      {"errors": [{"id", "status", "code", "title", "detail", "source": {"pointer" | "parameter"}}]}.
  Rate limits per account and endpoint, fixed windows: burst (1 s) and steady (1 min), each
      endpoint's x-klaviyo-ratelimit: the import job endpoints and list POST/DELETE 10/s, 150/m;
      GET /api/lists/{id}/profiles and .../relationships/profiles 75/s, 750/m.  Over either: 429,
      code "throttled", with Retry-After in seconds (honoured by the official SDKs, e.g.
      klaviyo-api-ruby's CHANGELOG); other answers carry RateLimit-Limit, -Remaining, -Reset (the
      steady window).
  POST /api/profile-bulk-import-jobs {"data": {"type": "profile-bulk-import-job", "attributes":
      {"profiles": {"data": [{"type": "profile", "id"?, "attributes": {email, phone_number (E.164),
      external_id, _kx, first_name, last_name, organization, locale, title, image, location {...},
      properties {...}}}]}}, "relationships"?: {"lists": {"data": [{"type": "list", "id"}]}}}}: up
      to 10,000 profiles, 5 MB a payload, 100 KB a profile.  An upsert (matching profiles updated,
      others created), every imported profile added to the lists; null values do not clear fields
      (the guide).  202 {"data": {"type", "id", "attributes": {"status" (queued | processing |
      complete | cancelled), "created_at", "total_count", "completed_count", "failed_count",
      "completed_at", "expires_at", "started_at"}, "relationships": {"lists", "profiles",
      "import-errors"}, "links": {"self"}}, "links": {"self"}}.
  GET /api/profile-bulk-import-jobs/{job_id}: the job, 200.
  GET .../{id}/import-errors: {"data": [{"type": "import-error", "id", "attributes": {"code",
      "title", "detail", "source": {"pointer"}, "original_payload"}}], "links": {"self", "next"?,
      "prev"?}}; page[size] default 20, 1..100, and page[cursor], as on every list below.
  GET .../{id}/profiles (profile resources) and .../{id}/relationships/profiles ({"type", "id"}):
      the profiles the job created or updated.
  POST | DELETE /api/lists/{id}/relationships/profiles {"data": [{"type": "profile", "id"}]}: at
      most 1,000 a call; 204, no body.  Removing leaves the profile itself alone.
  GET /api/lists/{id}/profiles (with "joined_group_at"; sort=[-]joined_group_at) and
      /api/lists/{id}/relationships/profiles: the members.
  Matching (help.klaviyo.com "Understanding identity resolution"): a given Klaviyo id, else email,
      else phone_number, else external_id; an identifier belongs to one profile.

Where the documentation is silent, chosen as plausible:
  - Order: 413; route (404, 405); auth (401); rate limit (429); revision (400, 404); Accept (406);
    Content-Type (415); body (400, 409); the call.  Only calls past auth count in the windows; every
    /api/ call counts in "requests".  A trailing "/" on paths (older revisions') is accepted.
  - 401: no key or another scheme: not_authenticated "Authentication credentials were not
    provided."; a wrong key: authentication_failed "Incorrect authentication credentials." (the
    words of Django REST framework, whose codes Klaviyo's errors use: throttled, not_found...).
  - Revision: missing, malformed or not a date: 400 invalid.  Later than --revision (the emulator's
    "today"): 400 "Unable to specify a future revision date."; a ".pre" (beta) suffix: 404 "No
    valid revisions found for method." (both as Klaviyo users quote them, e.g. the latter in
    klaviyo/klaviyo-swift-sdk PR 730).  Before 2022-10-17, the first revision: 400.
  - Accept: application/vnd.api+json, application/json (Klaviyo's curl examples), */* or none,
    else 406.  Content-Type of a body: the same two, else 415.  Both are counted in the state.
  - 5 MB and 100 KB read as 5,000,000 and 100,000 bytes.  A body over 5 MB: 413 payload_too_large.
    400 invalid (with source.pointer): over 10,000 profiles or 1,000 list entries, an empty array,
    a profile over 100 KB, an unknown attribute, a field of the wrong type, an unknown list in the
    import's relationships.  A wrong "type": 409 conflict (JSON:API's rule).  Bad JSON: 400
    parse_error.  "meta" (patch_properties) is ignored.
  - A job moves on only when read (GET of the job).  With --job-steps N: the first (N-1)//2 reads
    "queued", then "processing", the Nth "complete"; only then are profiles validated and applied,
    lists joined, counts filled (completed_count + failed_count = total_count).  expires_at:
    created_at + 7 days.  Until then import-errors and profiles are empty.
  - Import errors: code "invalid", title "Invalid input.", pointer
    /data/attributes/profiles/data/<i>/attributes[/field], original_payload the attributes sent:
    no identifier; an email not x@y.z; a phone_number not "+" and 2..15 digits; an unknown profile
    id.  Control "reject" names identifiers refused the same way; "fail_once" ones fail once with
    code "error", "A server error occurred." (transient: import again).
  - An identifier held by another profile moves to the matched one.  Emails match
    case-insensitively; properties and location merge key by key.
  - Lists: unknown list 404 not_found; an unknown profile id 400 invalid (pointer /data/<i>/id);
    adding a member again or removing a non-member changes nothing.  "fail_once" naming a profile
    (id or identifier) in a list call: 500 once, nothing done.
  - Unknown job: 404 not_found.  Ids: profiles and jobs 26-character ULIDs, import errors UUIDs.

Control (no auth):
  GET  /_state   {"profiles": {id: attributes}, "lists": {list id: [profile ids]}, "jobs": {id:
                  {"status", "checks", "total_count", "completed_count", "failed_count", "lists",
                  "failed": [indexes], "profile_ids"}}, "requests" (API calls), "calls":
                  {operation: n}, "limited" (429s), "max_items" (profiles or list entries in one
                  request), "max_bytes" (largest body), "max_profile_bytes", "codes": {HTTP status,
                  error code or "import:"code: n}, "revisions", "content_types", "accepts":
                  {value: n}, "key_leaks" (calls with the API key in URL or body), "rate", "stall"}
  POST /_control {"fail_once": [ids or identifiers], "reject": [identifiers], "delay_ms": n,
                  "rate": {"burst": n, "steady": n} | null (every endpoint's; null: documented),
                  "fail_job_once": true (the next job ends "cancelled", nothing applied), "stall":
                  bool (jobs stay "processing"), "job_steps": n, "api_key": key, "reset": true
                  (forget profiles, members, jobs, counters)}, any of them: {"ok": true}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import base64
import datetime
import json
import math
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from serve import serve

MAX_PROFILES, MAX_BODY, MAX_PROFILE, MAX_MEMBERS = 10000, 5000000, 100000, 1000
M, L = (10, 150), (75, 750)
FIRST_REVISION = "2022-10-17"
REVISION = re.compile(r"(\d{4}-\d{2}-\d{2})(\.[A-Za-z0-9]+)?")
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
E164 = re.compile(r"\+[1-9]\d{1,14}")
IDS = ("email", "phone_number", "external_id")
STRINGS = {"email", "phone_number", "external_id", "anonymous_id", "_kx", "first_name", "last_name",
           "organization", "locale", "title", "image"}
LOCATION = {"address1", "address2", "city", "country", "latitude", "longitude", "region", "zip", "timezone", "ip"}
SHOWN = ("email", "phone_number", "external_id", "first_name", "last_name", "organization", "locale", "title", "image")
ROUTES = [(re.compile(r"/api/profile-bulk-import-jobs"), {"POST": ("bulk_import_profiles", M)}),
          (re.compile(r"/api/profile-bulk-import-jobs/([^/]+)"), {"GET": ("get_bulk_import_profiles_job", M)}),
          (re.compile(r"/api/profile-bulk-import-jobs/([^/]+)/import-errors"),
           {"GET": ("get_errors_for_bulk_import_profiles_job", M)}),
          (re.compile(r"/api/profile-bulk-import-jobs/([^/]+)/profiles"),
           {"GET": ("get_profiles_for_bulk_import_profiles_job", M)}),
          (re.compile(r"/api/profile-bulk-import-jobs/([^/]+)/relationships/profiles"),
           {"GET": ("get_profile_ids_for_bulk_import_profiles_job", M)}),
          (re.compile(r"/api/lists/([^/]+)/relationships/profiles"),
           {"POST": ("add_profiles_to_list", M), "DELETE": ("remove_profiles_from_list", M),
            "GET": ("get_profile_ids_for_list", L)}),
          (re.compile(r"/api/lists/([^/]+)/profiles"), {"GET": ("get_profiles_for_list", L)})]
COUNTERS = dict(requests=0, calls={}, limited=0, max_items=0, max_bytes=0, max_profile_bytes=0, codes={},
                revisions={}, content_types={}, accepts={}, key_leaks=0)

lock = threading.Lock()
st = dict(profiles={}, index={k: {} for k in IDS}, lists={}, jobs={}, windows={}, fail_once=[], reject=[],
          delay_ms=0, rate=None, fail_job_once=False, stall=False, **json.loads(json.dumps(COUNTERS)))
CONF = {}


class Err(Exception):
    """A JSON:API error answer."""

    def __init__(self, status, code, title, detail, source=None, headers=None):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.source, self.headers = source or {"pointer": "/data/"}, headers or {}


def invalid(detail, pointer="/data/", parameter=None):
    return Err(400, "invalid", "Invalid input.", detail, {"parameter": parameter} if parameter else {"pointer": pointer})


def now_iso(t=None):
    return datetime.datetime.fromtimestamp(time.time() if t is None else t, datetime.timezone.utc).isoformat()


def ulid():
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    n = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(alphabet[(n >> (5 * i)) & 31] for i in range(25, -1, -1))


def bump(d, k):
    d[k] = d.get(k, 0) + 1


def norm(key, value):
    return value.strip().lower() if key == "email" else value.strip()


def taken(names, attrs, pid=None):
    """Which of names (a control list) this profile is named by, under the lock."""
    keys = {norm(k, attrs[k]) for k in IDS if isinstance(attrs.get(k), str)} | ({pid} if pid else set())
    return [v for v in names if v in keys]


# -- the store, under the lock

def profile_error(i, prof):
    """(code, title, detail, pointer) of a profile that cannot be imported, or None."""
    a, where = prof["attributes"], "/data/attributes/profiles/data/%d" % i
    pid = prof.get("id")
    if not pid and not any(a.get(k) for k in IDS):
        return ("invalid", "Invalid input.", "A profile must have at least one of email, phone_number or "
                "external_id.", where + "/attributes")
    rejected = taken(st["reject"], a)
    email, phone = a.get("email"), a.get("phone_number")
    if email and (not EMAIL.fullmatch(email.strip()) or norm("email", email) in rejected):
        return "invalid", "Invalid input.", "Invalid email address", where + "/attributes/email"
    if phone and (not E164.fullmatch(phone.strip()) or phone.strip() in rejected):
        return ("invalid", "Invalid input.", "Invalid phone number format (Example of a valid format: "
                "+12345678901)", where + "/attributes/phone_number")
    if rejected:
        return "invalid", "Invalid input.", "The external_id %s was refused." % rejected[0], where + "/attributes/external_id"
    failed = taken(st["fail_once"], a, pid)
    if failed:
        st["fail_once"].remove(failed[0])
        return "error", "A server error occurred.", "A server error occurred while importing this profile.", where
    if pid and pid not in st["profiles"]:
        return "invalid", "Invalid input.", "A profile with id %s does not exist." % pid, where + "/id"
    return None


def upsert(prof):
    """Apply one valid profile; its id."""
    a = {k: v for k, v in prof["attributes"].items() if v is not None and not (k in IDS and not v.strip())}
    pid = prof.get("id")
    for key in IDS:
        if not pid and isinstance(a.get(key), str):
            pid = st["index"][key].get(norm(key, a[key]))
    stamp = now_iso()
    if not pid:
        pid = ulid()
        st["profiles"][pid] = {"attributes": {}, "created": stamp}
    p = st["profiles"][pid]
    for key in IDS:
        if key not in a:
            continue
        other = st["index"][key].get(norm(key, a[key]))
        if other and other != pid:
            st["profiles"][other]["attributes"].pop(key, None)
        old = p["attributes"].get(key)
        if old is not None:
            st["index"][key].pop(norm(key, old), None)
        st["index"][key][norm(key, a[key])] = pid
    for k, v in a.items():
        if k in ("properties", "location"):
            merged = p["attributes"].setdefault(k, {})
            merged.update({pk: pv for pk, pv in v.items() if pv is not None})
        else:
            p["attributes"][k] = v.strip() if k in IDS else v
    p["updated"] = stamp
    return pid


def advance(job):
    """One read of a job: move it on."""
    if job["status"] in ("complete", "cancelled"):
        return
    job["checks"] += 1
    if st["stall"] or job["checks"] < CONF["steps"]:
        stalled = st["stall"] or job["checks"] > (CONF["steps"] - 1) // 2
        job["status"] = "processing" if stalled else "queued"
        job["started_at"] = job["started_at"] or (now_iso() if stalled else None)
        return
    job["started_at"] = job["started_at"] or now_iso()
    if job["cancel"]:
        job["status"] = "cancelled"
        return
    for i, prof in enumerate(job.pop("profiles")):
        err = profile_error(i, prof)
        if err:
            bump(st["codes"], "import:" + err[0])
            job["errors"].append({"type": "import-error", "id": str(uuid.uuid4()), "attributes": {
                "code": err[0], "title": err[1], "detail": err[2], "source": {"pointer": err[3]},
                "original_payload": prof["attributes"]}, "index": i})
            continue
        pid = upsert(prof)
        if pid not in job["profile_ids"]:
            job["profile_ids"].append(pid)
    for lid in job["lists"]:
        for pid in job["profile_ids"]:
            st["lists"][lid].setdefault(pid, now_iso())
    job.update(status="complete", completed_at=now_iso(), failed_count=len(job["errors"]),
               completed_count=job["total_count"] - len(job["errors"]))


def profile_view(pid, list_id=None):
    p = st["profiles"][pid]
    a = {k: p["attributes"].get(k) for k in SHOWN}
    a.update(created=p["created"], updated=p["updated"], last_event_date=None,
             location=dict(p["attributes"].get("location") or {}), properties=dict(p["attributes"].get("properties") or {}))
    if list_id:
        a["joined_group_at"] = st["lists"][list_id][pid]
    base = CONF["base"] + "/api/profiles/%s" % pid
    return {"type": "profile", "id": pid, "attributes": a, "links": {"self": base + "/"}, "relationships": {
        k: {"links": {"self": base + "/relationships/" + k + "/", "related": base + "/" + k + "/"}}
        for k in ("lists", "segments")}}


def job_view(job):
    base = CONF["base"] + "/api/profile-bulk-import-jobs/" + job["id"]
    attrs = {k: job[k] for k in ("status", "created_at", "total_count", "completed_count", "failed_count",
                                 "completed_at", "expires_at", "started_at")}
    rel = {k: {"links": {"self": base + "/relationships/" + k, "related": base + "/" + k}} for k in ("lists", "profiles")}
    rel["lists"]["data"] = [{"type": "list", "id": lid} for lid in job["lists"]]
    rel["import-errors"] = {"links": {"related": base + "/import-errors"}}
    return {"data": {"type": "profile-bulk-import-job", "id": job["id"], "attributes": attrs,
                     "relationships": rel, "links": {"self": base}}, "links": {"self": base}}


# -- validation of bodies

def dig(obj, *keys):
    for k in keys:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj


def jtype(v):
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def check_profile(i, item):
    where = "/data/attributes/profiles/data/%d" % i
    if not isinstance(item, dict):
        raise invalid("Expected an object, got %s." % jtype(item), where)
    if item.get("type") != "profile":
        raise Err(409, "conflict", "Conflict.", "The type '%s' does not match the resource 'profile'." % item.get("type"),
                  {"pointer": where + "/type"})
    if item.get("id") is not None and not isinstance(item["id"], str):
        raise invalid("'id' must be a string.", where + "/id")
    a = item.get("attributes")
    if not isinstance(a, dict):
        raise invalid("'attributes' is a required object.", where + "/attributes")
    for k, v in a.items():
        want = str if k in STRINGS else dict if k in ("properties", "location") else None
        if want is None:
            raise invalid("'%s' is not a valid field for the resource 'profile'." % k, where + "/attributes/" + k)
        if v is not None and (not isinstance(v, want) or k == "location" and set(v) - LOCATION):
            what = ("a string" if want is str else "an object of " + ", ".join(sorted(LOCATION)) if k == "location"
                    else "an object")
            raise invalid("'%s' must be %s, got %s." % (k, what, jtype(v)), where + "/attributes/" + k)
    size = len(json.dumps(item, separators=(",", ":")).encode())
    st["max_profile_bytes"] = max(st["max_profile_bytes"], size)
    if size > MAX_PROFILE:
        raise invalid("The maximum allowed payload size per-profile is 100KB (%d bytes given)." % size, where)
    return {"id": item.get("id"), "attributes": a}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/vnd.api+json")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, e, headers=None):
        with lock:
            bump(st["codes"], str(e.status))
            bump(st["codes"], e.code)
        body = {"errors": [{"id": str(uuid.uuid4()), "status": e.status, "code": e.code, "title": e.title,
                            "detail": e.detail, "source": e.source}]}
        self.send(e.status, body, dict(headers or {}, **e.headers))

    def do_GET(self):
        self.route(self.command)

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def route(self, method):
        url = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            while n > 0:  # drain it, so that the client reads the answer
                chunk = self.rfile.read(min(n, 65536))
                n = n - len(chunk) if chunk else 0
            with lock:
                st["requests"] += 1
                st["max_bytes"] = max(st["max_bytes"], int(self.headers.get("Content-Length")))
            return self.error(Err(413, "payload_too_large", "Request entity too large.",
                                  "The maximum allowed payload size is 5MB."))
        raw = self.rfile.read(n) if n else b""
        if url.path == "/_state" and method == "GET":
            return self.state()
        if url.path == "/_control" and method == "POST":
            return self.control(raw)
        CONF["base"] = "http://127.0.0.1:%d" % self.server.server_address[1]
        if not url.path.startswith("/api/"):
            return self.error(Err(404, "not_found", "Not found.", "Not found."))
        with lock:
            st["requests"] += 1
            st["max_bytes"] = max(st["max_bytes"], len(raw))
            if CONF["api_key"].encode() in raw or CONF["api_key"] in unquote(self.path):
                st["key_leaks"] += 1
        rate_headers = {}
        try:
            op, tier, groups = self.match(method, url.path.rstrip("/"))
            self.authenticate()
            rate_headers = self.admit(op, tier)
            self.check_headers(method)
            time.sleep(st["delay_ms"] / 1000.0)
            status, body = getattr(self, op)([unquote(g) for g in groups], url, raw)
        except Err as e:
            return self.error(e, rate_headers)
        self.send(status, body, rate_headers)

    @staticmethod
    def match(method, path):
        for rx, methods in ROUTES:
            m = rx.fullmatch(path)
            if m:
                if method not in methods:
                    raise Err(405, "method_not_allowed", 'Method "%s" not allowed.' % method,
                              'Method "%s" not allowed.' % method, headers={"Allow": ", ".join(sorted(methods))})
                with lock:
                    bump(st["calls"], methods[method][0])
                return methods[method] + (m.groups(),)
        raise Err(404, "not_found", "Not found.", "Not found.")

    def authenticate(self):
        scheme, _, key = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "klaviyo-api-key" or not key.strip():
            raise Err(401, "not_authenticated", "Authentication credentials were not provided.",
                      "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.")
        if key.strip() != CONF["api_key"]:
            raise Err(401, "authentication_failed", "Incorrect authentication credentials.",
                      "Incorrect authentication credentials.")

    def admit(self, op, tier):
        """Count the call in its windows; the RateLimit headers, or Err 429."""
        burst, steady = (st["rate"]["burst"], st["rate"]["steady"]) if st["rate"] else tier
        t = time.time()
        sec, minute = int(t), int(t // 60)
        with lock:
            w = st["windows"].setdefault(op, {"sec": sec, "ns": 0, "min": minute, "nm": 0})
            if w["sec"] != sec:
                w["sec"], w["ns"] = sec, 0
            if w["min"] != minute:
                w["min"], w["nm"] = minute, 0
            wait = None
            if w["nm"] >= steady:
                wait = max(1, math.ceil((minute + 1) * 60 - t))
            elif w["ns"] >= burst:
                wait = 1
            if wait is not None:
                st["limited"] += 1
                raise Err(429, "throttled", "Request was throttled.",
                          "Request was throttled. Expected available in %d second%s." % (wait, "" if wait == 1 else "s"),
                          headers={"Retry-After": wait})
            w["ns"] += 1
            w["nm"] += 1
            return {"RateLimit-Limit": steady, "RateLimit-Remaining": steady - w["nm"],
                    "RateLimit-Reset": max(0, math.ceil((minute + 1) * 60 - t))}

    def check_headers(self, method):
        rev = (self.headers.get("revision") or "").strip()
        accept = self.headers.get("Accept")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        with lock:
            bump(st["revisions"], rev or "(none)")
            bump(st["accepts"], accept or "(none)")
            if method in ("POST", "DELETE", "PATCH", "PUT"):
                bump(st["content_types"], ctype or "(none)")
        m = REVISION.fullmatch(rev)
        if not rev:
            raise invalid("Missing required header 'revision'.", parameter="revision")
        try:
            datetime.date.fromisoformat(m.group(1) if m else "")
        except ValueError:
            raise invalid("Invalid revision header '%s': the format is YYYY-MM-DD[.suffix]." % rev, parameter="revision")
        if m.group(1) > CONF["revision"]:
            raise invalid("Unable to specify a future revision date.", parameter="revision")
        if m.group(1) < FIRST_REVISION:
            raise invalid("Revision %s is before the earliest available revision %s." % (rev, FIRST_REVISION),
                          parameter="revision")
        if m.group(2):
            raise Err(404, "not_found", "Not found.", "No valid revisions found for method.", {"parameter": "revision"})
        if accept:
            types = {t.split(";")[0].strip().lower() for t in accept.split(",")}
            if not types & {"application/vnd.api+json", "application/json", "*/*", "application/*"}:
                raise Err(406, "not_acceptable", "Could not satisfy the request Accept header.",
                          "Could not satisfy the request Accept header.")
        if method in ("POST", "DELETE") and ctype not in ("application/vnd.api+json", "application/json"):
            raise Err(415, "unsupported_media_type", 'Unsupported media type "%s" in request.' % ctype,
                      'Unsupported media type "%s" in request.' % ctype)

    @staticmethod
    def body(raw):
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise Err(400, "parse_error", "Malformed request.", "JSON parse error - %s" % e)
        if not isinstance(body, dict):
            raise invalid("Expected an object, got %s." % jtype(body), "/")
        return body

    @staticmethod
    def items(value, pointer, limit):
        if not isinstance(value, list):
            raise invalid("Expected an array, got %s." % jtype(value), pointer)
        with lock:
            st["max_items"] = max(st["max_items"], len(value))
        if not value:
            raise invalid("At least 1 item is required.", pointer)
        if len(value) > limit:
            raise invalid("At most %d items are allowed per call (%d given)." % (limit, len(value)), pointer)
        return value

    def page(self, url, items):
        """(data slice, links) for page[size] and page[cursor]."""
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        size = q.get("page[size]", "20")
        if not re.fullmatch(r"\d+", size) or not 1 <= int(size) <= 100:
            raise invalid("page[size] must be an integer between 1 and 100.", parameter="page[size]")
        size, start = int(size), 0
        if "page[cursor]" in q:
            try:
                start = int(base64.urlsafe_b64decode(q["page[cursor]"].encode() + b"==").decode().partition(":")[2])
                if start < 0:
                    raise ValueError(start)
            except (ValueError, UnicodeDecodeError):
                raise invalid("Invalid page cursor.", parameter="page[cursor]")

        def link(offset):
            q2 = dict(q)
            q2["page[cursor]"] = base64.urlsafe_b64encode(("o:%d" % offset).encode()).decode().rstrip("=")
            return CONF["base"] + url.path + "?" + urlencode(q2)
        links = {"self": CONF["base"] + url.path + ("?" + url.query if url.query else "")}
        if start + size < len(items):
            links["next"] = link(start + size)
        if start > 0:
            links["prev"] = link(max(0, start - size))
        return items[start:start + size], links

    # -- endpoints

    def bulk_import_profiles(self, groups, url, raw):
        data = self.body(raw).get("data")
        if not isinstance(data, dict):
            raise invalid("'data' is a required object.", "/data")
        if data.get("type") != "profile-bulk-import-job":
            raise Err(409, "conflict", "Conflict.", "The type '%s' does not match the resource "
                      "'profile-bulk-import-job'." % data.get("type"), {"pointer": "/data/type"})
        items = self.items(dig(data, "attributes", "profiles", "data"), "/data/attributes/profiles/data", MAX_PROFILES)
        lists = dig(data, "relationships", "lists", "data") or []
        if not isinstance(lists, list):
            raise invalid("Expected an array.", "/data/relationships/lists/data")
        with lock:
            checked = [check_profile(i, item) for i, item in enumerate(items)]
            for i, ref in enumerate(lists):
                if not isinstance(ref, dict) or ref.get("type") != "list" or not isinstance(ref.get("id"), str) \
                        or ref["id"] not in st["lists"]:
                    raise invalid("List %s does not exist." % (ref.get("id") if isinstance(ref, dict) else ref),
                                  "/data/relationships/lists/data/%d" % i)
            created = time.time()
            job = {"id": ulid(), "status": "queued", "checks": 0, "created_at": now_iso(created),
                   "started_at": None, "completed_at": None, "expires_at": now_iso(created + 7 * 86400),
                   "total_count": len(checked), "completed_count": 0, "failed_count": 0,
                   "lists": list(dict.fromkeys(r["id"] for r in lists)), "profiles": checked, "errors": [],
                   "profile_ids": [], "cancel": st["fail_job_once"]}
            st["fail_job_once"] = False
            st["jobs"][job["id"]] = job
            return 202, job_view(job)

    @staticmethod
    def job(job_id):
        job = st["jobs"].get(job_id)
        if job is None:
            raise Err(404, "not_found", "Not found.", "A profile-bulk-import-job with id %s does not exist." % job_id)
        return job

    def get_bulk_import_profiles_job(self, groups, url, raw):
        with lock:
            job = self.job(groups[0])
            advance(job)
            return 200, job_view(job)

    def get_errors_for_bulk_import_profiles_job(self, groups, url, raw):
        with lock:
            errors = [{k: v for k, v in e.items() if k != "index"} for e in self.job(groups[0])["errors"]]
        data, links = self.page(url, errors)
        return 200, {"data": data, "links": links}

    def get_profiles_for_bulk_import_profiles_job(self, groups, url, raw, ids_only=False):
        with lock:
            ids = [i for i in self.job(groups[0])["profile_ids"] if i in st["profiles"]]
            data, links = self.page(url, ids)
            data = [{"type": "profile", "id": i} if ids_only else profile_view(i) for i in data]
        return 200, {"data": data, "links": links}

    def get_profile_ids_for_bulk_import_profiles_job(self, groups, url, raw):
        return self.get_profiles_for_bulk_import_profiles_job(groups, url, raw, ids_only=True)

    @staticmethod
    def members(list_id):
        if list_id not in st["lists"]:
            raise Err(404, "not_found", "Not found.", "A list with id %s does not exist." % list_id)
        return st["lists"][list_id]

    def membership(self, groups, raw, adding):
        with lock:
            self.members(groups[0])
        items = self.items(self.body(raw).get("data"), "/data", MAX_MEMBERS)
        for i, ref in enumerate(items):
            if not isinstance(ref, dict) or ref.get("type") != "profile" or not isinstance(ref.get("id"), str):
                raise invalid("Expected {\"type\": \"profile\", \"id\": string}.", "/data/%d" % i)
        with lock:
            members = self.members(groups[0])
            for i, ref in enumerate(items):
                if ref["id"] not in st["profiles"]:
                    raise invalid("A profile with id %s does not exist." % ref["id"], "/data/%d/id" % i)
            for ref in items:
                failed = taken(st["fail_once"], st["profiles"][ref["id"]]["attributes"], ref["id"])
                if failed:
                    st["fail_once"].remove(failed[0])
                    raise Err(500, "error", "A server error occurred.", "A server error occurred.")
            for ref in items:
                if adding:
                    members.setdefault(ref["id"], now_iso())
                else:
                    members.pop(ref["id"], None)
        return 204, None

    def add_profiles_to_list(self, groups, url, raw):
        return self.membership(groups, raw, True)

    def remove_profiles_from_list(self, groups, url, raw):
        return self.membership(groups, raw, False)

    def get_profiles_for_list(self, groups, url, raw, ids_only=False):
        with lock:
            members = self.members(groups[0])
            order = sorted(members, key=lambda p: members[p])
            if parse_qs(url.query).get("sort") == ["-joined_group_at"]:
                order.reverse()
            data, links = self.page(url, order)
            data = [{"type": "profile", "id": i} if ids_only else profile_view(i, groups[0]) for i in data]
        return 200, {"data": data, "links": links}

    def get_profile_ids_for_list(self, groups, url, raw):
        return self.get_profiles_for_list(groups, url, raw, ids_only=True)

    # -- control

    def state(self):
        with lock:
            body = {"profiles": {pid: dict(p["attributes"]) for pid, p in st["profiles"].items()},
                    "lists": {lid: list(m) for lid, m in st["lists"].items()},
                    "jobs": {jid: dict({k: j[k] for k in ("status", "checks", "total_count", "completed_count",
                                                          "failed_count", "lists", "profile_ids")},
                                       failed=[e["index"] for e in j["errors"]]) for jid, j in st["jobs"].items()},
                    "rate": st["rate"], "stall": st["stall"]}
            body.update({k: st[k] for k in COUNTERS})
            body = json.loads(json.dumps(body))  # a snapshot
        self.send(200, body)

    def control(self, raw):
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                for k in ("fail_once", "reject"):
                    if k in body:
                        st[k] = [str(v).strip().lower() if "@" in str(v) else str(v).strip() for v in body[k]]
                if "delay_ms" in body:
                    st["delay_ms"] = max(0, int(body["delay_ms"]))
                if "rate" in body:
                    r = body["rate"]
                    st["rate"] = None if r is None else {"burst": max(1, int(r["burst"])), "steady": max(1, int(r["steady"]))}
                for k in ("fail_job_once", "stall"):
                    if k in body:
                        st[k] = bool(body[k])
                if "job_steps" in body:
                    CONF["steps"] = max(1, int(body["job_steps"]))
                if "api_key" in body:
                    CONF["api_key"] = str(body["api_key"])
                if body.get("reset"):
                    st.update(profiles={}, index={k: {} for k in IDS}, jobs={}, windows={},
                              **json.loads(json.dumps(COUNTERS)))
                    for members in st["lists"].values():
                        members.clear()
        except (ValueError, TypeError, KeyError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--api-key", required=True, help="the private key, pk_...")
    ap.add_argument("--list", action="append", help="a list id that exists (repeatable; default Y6nRLr)")
    ap.add_argument("--revision", default="2024-10-15", help="the newest revision taken (a later one is 'future')")
    ap.add_argument("--job-steps", type=int, default=3, help="reads of a job until it is complete")
    args = ap.parse_args()
    datetime.date.fromisoformat(args.revision)
    CONF.update(api_key=args.api_key, revision=args.revision, steps=max(1, args.job_steps), base="")
    st["lists"] = {i: {} for i in (args.list or ["Y6nRLr"])}
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
