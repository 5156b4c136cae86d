#!/usr/bin/python3
"""A local emulator of Meta's Marketing API custom audience users edges (Graph API), for tests.

Usage:
    /usr/bin/python3 test/emulators/meta.py --port-file FILE --access-token TOKEN
        [--audience 23851234567890123 ...] [--api-version v21.0] [--min-version v19.0]
        [--ad-account 100000000000001]
The connector's base url is http://127.0.0.1:PORT (Graph's is https://graph.facebook.com).

From Meta's reference for /{custom_audience_id}/users and /usersreplace (developers.facebook
.com/documentation/ads-commerce/marketing-api/reference/custom-audience/users, as copied into
public repositories), the Customer File Custom Audiences guide (.../audiences/guides/custom-
audiences), the rate-limiting page (developers.facebook.com/docs/marketing-apis/rate-limiting)
and the Business SDK (facebook/facebook-python-business-sdk: customaudience.py, helpers/
customaudiencemixin.py):
  POST   /{version}/{audience_id}/users          adds people;
  DELETE /{version}/{audience_id}/users          removes them (the SDK sends a DELETE's
         params in the query string, other clients in a JSON body: both are read);
  POST   /{version}/{audience_id}/usersreplace   replaces the audience's people, by session.
      Params (query string, form, multipart form or JSON body; payload and session may be
      JSON strings in a form): payload {"schema": "EMAIL_SHA256" | "PHONE_SHA256" |
      "MOBILE_ADVERTISER_ID" or an array of multi-key names EXTERN_ID EMAIL PHONE GEN DOBY
      DOBM DOBD LN FN FI CT ST ZIP MADID COUNTRY, "data": [[values in schema order]] (a key
      unknown for a person is left blank ""), "is_raw", "app_ids", ...}, required;
      session {"session_id" int64 ("needs to be unique in the same ad account"), "batch_seq"
      (1-based), "last_batch_flag" (true on the last request: "you must mark the last
      request"), "estimated_num_total"}; namespace.
      "only a maximum of 10000 at a time" (rows a request).
      Answer 200 {"audience_id": numeric string, "session_id": numeric string,
      "num_received": int, "num_invalid_entries": int, "invalid_entry_samples": {string:
      string}}.  Error codes listed: 100 Invalid parameter, 200, 2650 Failed to update the
      custom audience, 190 Invalid OAuth 2.0 Access Token, 2635 deprecated version of the Ads
      API, 105, 194, 368, and for DELETE 80003 "There have been too many calls to this
      ad-account. Wait a bit and try again. For more info, please refer to
      /docs/graph-api/overview/rate-limiting#custom-audience."
      An audience flagged with operation_status 471: 400 {"message": "Invalid parameter",
      "code": 100, "error_subcode": 1713230, "error_user_title": "Audience Upload Blocked",
      "error_user_msg": ...} (control "flag").
  Hashing (guide, "Hashing and Normalizing Data"; the SDK's normalize_key): SHA-256 hex of
      the normalised value for EMAIL PHONE GEN DOBY DOBM DOBD LN FN FI CT ST ZIP COUNTRY;
      EXTERN_ID and MADID are sent as they are (the SDK does not hash them).  GEN m|f, DOBY
      YYYY, DOBM MM 01-12, DOBD DD 01-31, COUNTRY 2-letter ISO lowercase.
  Rate (BUC, custom_audience): per ad account per hour, 5000 (development tier) or 190000
      (standard) + 40 x active custom audiences; here 5000 + 40 x audiences in a sliding hour.
      Headers: X-Business-Use-Case-Usage {"<id>": [{"type": "custom_audience", "call_count",
      "total_cputime", "total_time", "estimated_time_to_regain_access" (minutes)}]}.
From Graph answers recorded in public code (grouparoo's nock recordings of graph.facebook.com
v9.0/v10.0; Graph error bodies quoted in SDK issues and clients):
  - Errors are HTTP 400 {"error": {"message", "type", "code", "error_subcode",
    "fbtrace_id"}}, numbered messages prefixed "(#code) ".  Expired token: code 190, subcode
    463, "Error validating access token: Session has expired on ... The current time is
    ...", with header WWW-Authenticate: OAuth "Facebook Platform" "invalid_token" "<msg>".
    Unknown object: code 100, subcode 33, type GraphMethodException, "Unsupported post
    request. Object with ID '<id>' does not exist, cannot be loaded due to missing
    permissions, or does not support this operation. Please read the Graph API
    documentation at https://developers.facebook.com/docs/graph-api".  BUC throttling:
    code 8000x, subcode 2446079, type OAuthException, HTTP 400.  Transient: HTTP 500 code 2
    "is_transient": true.  (#2650) "Failed to update the custom audience: This audience was
    created from data source FILE_IMPORTED.MULTI_HASHES, which does not support data source
    FILE_IMPORTED.HASHES_OR_USER_IDS." (a single-key schema string on a multi-key audience).
  - num_received counts every row, invalid ones too; session_id is a numeric string, made
    up when the request has no session; invalid_entry_samples maps the invalid row, as
    compact JSON, to a reason: {'["<hash>","","<hash>"]': "empty external ID"} (EXTERN_ID in
    the schema and blank).  Graph answers carry facebook-api-version and x-fb-trace-id.

Where the documentation is silent, chosen as plausible:
  - Order: route (404 outside Graph paths), version (2635 older than --min-version; a
    version newer than --api-version or malformed: 2500 "Unknown path components"), token
    (104, 190), throttle (80003), injected 500, object (100/33), flag (1713230), params (100),
    session (100, 2650), rows.  No version in the path: the newest (the app's default).
  - Token: Authorization "Bearer"/"OAuth" header, else access_token in the query, else in
    the body.  None: 400 code 104 "An access token is required to request this resource."
    Unknown: 190 "Invalid OAuth access token - Cannot parse access token" (no subcode).  A
    token replaced by control access_token: 190 subcode 460.  Where it came from is counted.
  - Every authenticated call counts against the rate (those later refused too); 80003 ones
    do not, nor those refused for version or token.
    Every authenticated answer carries X-Business-Use-Case-Usage keyed by --ad-account.
  - Request-level 100s (messages this emulator's): payload or data missing, not JSON, not an
    object / array; an empty data; over 10000 rows; a schema key not documented (FN_SHA256,
    LN_SHA256 ... are refused: only EMAIL_SHA256 and PHONE_SHA256 exist, as single keys, and
    are also taken in arrays as EMAIL / PHONE; LOOKALIKE_VALUE, in the reference's example,
    is taken as a number and is not an identifier); a repeated key; a bad session; a session
    missing on usersreplace; a session_id reused for another audience or operation, expired,
    or ended (a batch_seq already seen in an ended session is a replay: accepted again).
  - Invalid rows (counted, listed in samples, not applied): wrong number of fields or a
    non-string value ("invalid entry"); a hashed key's value not 64 lowercase hex ("invalid
    hash for <KEY>"); every identifier blank ("empty entry"); EXTERN_ID blank ("empty
    external ID"); control reject ("invalid entry"); control fail_once, once ("entry could not
    be processed, please retry": no per-row transient error is documented).  A single-key
    schema's sample key is the value itself.  At most 10 samples (control max_samples).
  - A person is the row's non-blank identifiers, as a set of (KEY, value): adding the same
    again is a no-op; a DELETE removes the member equal to that row (no fuzzy matching).
    fail_once and reject match any identifier value of a row.  The audience's data source
    is set by its first accepted add (array schema MULTI_HASHES, string HASHES_OR_USER_IDS);
    the other kind then answers 2650 (observed one way, applied both ways).
  - usersreplace: rows received in a session are staged and replace all members when
    last_batch_flag arrives (the audience keeps its members, hence its size, meanwhile); a
    session not ended within 90 minutes (control session_timeout_s) expires and its staged
    rows are dropped (90 minutes: the guide, as recalled).  While a replace is in progress, /users on that audience and a second
    replace session answer 2650.  The answer names "account_id" (the --ad-account) instead of
    audience_id, as the guide's Replace Users example does (not confirmed in stored copies).
  - A request line over 64 KiB (a huge DELETE query string) is refused 414 by the server,
    like Graph's front end (SDK issues report DELETEs over 1-2K rows failing).
Not emulated: appsecret_proof, reading audiences or sessions, app_ids / page_ids semantics.

Control (no auth):
  GET  /_state   {"audiences": {id: {"members": [{KEY: value}], "size", "replacing",
                  "data_source"}}, "sessions": {session_id: {"audience", "op", "batches",
                  "last_batch_flag", "ended", "expired", "num_received",
                  "num_invalid_entries", "estimated_num_total"}}, "requests" (Graph calls),
                  "admitted" (counted against the rate), "limited" (80003 given),
                  "max_items" (most rows in a request), "max_bytes" (largest body + query),
                  "codes": {graph code: n}, "invalid": {reason: n}, "plaintext" (values
                  under hashed keys that are not 64-hex), "received": {KEY: [every distinct
                  value]}, "unnormalized": {KEY: n} (hashes of "" and, for GEN DOBY DOBM
                  DOBD COUNTRY, hashes outside the normalised domain), "auth_via": {header |
                  query | body: n}, "versions": {version: n}}
  POST /_control {"expire_token": true, "access_token": new, "fail_once": [values],
                  "reject": [values], "delay_ms": n, "rate": n | null, "window": s,
                  "throttle": n (next n calls 80003), "server_error": n (next n calls 500),
                  "flag": [audience ids], "session_timeout_s": s, "max_samples": n}: {"ok": true}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import datetime
import email.parser
import email.policy
import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from serve import serve

HASHED = ("EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "COUNTRY")
PLAIN = ("EXTERN_ID", "MADID")
SINGLE = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID"}
VALUES = ("LOOKALIKE_VALUE",)
MAX_ROWS, WINDOW, TIMEOUT = 10000, 3600.0, 5400.0
HEX64 = re.compile(r"[0-9a-f]{64}")
ANYHEX64 = re.compile(r"[0-9a-fA-F]{64}")
MULTI = "MULTI_HASHES"
SINGLE_SOURCE = "HASHES_OR_USER_IDS"


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


EMPTY_HASH = sha("")
DOMAINS = {"GEN": {sha(v) for v in ("m", "f")},
           "DOBY": {sha(str(y)) for y in range(1900, datetime.date.today().year + 1)},
           "DOBM": {sha("%02d" % m) for m in range(1, 13)},
           "DOBD": {sha("%02d" % d) for d in range(1, 32)},
           "COUNTRY": {sha(a + b) for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"}}

lock = threading.Lock()
st = {"audiences": {}, "sessions": {}, "requests": 0, "admitted": 0, "limited": 0, "max_items": 0,
      "max_bytes": 0, "codes": {}, "invalid": {}, "plaintext": 0, "received": {}, "unnormalized": {},
      "auth_via": {}, "versions": {}, "times": deque(), "expired": False, "old_tokens": set(),
      "rate": None, "window": WINDOW, "throttle": 0, "server_error": 0, "fail_once": set(),
      "reject": set(), "delay_ms": 0, "flagged": set(), "timeout": TIMEOUT, "max_samples": 10}
CONF = {}


class GraphError(Exception):
    """An error answer: HTTP status, the error object, extra headers."""

    def __init__(self, code, message, subcode=None, status=400, etype="OAuthException", headers=None, **extra):
        super().__init__(message)
        self.status, self.headers = status, headers or []
        self.error = {"message": message, "type": etype, "code": code}
        if subcode is not None:
            self.error["error_subcode"] = subcode
        self.error.update(extra)


def bad(message):
    return GraphError(100, "(#100) " + message)


def bump(table, key, n=1):
    table[key] = table.get(key, 0) + n


def version_tuple(v):
    m = re.fullmatch(r"v(\d+)\.(\d+)", v or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def limit():
    return st["rate"] if st["rate"] is not None else 5000 + 40 * len(st["audiences"])


def usage(now, limited=False):
    """The X-Business-Use-Case-Usage header, under the lock."""
    times, lim = st["times"], max(1, limit())
    pct = 100 if limited else min(100, math.ceil(100.0 * len(times) / lim))
    wait = 0
    if limited:
        wait = max(1, math.ceil((times[0] + st["window"] - now) / 60.0)) if len(times) >= lim and times else 1
    return json.dumps({CONF["ad_account"]: [{"type": "custom_audience", "call_count": pct, "total_cputime": min(pct, 1),
                                             "total_time": min(pct, 1), "estimated_time_to_regain_access": wait}]})


def expire_sessions(now):
    for sid, s in st["sessions"].items():
        if not s["ended"] and not s["expired"] and now - s["started"] > st["timeout"]:
            s["expired"] = True
            s["staged"] = set()
            aud = st["audiences"].get(s["audience"])
            if aud and aud["replacing"] == sid:
                aud["replacing"] = None


def parse_schema(payload):
    """(keys, single) from the payload, or a GraphError."""
    schema = payload.get("schema")
    if isinstance(schema, str):
        if schema not in SINGLE:
            raise bad("Invalid schema: %s is not a supported schema" % schema)
        return [SINGLE[schema]], True
    if not isinstance(schema, list) or not schema or not all(isinstance(k, str) for k in schema):
        raise bad("The parameter payload.schema is required: a schema name or an array of key names")
    keys = []
    for k in schema:
        name = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE"}.get(k, k)
        if name not in HASHED + PLAIN + VALUES:
            raise bad("Invalid schema: %s is not a supported key" % k)
        if name in keys:
            raise bad("Invalid schema: %s appears twice" % k)
        keys.append(name)
    if all(k in VALUES for k in keys):
        raise bad("Invalid schema: no identifier key")
    return keys, False


def check_row(keys, single, row):
    """(member or None, reason, sample key) for one row, under the lock."""
    if single and isinstance(row, (str, int)) and not isinstance(row, bool):
        row = [row]
        sample = str(row[0])
    else:
        sample = json.dumps(row, separators=(",", ":"), ensure_ascii=False)
    if not isinstance(row, list) or len(row) != len(keys):
        return None, "invalid entry", sample
    member, reason = [], None
    for k, v in zip(keys, row):
        if k in VALUES:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                reason = reason or "invalid entry"
            continue
        if isinstance(v, int) and not isinstance(v, bool) and k in PLAIN:
            v = str(v)
        if not isinstance(v, str):
            st["plaintext"] += k in HASHED and isinstance(v, (int, float)) and not isinstance(v, bool)
            reason = reason or "invalid entry"
            continue
        if v == "":
            if k == "EXTERN_ID":
                reason = reason or "empty external ID"
            continue
        st["received"].setdefault(k, set()).add(v)
        if k in HASHED:
            if not HEX64.fullmatch(v):
                st["plaintext"] += not ANYHEX64.fullmatch(v)
                reason = reason or "invalid hash for %s" % k
                continue
            if v == EMPTY_HASH or (k in DOMAINS and v not in DOMAINS[k]):
                bump(st["unnormalized"], k)
        elif k == "MADID" and v != v.lower():
            bump(st["unnormalized"], k)
        member.append((k, v))
    if reason is None and not member:
        reason = "empty entry"
    values = {v for _, v in member}
    if reason is None and values & st["reject"]:
        reason = "invalid entry"
    if reason is None and values & st["fail_once"]:
        st["fail_once"] -= values
        reason = "entry could not be processed, please retry"
    return (None if reason else tuple(sorted(member))), reason, sample


def json_param(params, name, required):
    v = params.get(name)
    if v is None or v == "":
        if required:
            raise bad("The parameter %s is required" % name)
        return None
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise bad("Invalid parameter: %s must be a JSON-encoded object" % name)
    if not isinstance(v, dict):
        raise bad("Invalid parameter: %s must be an object" % name)
    return v


def int_field(d, name, required, minimum):
    v = d.get(name)
    if v is None:
        if required:
            raise bad("The parameter session.%s is required" % name)
        return None
    if isinstance(v, str) and re.fullmatch(r"\d+", v):
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise bad("Invalid parameter: session.%s must be an integer of at least %d" % (name, minimum))
    return v


def check_session(session, replace):
    if session is None:
        return None
    sid = int_field(session, "session_id", True, 1)
    seq = int_field(session, "batch_seq", True, 1)
    last = session.get("last_batch_flag", False)
    if isinstance(last, str) and last.lower() in ("true", "false", "1", "0"):
        last = last.lower() in ("true", "1")
    if not isinstance(last, bool):
        raise bad("Invalid parameter: session.last_batch_flag must be a boolean")
    if replace and "last_batch_flag" not in session:
        raise bad("The parameter session.last_batch_flag is required")
    return {"session_id": sid, "batch_seq": seq, "last_batch_flag": last,
            "estimated_num_total": int_field(session, "estimated_num_total", False, 0)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.route(self.command)

    do_POST = do_DELETE = do_PUT = do_GET

    def route(self, method):
        url = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if url.path == "/_state" and method == "GET":
            return self.state()
        if url.path == "/_control" and method == "POST":
            return self.control(raw)
        m = re.fullmatch(r"/(?:([^/]+)/)?([0-9]+)(?:/([A-Za-z_]+))?/?", url.path)
        if not m:
            return self.send(404, {"error": {"message": "Unknown path", "type": "GraphMethodException", "code": 100}})
        self.graph(method, url, raw, m)

    # -- Graph

    def params(self, url, raw):
        """The request's params (query, then body) and a body error to raise after auth, if any."""
        params = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if not raw:
            return params, None
        try:
            if ctype == "application/json":
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("not an object")
                params.update(body)
            elif ctype == "multipart/form-data":
                msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name:
                        params[name] = part.get_payload(decode=True).decode("utf-8", "replace")
            else:
                params.update({k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()})
        except (ValueError, UnicodeDecodeError) as e:
            return params, bad("Invalid request body: %s" % e)
        return params, None

    def token(self, params):
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() in ("bearer", "oauth") and value.strip():
            return value.strip(), "header"
        if params.get("access_token"):
            return str(params["access_token"]), "query" if "access_token" in parse_qs(urlsplit(self.path).query) else "body"
        return None, None

    def authenticate(self, params):
        token, via = self.token(params)
        with lock:
            if via:
                bump(st["auth_via"], via)
            if token == CONF["token"] and not st["expired"]:
                return
            expired, old = token == CONF["token"], token in st["old_tokens"]
        if token is None:
            msg, err = "An access token is required to request this resource.", GraphError(104, "")
            kind = "invalid_request"
        elif expired:
            now = datetime.datetime.now(datetime.timezone.utc)
            msg = ("Error validating access token: Session has expired on %s. The current time is %s." % tuple(
                t.strftime("%A, %d-%b-%y %H:%M:%S UTC") for t in (now - datetime.timedelta(minutes=5), now)))
            err, kind = GraphError(190, "", 463), "invalid_token"
        elif old:
            msg = ("Error validating access token: The session has been invalidated because the user changed their "
                   "password or Facebook has changed the session for security reasons.")
            err, kind = GraphError(190, "", 460), "invalid_token"
        else:
            msg, err, kind = "Invalid OAuth access token - Cannot parse access token", GraphError(190, ""), "invalid_token"
        err.error["message"] = msg
        err.headers = [("WWW-Authenticate", 'OAuth "Facebook Platform" "%s" "%s"' % (kind, msg))]
        raise err

    def admit(self, now):
        """Count the call against the BUC window, or raise 80003; the usage header."""
        with lock:
            times = st["times"]
            while times and now - times[0] >= st["window"]:
                times.popleft()
            if st["throttle"] > 0 or len(times) >= limit():
                st["throttle"] = max(0, st["throttle"] - 1)
                st["limited"] += 1
                header = usage(now, True)
                raise GraphError(80003, "(#80003) There have been too many calls to this ad-account. Wait a bit and try "
                                 "again. For more info, please refer to https://developers.facebook.com/docs/graph-api/"
                                 "overview/rate-limiting#custom-audience.", 2446079,
                                 headers=[("X-Business-Use-Case-Usage", header)])
            times.append(now)
            st["admitted"] += 1
            header = usage(now)
            if st["server_error"] > 0:
                st["server_error"] -= 1
                raise GraphError(2, "An unexpected error has occurred. Please retry your request later.", status=500,
                                 is_transient=True, headers=[("X-Business-Use-Case-Usage", header)])
        return header

    def graph(self, method, url, raw, m):
        version, obj, edge = m.group(1), m.group(2), m.group(3)
        trace = "A" + secrets.token_urlsafe(16)[:22]
        headers = [("x-fb-trace-id", trace[:11]), ("facebook-api-version", version or CONF["newest"])]
        with lock:
            st["requests"] += 1
            st["max_bytes"] = max(st["max_bytes"], len(raw) + len(url.query))
            bump(st["versions"], version or "(none)")
        try:
            params, body_error = self.params(url, raw)
            if str(params.get("method", "")).upper() in ("POST", "DELETE", "GET"):
                method = str(params["method"]).upper()
            vt = version_tuple(version) if version else CONF["newest_t"]
            if vt is None or vt > CONF["newest_t"]:
                raise GraphError(2500, "Unknown path components: /%s/%s" % (obj, edge or ""))
            if vt < CONF["oldest_t"]:
                raise GraphError(2635, "(#2635) You are calling a deprecated version of the Ads API. Please update to "
                                 "the latest version: %s." % CONF["newest"])
            self.authenticate(params)
            headers.append(("X-Business-Use-Case-Usage", self.admit(time.time())))
            if obj not in st["audiences"] or (edge, method) not in (("users", "POST"), ("users", "DELETE"),
                                                                   ("usersreplace", "POST")):
                raise GraphError(100, "Unsupported %s request. Object with ID '%s' does not exist, cannot be loaded due "
                                 "to missing permissions, or does not support this operation. Please read the Graph API "
                                 "documentation at https://developers.facebook.com/docs/graph-api" % (method.lower(), obj),
                                 33, etype="GraphMethodException")
            if obj in st["flagged"]:
                raise GraphError(100, "Invalid parameter", 1713230, error_user_title="Audience Upload Blocked",
                                 error_user_msg="Before updating user memberships, you must resolve integrity restrictions "
                                 "on this Data File Custom Audience. Go to Audience Manager to appeal the restrictions or "
                                 "create a new audience with updated data")
            if body_error:
                raise body_error
            op = "replace" if edge == "usersreplace" else ("add" if method == "POST" else "remove")
            body = self.upload(obj, op, params)
        except GraphError as e:
            with lock:
                bump(st["codes"], str(e.error["code"]))
            e.error["fbtrace_id"] = trace
            time.sleep(st["delay_ms"] / 1000.0)
            return self.send(e.status, {"error": e.error}, headers + e.headers)
        time.sleep(st["delay_ms"] / 1000.0)
        self.send(200, body, headers)

    def upload(self, aid, op, params):
        payload = json_param(params, "payload", True)
        data = payload.get("data")
        if isinstance(data, list):
            with lock:
                st["max_items"] = max(st["max_items"], len(data))
        keys, single = parse_schema(payload)
        if not isinstance(data, list) or not data:
            raise bad("The parameter payload.data is required: a non-empty array")
        if len(data) > MAX_ROWS:
            raise bad("Too many entries: %d, at most %d a request" % (len(data), MAX_ROWS))
        session = check_session(json_param(params, "session", op == "replace"), op == "replace")
        now = time.time()
        with lock:
            aud = st["audiences"][aid]
            expire_sessions(now)
            source = SINGLE_SOURCE if single else MULTI
            if op != "remove" and aud["data_source"] not in (None, source):
                raise GraphError(2650, "(#2650) Failed to update the custom audience: This audience was created from data "
                                 "source FILE_IMPORTED.%s, which does not support data source FILE_IMPORTED.%s."
                                 % (aud["data_source"], source))
            sid = session["session_id"] if session else None
            s = st["sessions"].get(sid) if session else None
            if aud["replacing"] is not None and (op != "replace" or aud["replacing"] != sid):
                raise GraphError(2650, "(#2650) Failed to update the custom audience: a replace operation is in progress "
                                 "for this audience (session %s)" % aud["replacing"])
            if s is not None:
                if s["audience"] != aid or s["op"] != op:
                    raise bad("Invalid parameter: session_id %s is in use by another upload" % sid)
                if s["expired"]:
                    raise bad("Invalid parameter: the upload session %s has expired" % sid)
                if s["ended"] and session["batch_seq"] not in s["batches"]:
                    raise bad("Invalid parameter: the upload session %s has already ended" % sid)
            elif session:
                s = st["sessions"][sid] = {"audience": aid, "op": op, "batches": [], "last_batch_flag": False,
                                           "ended": False, "expired": False, "num_received": 0,
                                           "num_invalid_entries": 0, "started": now, "staged": set(),
                                           "estimated_num_total": session["estimated_num_total"]}
                if op == "replace":
                    aud["replacing"] = sid
            valid, samples, invalid = [], {}, 0
            for row in data:
                member, reason, sample = check_row(keys, single, row)
                if member is None:
                    invalid += 1
                    bump(st["invalid"], reason)
                    if len(samples) < st["max_samples"]:
                        samples[sample] = reason
                else:
                    valid.append(member)
            if op != "remove" and valid:
                aud["data_source"] = aud["data_source"] or source
            if s is not None:
                replay = s["ended"]
                s["batches"].append(session["batch_seq"])
                s["num_received"] += len(data)
                s["num_invalid_entries"] += invalid
                if session["last_batch_flag"]:
                    s["last_batch_flag"] = True
            if op == "add" or (op == "replace" and replay):
                aud["members"].update(valid)
            elif op == "remove":
                aud["members"].difference_update(valid)
            else:
                s["staged"].update(valid)
            if s is not None and session["last_batch_flag"] and not s["ended"]:
                s["ended"] = True
                if op == "replace":
                    aud["members"], s["staged"], aud["replacing"] = s["staged"], set(), None
        answer = {"audience_id": aid} if op != "replace" else {"account_id": CONF["ad_account"]}
        answer.update(session_id=str(sid if session else secrets.randbits(62)), num_received=len(data),
                      num_invalid_entries=invalid, invalid_entry_samples=samples)
        return answer

    # -- control

    def state(self):
        with lock:
            now = time.time()
            expire_sessions(now)
            body = {"audiences": {aid: {"members": [dict(m) for m in sorted(a["members"])], "size": len(a["members"]),
                                        "replacing": None if a["replacing"] is None else str(a["replacing"]),
                                        "data_source": a["data_source"]}
                                  for aid, a in st["audiences"].items()},
                    "sessions": {str(sid): {k: v for k, v in s.items() if k not in ("staged", "started")}
                                 for sid, s in st["sessions"].items()},
                    "received": {k: sorted(v) for k, v in st["received"].items()}}
            for k in ("requests", "admitted", "limited", "max_items", "max_bytes", "codes", "invalid", "plaintext",
                      "unnormalized", "auth_via", "versions"):
                body[k] = st[k]
            body = json.loads(json.dumps(body))  # a snapshot
        self.send(200, body)

    def control(self, raw):
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                if body.get("expire_token"):
                    st["expired"] = True
                if body.get("access_token"):
                    st["old_tokens"].add(CONF["token"])
                    CONF["token"], st["expired"] = str(body["access_token"]), False
                for key in ("fail_once", "reject"):
                    if key in body:
                        st[key] = {str(v) for v in body[key]}
                if "flag" in body:
                    st["flagged"] = {str(v) for v in body["flag"]}
                for key, name in (("delay_ms", "delay_ms"), ("throttle", "throttle"), ("server_error", "server_error"),
                                  ("max_samples", "max_samples")):
                    if key in body:
                        st[name] = max(0, int(body[key]))
                if "rate" in body:
                    st["rate"] = None if body["rate"] is None else max(0, int(body["rate"]))
                if "window" in body:
                    st["window"] = max(0.001, float(body["window"]))
                if "session_timeout_s" in body:
                    st["timeout"] = max(0.0, float(body["session_timeout_s"]))
        except (ValueError, TypeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--access-token", required=True)
    ap.add_argument("--audience", action="append", help="a custom audience id that exists (repeatable)")
    ap.add_argument("--api-version", default="v21.0", help="the newest version served")
    ap.add_argument("--min-version", default="v19.0", help="the oldest version still served")
    ap.add_argument("--ad-account", default="100000000000001", help="the ad account id (usage header, replace answers)")
    args = ap.parse_args()
    newest, oldest = version_tuple(args.api_version), version_tuple(args.min_version)
    if newest is None or oldest is None or oldest > newest:
        ap.error("versions are vNN.N, --min-version not after --api-version")
    CONF.update(token=args.access_token, newest=args.api_version, newest_t=newest, oldest_t=oldest,
                ad_account=args.ad_account)
    for aid in args.audience or ["23851234567890123"]:
        st["audiences"][aid] = {"members": set(), "data_source": None, "replacing": None}
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
