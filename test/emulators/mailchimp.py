#!/usr/bin/python3
"""A local emulator of Mailchimp's Marketing API 3.0 (list members, static segments), for tests.

Usage:
    /usr/bin/python3 test/emulators/mailchimp.py --port-file FILE
        --api-key 0123456789abcdef0123456789abcdef-us14 [--list a1b2c3d4e5 ...]
        [--segment a1b2c3d4e5:4501 ...]
The connector's base url is http://127.0.0.1:PORT/3.0.

From Mailchimp's documentation (mailchimp.com/developer/marketing/docs/errors/ and
/docs/fundamentals/, the API reference as generated into the official SDKs
mailchimp/mailchimp-marketing-python-sdk: lists/types/batch_subscribe_or_unsubscribe_*,
batch_add_or_remove_members_*, types/lists_post.py; konfig-sdks/mailchimp-java-sdk
docs/ListsBatchAddRemoveMembersRequest.md), and Mailchimp's answers as quoted in
public code and issues:
  Auth: HTTP basic, any user name, the API key as password.  Otherwise 401
      problem+json {"type", "title": "API Key Invalid", "status": 401, "detail",
      "instance"}: detail "Your request did not include an API key." when there is
      none, "Your API key may be invalid, or you've attempted to access the wrong
      datacenter." when it is wrong.
  Errors are application/problem+json {"type", "title", "status", "detail",
      "instance"} (the glossary: 400 "Invalid Resource" with "errors": [{"field",
      "message"}], fields like "members.item:3"; 400 "JSON Parse Error"; 404 "Resource
      Not Found"; 405 "Method Not Allowed" with an Allow header; 500).
  Throttling: 10 simultaneous connections; the 11th is 429 "Too Many Requests",
      "You have exceeded the limit of 10 simultaneous connections."  No per-minute
      limit; no Retry-After is documented, none is sent.
  POST /3.0/lists/{list_id} (batch subscribe or unsubscribe) {"members":
      [{"email_address", "status" | "status_if_new" (subscribed, unsubscribed,
      cleaned, pending, transactional), "merge_fields": {TAG: value}, ...}],
      "update_existing": bool}, up to 500 members; query skip_duplicate_check
      (true: later repeats of an address are ignored).  Always 200 when the request
      is well formed: {"new_members": [member], "updated_members": [member],
      "errors": [{"email_address", "error", "error_code" (ERROR_CONTACT_EXISTS |
      ERROR_GENERIC), "field", "field_message"}], "total_created", "total_updated",
      "error_count", "_links"}.  Per-member errors, as Mailchimp words them:
        "<e> is already a list member, do you want to update? please provide
            update_existing:true in the request body" (ERROR_CONTACT_EXISTS);
        "Please provide a valid email address." (ERROR_GENERIC);
        "<e> looks fake or invalid, please enter a real email address." (example.com
            and the other reserved domains; control "reject");
        "Your merge fields were invalid." with field = the tag;
        "<e> was permanently deleted and cannot be re-imported. The contact must
            re-subscribe to get back on the list." (after delete-permanent);
        "<e> has signed up to a lot of lists very recently; we're not allowing more
            signups for now" (control "fail_once": a transient refusal).
      An archived contact sent again is re-added (in new_members).
  Member (ListsPost): {"id": md5 hex of the lowercased email, "email_address",
      "status", "merge_fields", "web_id", "last_changed", "list_id", ...}.
  GET /3.0/lists/{list_id}/members/{subscriber_hash}: the member (status
      "archived" once archived); 404 when there is none.  The hash may also be
      given as the email address itself.
  DELETE /3.0/lists/{list_id}/members/{subscriber_hash}: archives; 204.
  POST /3.0/lists/{list_id}/members/{subscriber_hash}/actions/delete-permanent: 204;
      the address cannot be re-imported afterwards (except as pending: re-subscribe).
  POST /3.0/lists/{list_id}/segments/{segment_id} {"members_to_add": [emails],
      "members_to_remove": [emails]}, at most 500 each: 200 {"members_added":
      [member], "members_removed": [member], "errors": [{"email_addresses": [...],
      "error"}], "total_added", "total_removed", "error_count", "_links"}.
  GET /3.0/lists/{list_id}/merge-fields: {"merge_fields": [{"merge_id", "tag",
      "name", "type", "required", ...}], "list_id", "total_items"}.
  GET /3.0/ping: {"health_status": "Everything's Chimpy!"}.

Where the documentation is silent, chosen as plausible:
  - Order: auth (401), concurrency (429), route (404, 405), body (400), the call.
    The 10 connections are counted as requests in flight once authenticated
    (a 401 or 429 is not counted); control "delay_ms" holds each one in flight.
  - Request-level 400 Invalid Resource (the messages are this emulator's, in the
    style of Mailchimp's schema messages): members not an array or over 500, a member
    not an object, without a string email_address, with a status or status_if_new
    outside the enum, merge_fields not an object, update_existing not a boolean;
    segments: members_to_add / members_to_remove not arrays of strings, or over 500.
  - A new member needs status_if_new or status; without either: ERROR_GENERIC
    "Please provide a status for <e>."  An existing member (update_existing true)
    takes "status" if given, keeps its status otherwise; status_if_new is ignored.
    merge_fields are merged into the member's (only the tags given change).
  - An unknown merge tag: "Your merge fields were invalid.", field the tag,
    field_message "This merge field does not exist in the audience."; a value that
    is an object or array: field_message "Please enter a valid value."  Numbers are
    stored as strings, null as "".
  - Without skip_duplicate_check, an address repeated in one request is simply
    processed again (so it fails with ERROR_CONTACT_EXISTS or updates again).
  - "Fake" domains (control "fake_domains"): example.com, example.net, example.org,
    test.com and the .test, .example, .invalid, .localhost TLDs.
  - field and field_message are "" when the error is not about a field.
  - Segments: the reference says emails not on the list are ignored; here they are
    not added and are reported in errors with "Email addresses are not members of
    this list." (an archived contact is not a member).  Removing a member that is not
    in the segment is silently a no-op.  Adding one already in it lists it in
    members_added again.  fail_once there: "Temporary error, please try again."
    Errors group the addresses by message; error_count counts addresses.
    An unknown segment (or one of another list): 404 "A Static Segment with an id of
    N does not exist for this list." (the wording Mailchimp users quote).
  - Archiving or permanently deleting a member takes it out of every static segment.
  - DELETE or delete-permanent of a member not there (or already archived, for
    DELETE): 404.  fail_once naming that member's email: 500 Internal Server Error
    once (the glossary's "An unexpected internal error has occurred...").
  - Other methods on these paths: 405 with Allow; any other path: 404.
  - Emails keep the case first given; matching is case-insensitive.  The key's
    datacenter suffix is not checked (the host is 127.0.0.1).
  - Compliance states (re-subscribing someone who unsubscribed) are not emulated.

Control (no auth):
  GET  /_state   {"lists": {list_id: {"members": {lowercased email: {"id",
                  "email_address", "status", "merge_fields", "archived",
                  "segments": [ids]}}, "forgotten": [emails]}}, "segments": {id:
                  {"list_id", "members": [emails]}}, "requests" (API calls), "limited"
                  (429s), "max_items" (most members, or members_to_add/remove, in any
                  request), "max_bytes", "max_in_flight", "codes": {HTTP status or
                  error_code or "SEGMENT_ERROR": n}, "concurrency", "merge_fields"}
  POST /_control {"fail_once": [emails], "reject": [emails], "delay_ms": n,
                  "concurrency": n, "fake_domains": [domains], "merge_fields": [tags],
                  "api_key": key, "reset": true (forget all members, segment members
                  and counters)}, any of them: {"ok": true}.  The state's merge_fields
                  hold the tags set on the member (the API shows every tag, "" if unset).

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from serve import serve

ERRORS_URL = "https://mailchimp.com/developer/marketing/docs/errors/"
STATUSES = ["subscribed", "unsubscribed", "cleaned", "pending", "transactional"]
MAX_MEMBERS = 500
FAKE_DOMAINS = ["example.com", "example.net", "example.org", "test.com", ".test", ".example", ".invalid", ".localhost"]
MERGE_FIELDS = ["FNAME", "LNAME", "PHONE"]
EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                   r"@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+")
ROUTES = [(re.compile(r"/3\.0/ping"), {"GET": "ping"}),
          (re.compile(r"/3\.0/lists/([^/]+)"), {"POST": "batch"}),
          (re.compile(r"/3\.0/lists/([^/]+)/merge-fields"), {"GET": "merge_fields"}),
          (re.compile(r"/3\.0/lists/([^/]+)/members/([^/]+)"), {"GET": "get_member", "DELETE": "archive"}),
          (re.compile(r"/3\.0/lists/([^/]+)/members/([^/]+)/actions/delete-permanent"), {"POST": "forget"}),
          (re.compile(r"/3\.0/lists/([^/]+)/segments/([^/]+)"), {"POST": "segment"})]

lock = threading.Lock()
st = {"lists": {}, "segments": {}, "requests": 0, "limited": 0, "max_items": 0, "max_bytes": 0,
      "in_flight": 0, "max_in_flight": 0, "codes": {}, "fail_once": [], "reject": [], "delay_ms": 0,
      "concurrency": 10, "fake_domains": list(FAKE_DOMAINS), "merge_fields": list(MERGE_FIELDS),
      "next_web_id": 100000}
CONF = {}


class Problem(Exception):
    """An error answer: problem+json."""

    def __init__(self, status, title, detail, errors=None, headers=None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.errors, self.headers = status, title, detail, errors, headers or {}


def not_found(detail="The requested resource could not be found."):
    return Problem(404, "Resource Not Found", detail)


def invalid(errors):
    return Problem(400, "Invalid Resource", "The resource submitted could not be validated. "
                   "For field-specific details, see the 'errors' array.",
                   [{"field": f, "message": m} for f, m in errors])


def jtype(v):
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def subscriber_hash(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def count(code):
    st["codes"][code] = st["codes"].get(code, 0) + 1


def email_error(email):
    """Why an address is refused outright, or None (under the lock)."""
    if not EMAIL.fullmatch(email) or len(email) > 254:
        return "Please provide a valid email address."
    domain = email.rsplit("@", 1)[1].lower()
    fake = any(domain.endswith(d) if d.startswith(".") else domain == d for d in st["fake_domains"])
    if fake or email.lower() in st["reject"]:
        return "%s looks fake or invalid, please enter a real email address." % email
    return None


def merge_error(fields):
    """(tag, message) of the first invalid merge field, or None."""
    for tag, v in fields.items():
        if tag not in st["merge_fields"]:
            return tag, "This merge field does not exist in the audience."
        if isinstance(v, (dict, list)):
            return tag, "Please enter a valid value."
    return None


def take_fail_once(email):
    if email.lower() in st["fail_once"]:
        st["fail_once"].remove(email.lower())
        return True
    return False


def view(list_id, m):
    """A member as the API shows it (ListsPost)."""
    fields = {t: "" for t in st["merge_fields"]}
    fields.update(m["merge_fields"])
    base = "%s/3.0/lists/%s/members/%s" % (CONF["base"], list_id, m["id"])
    return {"id": m["id"], "email_address": m["email_address"], "unique_email_id": m["id"][:10],
            "contact_id": m["id"][::-1], "full_name": " ".join(v for v in (fields.get("FNAME"), fields.get("LNAME")) if v),
            "web_id": m["web_id"], "email_type": "html", "status": "archived" if m["archived"] else m["status"],
            "consents_to_one_to_one_messaging": True, "merge_fields": fields, "interests": {},
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0}, "ip_signup": "", "timestamp_signup": m["created"],
            "ip_opt": "", "timestamp_opt": m["created"], "member_rating": 2, "last_changed": m["changed"],
            "language": "", "vip": False, "email_client": "", "source": "API - Generic", "tags_count": 0,
            "tags": [], "list_id": list_id, "_links": [{"rel": "self", "href": base, "method": "GET"}]}


def links(path):
    return [{"rel": "self", "href": CONF["base"] + path, "method": "GET"}]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None, ctype="application/json; charset=utf-8", headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def problem(self, p):
        instance = str(uuid.uuid4())
        body = {"type": ERRORS_URL, "title": p.title, "status": p.status, "detail": p.detail, "instance": instance}
        if p.errors is not None:
            body["errors"] = p.errors
        with lock:
            count(str(p.status))
        self.send(p.status, body, "application/problem+json; charset=utf-8", dict(p.headers, **{"X-Request-Id": instance}))

    def do_GET(self):
        self.route(self.command)

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def route(self, method):
        url = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if url.path == "/_state" and method == "GET":
            return self.state()
        if url.path == "/_control" and method == "POST":
            return self.control(raw)
        path = url.path.rstrip("/")
        CONF["base"] = "http://127.0.0.1:%d" % self.server.server_address[1]
        if not path.startswith("/3.0/"):
            return self.problem(not_found())
        with lock:
            st["requests"] += 1
            st["max_bytes"] = max(st["max_bytes"], len(raw))
        try:
            self.authenticate()
            self.admit()
        except Problem as p:
            return self.problem(p)
        try:
            time.sleep(st["delay_ms"] / 1000.0)
            status, body = self.dispatch(method, path, url, raw)
        except Problem as p:
            return self.problem(p)
        finally:
            with lock:
                st["in_flight"] -= 1
        self.send(status, body)

    def authenticate(self):
        auth = self.headers.get("Authorization") or ""
        scheme, _, cred = auth.strip().partition(" ")
        if scheme.lower() != "basic" or not cred.strip():
            raise Problem(401, "API Key Invalid", "Your request did not include an API key.")
        try:
            _, sep, key = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep, key = "", ""
        if not sep or not key:
            raise Problem(401, "API Key Invalid", "Your request did not include an API key.")
        if key != CONF["api_key"]:
            raise Problem(401, "API Key Invalid",
                          "Your API key may be invalid, or you've attempted to access the wrong datacenter.")

    def admit(self):
        with lock:
            if st["in_flight"] >= st["concurrency"]:
                st["limited"] += 1
                raise Problem(429, "Too Many Requests",
                              "You have exceeded the limit of %d simultaneous connections." % st["concurrency"])
            st["in_flight"] += 1
            st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])

    def dispatch(self, method, path, url, raw):
        for rx, methods in ROUTES:
            m = rx.fullmatch(path)
            if m:
                break
        else:
            raise not_found()
        if method not in methods:
            raise Problem(405, "Method Not Allowed", "The requested method and resource are not compatible. "
                          "See the Allow header for this resource's available methods.",
                          headers={"Allow": ", ".join(sorted(methods))})
        return getattr(self, methods[method])([unquote(g) for g in m.groups()], url, raw)

    def json_object(self, raw):
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise Problem(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")
        if not isinstance(body, dict):
            raise invalid([("", "Schema describes object, %s found instead" % jtype(body))])
        return body

    @staticmethod
    def audience(list_id):
        """The list's store (under the lock), or 404."""
        if list_id not in st["lists"]:
            raise not_found()
        return st["lists"][list_id]

    @staticmethod
    def member_key(lst, ref):
        """The lowercased email a subscriber_hash (or an email) names, if a member."""
        if "@" in ref:
            return ref.lower() if ref.lower() in lst["members"] else None
        return next((k for k, m in lst["members"].items() if m["id"] == ref.lower()), None)

    # -- endpoints

    def ping(self, groups, url, raw):
        return 200, {"health_status": "Everything's Chimpy!"}

    def merge_fields(self, groups, url, raw):
        with lock:
            self.audience(groups[0])
            tags = list(st["merge_fields"])
        fields = [{"merge_id": i + 1, "tag": t, "name": t.title(), "type": "phone" if t == "PHONE" else "text",
                   "required": False, "default_value": "", "public": True, "display_order": i + 2,
                   "options": {"size": 25}, "help_text": "", "list_id": groups[0]} for i, t in enumerate(tags)]
        return 200, {"merge_fields": fields, "list_id": groups[0], "total_items": len(fields),
                     "_links": links("/3.0/lists/%s/merge-fields" % groups[0])}

    def batch(self, groups, url, raw):
        list_id = groups[0]
        with lock:
            self.audience(list_id)
        body = self.json_object(raw)
        members = body.get("members")
        if not isinstance(members, list):
            raise invalid([("members", "Schema describes array, %s found instead" % jtype(members))])
        with lock:
            st["max_items"] = max(st["max_items"], len(members))
        if len(members) > MAX_MEMBERS:
            raise invalid([("members", "Schema describes array with at most %d items, %d found instead"
                            % (MAX_MEMBERS, len(members)))])
        errs = []
        for i, item in enumerate(members):
            where = "members.item:%d" % i
            if not isinstance(item, dict):
                errs.append((where, "Schema describes object, %s found instead" % jtype(item)))
                continue
            if "email_address" not in item:
                errs.append((where, "Required property email_address is missing"))
            elif not isinstance(item["email_address"], str):
                errs.append((where + ".email_address", "Schema describes string, %s found instead"
                             % jtype(item["email_address"])))
            for k in ("status", "status_if_new"):
                if k in item and item[k] not in STATUSES:
                    errs.append((where + "." + k, "Value is not one of the enum values: " + ", ".join(STATUSES)))
            if "merge_fields" in item and not isinstance(item["merge_fields"], dict):
                errs.append((where + ".merge_fields", "Schema describes object, %s found instead"
                             % jtype(item["merge_fields"])))
        update = body.get("update_existing", False)
        if not isinstance(update, bool):
            errs.append(("update_existing", "Schema describes boolean, %s found instead" % jtype(update)))
        if errs:
            raise invalid(errs)
        skip_dup = parse_qs(url.query).get("skip_duplicate_check", ["false"])[0].lower() == "true"
        new, updated, errors, seen = [], [], [], set()
        with lock:
            lst = self.audience(list_id)
            for item in members:
                email = item["email_address"].strip()
                if email.lower() in seen and skip_dup:
                    continue
                seen.add(email.lower())
                result = self.subscribe(list_id, lst, email, item, update)
                if isinstance(result, dict):
                    count(result["error_code"])
                    errors.append(result)
                else:
                    (new if result[0] else updated).append(result[1])
        return 200, {"new_members": new, "updated_members": updated, "errors": errors, "total_created": len(new),
                     "total_updated": len(updated), "error_count": len(errors),
                     "_links": links("/3.0/lists/%s" % list_id)}

    @staticmethod
    def subscribe(list_id, lst, email, item, update):
        """One member of a batch (under the lock): (created, member view) or an error object."""
        def error(message, code="ERROR_GENERIC", field="", field_message=""):
            return {"email_address": email, "error": message, "error_code": code, "field": field,
                    "field_message": field_message}
        if email_error(email):
            return error(email_error(email))
        key = email.lower()
        if take_fail_once(email):
            return error("%s has signed up to a lot of lists very recently; we're not allowing more signups for now"
                         % email)
        fields = item.get("merge_fields") or {}
        bad = merge_error(fields)
        if bad:
            return error("Your merge fields were invalid.", field=bad[0], field_message=bad[1])
        fields = {t: "" if v is None else v if isinstance(v, str) else json.dumps(v) for t, v in fields.items()}
        m = lst["members"].get(key)
        stamp = now()
        if m and not m["archived"]:
            if not update:
                return error("%s is already a list member, do you want to update? please provide "
                             "update_existing:true in the request body" % email, "ERROR_CONTACT_EXISTS")
            m["status"] = item.get("status") or m["status"]
            m["merge_fields"].update(fields)
            m["changed"] = stamp
            return False, view(list_id, m)
        status = item.get("status_if_new") or item.get("status")
        if not status:
            return error("Please provide a status for %s." % email)
        if key in lst["forgotten"] and status != "pending":
            return error("%s was permanently deleted and cannot be re-imported. The contact must re-subscribe "
                         "to get back on the list." % email)
        lst["forgotten"].discard(key)
        if m is None:
            st["next_web_id"] += 1
            m = lst["members"][key] = {"id": subscriber_hash(email), "email_address": email, "merge_fields": {},
                                       "web_id": st["next_web_id"], "created": stamp}
        m.update(status=status, archived=False, changed=stamp)
        m["merge_fields"].update(fields)
        return True, view(list_id, m)

    def get_member(self, groups, url, raw):
        with lock:
            lst = self.audience(groups[0])
            key = self.member_key(lst, groups[1])
            if key is None:
                raise not_found()
            return 200, view(groups[0], lst["members"][key])

    def archive(self, groups, url, raw):
        with lock:
            lst = self.audience(groups[0])
            key = self.member_key(lst, groups[1])
            if key is None or lst["members"][key]["archived"]:
                raise not_found()
            self.fail_member(key)
            m = lst["members"][key]
            m["archived"], m["changed"] = True, now()
            self.leave_segments(groups[0], key)
        return 204, None

    def forget(self, groups, url, raw):
        with lock:
            lst = self.audience(groups[0])
            key = self.member_key(lst, groups[1])
            if key is None:
                raise not_found()
            self.fail_member(key)
            del lst["members"][key]
            lst["forgotten"].add(key)
            self.leave_segments(groups[0], key)
        return 204, None

    @staticmethod
    def fail_member(key):
        if take_fail_once(key):
            raise Problem(500, "Internal Server Error",
                          "An unexpected internal error has occurred. Please contact Support for more information.")

    @staticmethod
    def leave_segments(list_id, key):
        for seg in st["segments"].values():
            if seg["list_id"] == list_id:
                seg["members"].discard(key)

    def segment(self, groups, url, raw):
        list_id, seg_id = groups
        with lock:
            self.audience(list_id)
            seg = st["segments"].get(seg_id)
            if seg is None or seg["list_id"] != list_id:
                raise not_found("A Static Segment with an id of %s does not exist for this list." % seg_id)
        body = self.json_object(raw)
        errs, lists = [], {}
        for k in ("members_to_add", "members_to_remove"):
            v = body.get(k, [])
            if not isinstance(v, list) or not all(isinstance(e, str) for e in v):
                errs.append((k, "Schema describes array of strings, %s found instead" % jtype(v)))
                continue
            with lock:
                st["max_items"] = max(st["max_items"], len(v))
            if len(v) > MAX_MEMBERS:
                errs.append((k, "Schema describes array with at most %d items, %d found instead" % (MAX_MEMBERS, len(v))))
            lists[k] = [e.strip() for e in v]
        if errs:
            raise invalid(errs)
        added, removed, errors = [], [], {}
        with lock:
            lst = self.audience(list_id)
            for adding, email in [(True, e) for e in lists["members_to_add"]] + \
                                 [(False, e) for e in lists["members_to_remove"]]:
                m = lst["members"].get(email.lower())
                message = None
                if take_fail_once(email):
                    message = "Temporary error, please try again."
                elif m is None or m["archived"]:
                    message = "Email addresses are not members of this list."
                elif adding:
                    seg["members"].add(email.lower())
                    added.append(view(list_id, m))
                elif email.lower() in seg["members"]:
                    seg["members"].discard(email.lower())
                    removed.append(view(list_id, m))
                if message:
                    count("SEGMENT_ERROR")
                    errors.setdefault(message, []).append(email)
        errors = [{"email_addresses": v, "error": k} for k, v in errors.items()]
        return 200, {"members_added": added, "members_removed": removed, "errors": errors,
                     "total_added": len(added), "total_removed": len(removed),
                     "error_count": sum(len(e["email_addresses"]) for e in errors),
                     "_links": links("/3.0/lists/%s/segments/%s" % (list_id, seg_id))}

    # -- control

    def state(self):
        with lock:
            lists = {}
            for list_id, lst in st["lists"].items():
                members = {}
                for key, m in lst["members"].items():
                    members[key] = {"id": m["id"], "email_address": m["email_address"], "status": m["status"],
                                    "merge_fields": dict(m["merge_fields"]), "archived": m["archived"],
                                    "segments": sorted(s for s, seg in st["segments"].items() if key in seg["members"])}
                lists[list_id] = {"members": members, "forgotten": sorted(lst["forgotten"])}
            body = {"lists": lists,
                    "segments": {s: {"list_id": seg["list_id"], "members": sorted(seg["members"])}
                                 for s, seg in st["segments"].items()}}
            for k in ("requests", "limited", "max_items", "max_bytes", "max_in_flight", "codes", "concurrency",
                      "merge_fields"):
                body[k] = st[k]
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
                        st[k] = [str(v).strip().lower() for v in body[k]]
                if "delay_ms" in body:
                    st["delay_ms"] = max(0, int(body["delay_ms"]))
                if "concurrency" in body:
                    st["concurrency"] = max(1, int(body["concurrency"]))
                if "fake_domains" in body:
                    st["fake_domains"] = [str(d).lower() for d in body["fake_domains"]]
                if "merge_fields" in body:
                    st["merge_fields"] = [str(t) for t in body["merge_fields"]]
                if "api_key" in body:
                    CONF["api_key"] = str(body["api_key"])
                if body.get("reset"):
                    for lst in st["lists"].values():
                        lst["members"].clear()
                        lst["forgotten"].clear()
                    for seg in st["segments"].values():
                        seg["members"].clear()
                    st.update(requests=0, limited=0, max_items=0, max_bytes=0, max_in_flight=0, codes={})
        except (ValueError, TypeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--list", action="append", help="a list (audience) id that exists (repeatable; default a1b2c3d4e5)")
    ap.add_argument("--segment", action="append", metavar="LIST:SEGMENT_ID",
                    help="a static segment (repeatable; default 4501 on the first list)")
    args = ap.parse_args()
    CONF["api_key"] = args.api_key
    lists = args.list or ["a1b2c3d4e5"]
    st["lists"] = {i: {"members": {}, "forgotten": set()} for i in lists}
    for spec in args.segment or ["%s:4501" % lists[0]]:
        list_id, _, seg_id = spec.rpartition(":")
        if list_id not in st["lists"] or not seg_id.isdigit():
            ap.error("--segment %s: LIST:SEGMENT_ID, LIST one of the lists" % spec)
        st["segments"][seg_id] = {"list_id": list_id, "members": set()}
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
