#!/usr/bin/python3
"""A local emulator of Google Ads Customer Match (OfflineUserDataJobService, REST) and its token endpoint.

Usage:
    /usr/bin/python3 test/emulators/google_ads.py --port-file FILE --client-id ID
        --client-secret SECRET --refresh-token RT --developer-token TOKEN
        --login-customer-id MANAGER --customer-id CLIENT [--user-list ID ...]
        [--api-version v19] [--job-steps 3] [--token-lifetime 3599]

From developers.google.com/google-ads/api (REST reference of customers.offlineUserDataJobs,
customers.googleAds.search, customers.operations.get; the Customer Match guide and its
troubleshooting page; Quotas; Rate limits; Understand API errors), the v18/v19 protos in
googleapis/googleapis (google/ads/googleads: services/offline_user_data_job_service,
common/offline_user_data, resources/offline_user_data_job, errors/*), google-ads-python's
examples/remarketing/add_customer_match_user_list.py, developers.google.com/identity:
  POST /token (oauth2.googleapis.com/token), form grant_type=refresh_token, client_id,
      client_secret, refresh_token: 200 {"access_token", "expires_in", "scope", "token_type":
      "Bearer"}, a new token each time; else {"error", "error_description"}: invalid_grant 400
      ("Token has been expired or revoked."), invalid_client 401, invalid_request 400.
  API calls: "Authorization: Bearer", "developer-token", "login-customer-id" (the manager,
      digits).  Errors: HTTP status + {"error": {"code", "message", "status", "details":
      [{"@type": "type.googleapis.com/google.ads.googleads.<v>.errors.GoogleAdsFailure",
      "errors": [{"errorCode": {"<kind>": "<CODE>"}, "message", "location":
      {"fieldPathElements": [{"fieldName", "index"}]}}], "requestId"}]}}.  No token: 401
      UNAUTHENTICATED; expired: 401 with ErrorInfo ACCESS_TOKEN_EXPIRED (google.rpc).
      developer-token missing: requestError DEVELOPER_TOKEN_PARAMETER_MISSING; wrong: 401
      authenticationError DEVELOPER_TOKEN_INVALID (from v19).  Manager not in login-customer-id:
      403 PERMISSION_DENIED, USER_PERMISSION_DENIED; dashes in it: headerError
      INVALID_LOGIN_CUSTOMER_ID (googleads/google-ads-php #591).
  POST /{v}/customers/{cid}/offlineUserDataJobs:create {"job": {"type": "CUSTOMER_MATCH_USER_LIST",
      "customerMatchUserListMetadata": {"userList": "customers/{cid}/userLists/{id}", "consent":
      {"adUserData", "adPersonalization"}}, "externalId"}} -> {"resourceName":
      "customers/{cid}/offlineUserDataJobs/{id}"}; INVALID_USER_LIST_ID,
      EXTERNAL_UPDATE_ID_ALREADY_EXISTS.
  POST .../offlineUserDataJobs/{id}:addOperations {"operations": [{"create" | "remove":
      {"userIdentifiers": [{"hashedEmail" | "hashedPhoneNumber" | "addressInfo":
      {"hashedFirstName", "hashedLastName", "countryCode", "postalCode"}}]}} | {"removeAll":
      true}], "enablePartialFailure", "enableWarnings", "validateOnly"} -> {} |
      {"partialFailureError": a google.rpc.Status whose GoogleAdsFailure locates operations[i]} (without
      enablePartialFailure one bad operation fails the call, 400, nothing added) | {"warning"}.
      offlineUserDataJobError: INVALID_SHA256_FORMAT (SHA-256 hex of the normalised value),
      TOO_MANY_USER_IDENTIFIERS (20 an operation; over 100,000 a request fails the call),
      MISSING_USER_IDENTIFIER, CONFLICTING_OPERATION (create and remove in one job),
      INVALID_OPERATION_ORDER (removeAll first), CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS
      (creates when the job's consent has DENIED), JOB_ALREADY_STARTED (after :run); warning
      OPERATION_LEVEL_CONSENT_PROVIDED.  A UserIdentifier is a oneof.
  POST .../offlineUserDataJobs/{id}:run -> a long-running Operation {"name":
      "customers/{cid}/operations/{id}", "metadata"}; GET /{v}/customers/{cid}/operations/{id}
      -> it, "done" once the job ended.  Another job of the list running: databaseError
      CONCURRENT_MODIFICATION (troubleshooting page).
  The job has no GET in REST ("results ... can only be read using GoogleAdsService.Search/
      SearchStream"): POST /{v}/customers/{cid}/googleAds:search (:searchStream answers an array)
      {"query": "SELECT offline_user_data_job.status, ... FROM offline_user_data_job WHERE
      offline_user_data_job.resource_name = '...'"} -> {"results": [{"offlineUserDataJob":
      {...}}], "fieldMask", "requestId"}, no "results" when empty (proto3 JSON); pageSize:
      PAGE_SIZE_NOT_SUPPORTED.  PENDING -> RUNNING -> SUCCESS | FAILED (failureReason); members
      change at SUCCESS; a job run with no operations succeeds.
  JSON: snake_case names are accepted too (proto3 JSON); an unknown one: 400 "Invalid JSON
      payload received. Unknown name ..." with a google.rpc.BadRequest.
  Quotas: daily operations (Basic access 15,000; addOperations counts one) -> 429, quotaError
      RESOURCE_EXHAUSTED; the account rate (token bucket, QPS unpublished) -> 429, quotaError
      RESOURCE_TEMPORARILY_EXHAUSTED; details.quotaErrorDetails {"rateScope", "rateName",
      "retryDelay"}.  No Retry-After is documented; none is sent.

Where the documentation is silent, chosen as plausible:
  - v19 by default (the first with DEVELOPER_TOKEN_INVALID); another version, path or method:
    404 text/html, as Google's front end answers.
  - 400 INVALID_ARGUMENT for request, header, field, job and CONCURRENT_MODIFICATION errors
    (a capture in rudderlabs/rudder-transformer shows 400 for the last); an unknown access
    token: 401 without details.  Other job types than CUSTOMER_MATCH_USER_LIST: INVALID_VALUE.
  - Order: path; token; developer-token; login-customer-id; customer (not digits:
    INVALID_CUSTOMER_ID; another than --customer-id, the manager included:
    USER_PERMISSION_DENIED); rate; body.  A refused call is not counted against the rate.
  - Rate 100 calls a 1 s window (tunable); daily operations unlimited (Standard access) unless
    set.  A body over 64 MiB: 413.
  - A hash is lowercase 64-hex, else INVALID_SHA256_FORMAT (counted in "plaintext").
    addressInfo needs all four fields (as the python example), else MISSING_USER_IDENTIFIER;
    its city, state, hashedStreetAddress are ignored.  mobileId, thirdPartyUserId:
    INCOMPATIBLE_UPLOAD_KEY_TYPE (CONTACT_INFO lists).  Every error of an operation is listed;
    partialFailureError.code 3 (13 if all are internal).  removeAll must open the job.
  - A run job ends at its --job-steps-th status check (a search row or an operations.get);
    FAILED applies nothing, its Operation has error {"code": 2}.  Members are keys: the hex of
    hashedEmail / hashedPhoneNumber, "address:<fn>:<ln>:<CC>:<postal>" for an address.
  - GAQL: FROM offline_user_data_job only (else PROHIBITED_RESOURCE_TYPE_IN_FROM_CLAUSE),
    "field = v" / "field IN (...)" joined by AND, LIMIT; selected fields always present.
  - fail_once: the operation holding that key fails once with internalError TRANSIENT_ERROR;
    reject: it fails every time with MISSING_USER_IDENTIFIER.

Control (no auth):
  GET  /_state   {"lists": {id: {"resourceName", "members": [keys], "size"}}, "jobs":
                  {resourceName: {"id", "userList", "status", "failureReason", "consent",
                  "externalId", "creates", "removes", "removeAll", "identifiers", "checks",
                  "operation"}}, "requests" (API calls), "calls": {method: n}, "token_requests",
                  "tokens_issued", "limited" (429s), "max_items" (identifiers in one
                  addOperations), "max_operations", "max_bytes", "codes": {code: n},
                  "plaintext", "secret_seen" (API calls carrying the client secret or refresh
                  token; token calls with them in the URL), "daily_ops_used"}
  POST /_control {"fail_once": [keys], "reject": [keys], "delay_ms": n, "rate": n, "window": s,
                  "exhaust": n (the next n calls: 429), "daily_ops": n | null, "fail_job_once":
                  true | reason, "stall": bool (running jobs stay RUNNING, so others of their
                  list cannot run), "job_steps": n, "expire_token": true (every token issued),
                  "revoke_refresh_token": bool, "reset": true (lists, jobs, counters)} -> {"ok": true}
  secret_seen looks for the secrets' text: give distinctive ones.

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import base64
import json
import re
import secrets
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from serve import serve

HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_IDS, MAX_IDS_OP, MAX_BODY = 100000, 20, 64 * 1024 * 1024
API = re.compile(r"/(v\d+)/customers/([^/]+)/(?:(offlineUserDataJobs:create)|offlineUserDataJobs/([^/:]+):"
                 r"(addOperations|run)|googleAds:(search|searchStream)|operations/([^/]+))")
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}
AUTH_HINT = ("Expected OAuth 2 access token, login cookie or other valid authentication credential. See "
             "https://developers.google.com/identity/sign-in/web/devconsole-project.")
MESSAGES = {"INVALID_ARGUMENT": "Request contains an invalid argument.",
            "PERMISSION_DENIED": "The caller does not have permission",
            "RESOURCE_EXHAUSTED": "Resource has been exhausted (e.g. check quota).",
            "UNAUTHENTICATED": "Request had invalid authentication credentials. " + AUTH_HINT}
J = "offlineUserDataJobError"
ERRORS = {  # code: (kind, message), the messages being the enums' descriptions
    "REQUIRED": ("fieldError", "The required field was not present."),
    "INVALID_VALUE": ("fieldError", "The field's value is invalid."),
    "REQUIRED_NONEMPTY_LIST": ("fieldError", "The required repeated field was empty."),
    "DEVELOPER_TOKEN_PARAMETER_MISSING": ("requestError", "The developer-token parameter is required for all "
                                          "requests."),
    "INVALID_CUSTOMER_ID": ("requestError", "Customer ID is invalid."),
    "RESOURCE_NOT_FOUND": ("requestError", "Requested resource not found."),
    "OPERATION_REQUIRED": ("requestError", "Mutate operation should have either create, update, or remove specified."),
    "PAGE_SIZE_NOT_SUPPORTED": ("requestError", "Setting the page size is not supported, and will be unavailable "
                                "in a future version."),
    "DEVELOPER_TOKEN_INVALID": ("authenticationError", "The developer token is not valid."),
    "INVALID_LOGIN_CUSTOMER_ID": ("headerError", "The login customer ID could not be validated."),
    "USER_PERMISSION_DENIED": ("authorizationError", "User doesn't have permission to access customer. Note: If "
                               "you're accessing a client customer, the manager's customer ID must be set in the "
                               "`login-customer-id` header. Learn more at https://developers.google.com/google-ads/"
                               "api/docs/concepts/call-structure#cid"),
    "RESOURCE_TEMPORARILY_EXHAUSTED": ("quotaError", "Too many requests in a short amount of time."),
    "RESOURCE_EXHAUSTED": ("quotaError", "Too many requests."),
    "CONCURRENT_MODIFICATION": ("databaseError", "Multiple requests were attempting to modify the same resource at "
                                "once. Retry the request."),
    "TRANSIENT_ERROR": ("internalError", "Google Ads API encountered an unexpected transient error. The user should "
                        "retry their request in these cases."),
    "INVALID_USER_LIST_ID": (J, "The user list ID provided for the job is invalid."),
    "EXTERNAL_UPDATE_ID_ALREADY_EXISTS": (J, "The external update ID already exists."),
    "MISSING_USER_IDENTIFIER": (J, "The user identifier is missing valid data."),
    "INCOMPATIBLE_UPLOAD_KEY_TYPE": (J, "Upload data is not compatible with the upload key type of the associated "
                                     "user list."),
    "INVALID_SHA256_FORMAT": (J, "The SHA256 encoded value is malformed."),
    "INVALID_COUNTRY_CODE": (J, "The country code is invalid."),
    "TOO_MANY_USER_IDENTIFIERS": (J, "Maximum number of user identifiers allowed per request is 100,000 and per "
                                  "operation is 20."),
    "INVALID_OPERATION_ORDER": (J, "When a remove-all operation is provided, it has to be the first operation of "
                                "the operation list."),
    "CONFLICTING_OPERATION": (J, "Mixing creation and removal of offline data in the same job is not allowed."),
    "JOB_ALREADY_STARTED": (J, "Once the upload job is started, new operations cannot be added."),
    "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS": (J, "The customer has not accepted the customer data terms in the "
                                                  "conversion settings page."),
    "ATTRIBUTES_NOT_APPLICABLE_FOR_CUSTOMER_MATCH_USER_LIST": (J, "User attributes cannot be uploaded into a user "
                                                               "list."),
    "OPERATION_LEVEL_CONSENT_PROVIDED": (J, "Consent was provided at the operation level for an "
                                         "OfflineUserDataJobType that expects it at the job level. The provided "
                                         "operation-level consent will be ignored."),
    "QUERY_ERROR": ("queryError", "Returned if all other query error reasons are not applicable."),
    "UNRECOGNIZED_FIELD": ("queryError", "Query contains one or more unrecognized fields."),
    "PROHIBITED_RESOURCE_TYPE_IN_FROM_CLAUSE": ("queryError", "Resource type specified in the FROM clause is not "
                                                "supported by this service.")}
FIELDS = {k: set(v.split()) for k, v in {  # the known fields of each message, lowerCamelCase
    "create": "customerId job validateOnly enableMatchRateRangePreview",
    "job": "resourceName id externalId type status failureReason operationMetadata customerMatchUserListMetadata "
           "storeSalesMetadata",
    "meta": "userList consent",
    "consent": "adUserData adPersonalization",
    "add": "resourceName operations validateOnly enablePartialFailure enableWarnings",
    "operation": "create remove removeAll",
    "user_data": "userIdentifiers transactionAttribute userAttribute consent",
    "identifier": "userIdentifierSource hashedEmail hashedPhoneNumber mobileId thirdPartyUserId addressInfo",
    "address": "hashedFirstName hashedLastName city state countryCode postalCode hashedStreetAddress",
    "run": "resourceName validateOnly",
    "search": "customerId query pageToken pageSize validateOnly searchSettings returnTotalResultsCount "
              "summaryRowSetting"}.items()}
ONEOF_ID = ("hashedEmail", "hashedPhoneNumber", "mobileId", "thirdPartyUserId", "addressInfo")
JOB_FIELDS = {"resource_name": "resourceName", "id": "id", "external_id": "externalId", "type": "type",
              "status": "status", "failure_reason": "failureReason",
              "customer_match_user_list_metadata.user_list": "customerMatchUserListMetadata.userList",
              "operation_metadata.match_rate_range": "operationMetadata.matchRateRange"}

lock = threading.Lock()
CONF = {}
st = {}


def reset():
    st.update(lists={i: set() for i in CONF["lists"]}, jobs={}, ops={}, requests=0, calls={}, token_requests=0,
              tokens_issued=0, limited=0, max_items=0, max_operations=0, max_bytes=0, codes={}, plaintext=0,
              secret_seen=0, daily_ops_used=0, times=deque(), tokens={}, external_ids=set(),
              next_id=int(time.time()) % 1000000 * 1000)
    for k, v in (("fail_once", set()), ("reject", set()), ("delay_ms", 0), ("rate", 100), ("window", 1.0),
                 ("exhaust", 0), ("daily_ops", None), ("fail_job_once", None), ("stall", False),
                 ("job_steps", CONF["job_steps"]), ("revoked", False)):
        st.setdefault(k, v)


def count(code):
    st["codes"][code] = st["codes"].get(code, 0) + 1


def request_id():
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")


def camel(key):
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def snake(key):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def n_identifiers(op):
    """How many identifiers an operation carries, as sent (counted before any check)."""
    data = next((op[k] for k in ("create", "remove") if isinstance(op, dict) and isinstance(op.get(k), dict)), {})
    ids = data.get("userIdentifiers", data.get("user_identifiers"))
    return len(ids) if isinstance(ids, list) else 0


def err(code, path="", details=None):
    """A GoogleAdsError; path is a field path such as "operations[2].create.user_identifiers[0]"."""
    kind, message = ERRORS[code]
    e = {"errorCode": {kind: code}, "message": message}
    if path:
        e["location"] = {"fieldPathElements": [dict({"fieldName": n}, **({"index": int(i)} if i else {}))
                                               for n, i in re.findall(r"(\w+)(?:\[(\d+)\])?", path)]}
    if details:
        e["details"] = details
    return e


def where(e):
    return ".".join(p["fieldName"] + ("[%d]" % p["index"] if "index" in p else "")
                    for p in e.get("location", {}).get("fieldPathElements", []))


class Fail(Exception):
    """A call-level error: an HTTP status and Google's error body."""

    def __init__(self, http, errors=None, message=None, details=None):
        super().__init__(message)
        self.http, self.errors, self.details = http, errors or [], details
        self.status = STATUS[http]
        self.message = message or MESSAGES[self.status]


def fail(http, code, path="", details=None):
    return Fail(http, [err(code, path, details)])


def bad_json(text, field=""):
    v = dict({"description": "Invalid JSON payload received. " + text}, **({"field": field} if field else {}))
    return Fail(400, message=v["description"], details=[{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                                          "fieldViolations": [v]}])


def normalise(obj, schema, at=""):
    """obj with lowerCamelCase keys; an unknown field is Google's JSON error."""
    if not isinstance(obj, dict):
        raise bad_json("Invalid value at '%s': an object is expected." % at, at)
    out = {}
    for k, v in obj.items():
        if camel(k) not in FIELDS[schema]:
            raise bad_json('Unknown name "%s"%s: Cannot find field.' % (k, " at '%s'" % at if at else ""), at)
        out[camel(k)] = v
    return out


def consent(value, at):
    c = normalise(value, "consent", at)
    for k, v in c.items():
        if v not in ("UNSPECIFIED", "UNKNOWN", "GRANTED", "DENIED"):
            raise bad_json("Invalid value at '%s.%s' (type.googleapis.com/google.ads.googleads.%s.enums."
                           "ConsentStatusEnum.ConsentStatus), \"%s\"" % (at, snake(k), CONF["version"], v))
    return c


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None, ctype="application/json; charset=UTF-8"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            while n > 0:  # drain it, so that the client reads the answer
                chunk = self.rfile.read(min(n, 65536))
                n = n - len(chunk) if chunk else 0
            with lock:
                count("413")
            return self.send(413, b"<title>Error 413 (Request Entity Too Large)</title>", "text/html; charset=UTF-8")
        raw = self.rfile.read(n) if n else b""
        post = self.command == "POST"
        if url.path == "/token" and post:
            return self.token(url, raw)
        if url.path == "/_state" and self.command == "GET":
            return self.state()
        if url.path == "/_control" and post:
            return self.control(raw)
        m = API.fullmatch(url.path)
        if m and m.group(1) == CONF["version"] and self.command in ("GET", "POST") and post != bool(m.group(7)):
            return self.api(m, raw)
        self.send(404, ("<!DOCTYPE html><title>Error 404 (Not Found)</title><p><b>404.</b> The requested URL "
                        "<code>%s</code> was not found on this server.</p>" % url.path).encode(),
                  "text/html; charset=UTF-8")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- Google's token endpoint

    def oauth_error(self, http, error, description):
        with lock:
            count(error)
        self.send(http, {"error": error, "error_description": description})

    def token(self, url, raw):
        p = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        with lock:
            st["token_requests"] += 1
            st["secret_seen"] += CONF["client_secret"] in url.query or CONF["refresh_token"] in url.query
        g = p.get
        for refused, http, error, text in (
                (not g("grant_type"), 400, "invalid_request", "Missing required parameter: grant_type"),
                (g("grant_type") != "refresh_token", 400, "unsupported_grant_type", "Invalid grant_type: %s"
                 % g("grant_type")),
                (g("client_id") != CONF["client_id"], 401, "invalid_client", "The OAuth client was not found."),
                (g("client_secret") != CONF["client_secret"], 401, "invalid_client", "Unauthorized"),
                (not g("refresh_token"), 400, "invalid_request", "Missing required parameter: refresh_token"),
                (g("refresh_token") != CONF["refresh_token"], 400, "invalid_grant", "Bad Request"),
                (st["revoked"], 400, "invalid_grant", "Token has been expired or revoked.")):
            if refused:
                return self.oauth_error(http, error, text)
        tok = "ya29." + secrets.token_urlsafe(48)
        with lock:
            st["tokens"][tok] = time.time() + CONF["lifetime"]
            st["tokens_issued"] += 1
        self.send(200, {"access_token": tok, "expires_in": int(CONF["lifetime"]),
                        "scope": "https://www.googleapis.com/auth/adwords", "token_type": "Bearer"})

    # -- the API

    def api(self, m, raw):
        version, cid, job_id = m.group(1), m.group(2), m.group(4)
        call = m.group(3) or m.group(5) or m.group(6) or "operations.get"
        seen = any(s in self.path or s.encode() in raw or any(s in v for v in self.headers.values())
                   for s in (CONF["client_secret"], CONF["refresh_token"]))
        with lock:
            st["requests"] += 1
            st["calls"][call] = st["calls"].get(call, 0) + 1
            st["max_bytes"] = max(st["max_bytes"], len(raw))
            st["secret_seen"] += seen
        try:
            self.authenticate()
            self.authorize(cid)
            self.admit()
            time.sleep(st["delay_ms"] / 1000.0)
            if call == "operations.get":
                return self.send(200, self.get_operation(cid, m.group(7), version))
            try:
                body = json.loads(raw or b"{}")
            except ValueError as e:
                raise bad_json("Unexpected token. %s" % e)
            if call == "offlineUserDataJobs:create":
                answer = self.create_job(cid, normalise(body, "create"))
            elif call == "addOperations":
                answer = self.add_operations(cid, job_id, normalise(body, "add"), version)
            elif call == "run":
                answer = self.run_job(cid, job_id, normalise(body, "run"), version)
            else:
                answer = self.search(cid, normalise(body, "search"))
                answer = [answer] if call == "searchStream" else answer
            self.send(200, answer)
        except Fail as f:
            body = {"code": f.http, "message": f.message, "status": f.status}
            if f.errors:
                body["details"] = [{"@type": "type.googleapis.com/google.ads.googleads.%s.errors.GoogleAdsFailure"
                                    % version, "errors": f.errors, "requestId": request_id()}]
            elif f.details:
                body["details"] = f.details
            with lock:
                for e in f.errors or [{"errorCode": {"": f.status}}]:
                    count(next(iter(e["errorCode"].values())))
                st["limited"] += f.http == 429
            self.send(f.http, {"error": body})

    def authenticate(self):
        auth = self.headers.get("Authorization") or ""
        tok = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        info = lambda reason: [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,  # noqa: E731
                                "domain": "googleapis.com", "metadata": {"service": "googleads.googleapis.com"}}]
        if not tok:
            raise Fail(401, message="Request is missing required authentication credential. " + AUTH_HINT,
                       details=info("CREDENTIALS_MISSING"))
        with lock:
            expires = st["tokens"].get(tok)
        if expires is None:
            raise Fail(401)
        if time.time() >= expires:
            raise Fail(401, details=info("ACCESS_TOKEN_EXPIRED"))
        dev = self.headers.get("developer-token")
        if not dev:
            raise fail(400, "DEVELOPER_TOKEN_PARAMETER_MISSING")
        if dev != CONF["developer_token"]:
            raise fail(401, "DEVELOPER_TOKEN_INVALID")

    def authorize(self, cid):
        login = (self.headers.get("login-customer-id") or "").strip()
        if login and not login.isdigit():
            raise fail(400, "INVALID_LOGIN_CUSTOMER_ID")
        if not cid.isdigit():
            raise fail(400, "INVALID_CUSTOMER_ID")
        if cid != CONF["customer"] or login != CONF["manager"]:
            raise fail(403, "USER_PERMISSION_DENIED")

    def admit(self):
        now = time.time()
        with lock:
            times = st["times"]
            while times and now - times[0] >= st["window"]:
                times.popleft()
            if st["exhaust"] > 0 or len(times) >= st["rate"]:
                st["exhaust"] = max(0, st["exhaust"] - 1)
                raise fail(429, "RESOURCE_TEMPORARILY_EXHAUSTED", details={"quotaErrorDetails": {
                    "rateScope": "ACCOUNT", "rateName": "Requests per account",
                    "retryDelay": "%ds" % max(1, round(st["window"]))}})
            if st["daily_ops"] is not None and st["daily_ops_used"] >= st["daily_ops"]:
                raise fail(429, "RESOURCE_EXHAUSTED", details={"quotaErrorDetails": {
                    "rateScope": "DEVELOPER", "rateName": "Number of operations for basic access",
                    "retryDelay": "%ds" % (86400 - int(now) % 86400)}})
            times.append(now)
            st["daily_ops_used"] += 1

    # -- OfflineUserDataJobService

    def create_job(self, cid, body):
        if "job" not in body:
            raise fail(400, "REQUIRED", "job")
        job = normalise(body["job"], "job", "job")
        if not job.get("type"):
            raise fail(400, "REQUIRED", "job.type")
        if job["type"] != "CUSTOMER_MATCH_USER_LIST":  # the other types are not emulated
            raise fail(400, "INVALID_VALUE", "job.type")
        at = "job.customer_match_user_list_metadata"
        meta = normalise(job.get("customerMatchUserListMetadata") or {}, "meta", at)
        if not meta.get("userList"):
            raise fail(400, "REQUIRED", at + ".user_list")
        lm = re.fullmatch(r"customers/(\d+)/userLists/(\d+)", str(meta["userList"]))
        if not lm or lm.group(1) != cid or lm.group(2) not in st["lists"]:
            raise fail(400, "INVALID_USER_LIST_ID", at + ".user_list")
        agreed = consent(meta["consent"], at + ".consent") if "consent" in meta else None
        ext = None if job.get("externalId") is None else str(job["externalId"])
        with lock:
            if ext in st["external_ids"]:
                raise fail(400, "EXTERNAL_UPDATE_ID_ALREADY_EXISTS", "job.external_id")
            if body.get("validateOnly"):
                return {}
            if ext is not None:
                st["external_ids"].add(ext)
            st["next_id"] += 1
            rn = "customers/%s/offlineUserDataJobs/%d" % (cid, st["next_id"])
            st["jobs"][rn] = {"id": str(st["next_id"]), "userList": meta["userList"], "list": lm.group(2),
                              "status": "PENDING", "failureReason": None, "consent": agreed, "externalId": ext,
                              "creates": 0, "removes": 0, "removeAll": False, "identifiers": 0, "checks": 0,
                              "operation": None, "ops": [], "kind": None, "steps": 0, "fail": None}
        return {"resourceName": rn}

    def job(self, cid, job_id):
        rn = "customers/%s/offlineUserDataJobs/%s" % (cid, job_id)
        if rn not in st["jobs"]:
            raise fail(400, "RESOURCE_NOT_FOUND", "resource_name")
        return rn, st["jobs"][rn]

    def identifier(self, ident, at):
        """One UserIdentifier: (member key, errors); under the lock."""
        ident = normalise(ident, "identifier", at)
        keys = [k for k in ONEOF_ID if k in ident]
        if len(keys) > 1:
            raise bad_json("Invalid value at '%s': oneof field 'identifier' is already set. Cannot set '%s'"
                           % (at, keys[1]), at)
        if not keys or ident[keys[0]] in ("", None, {}):
            return None, [err("MISSING_USER_IDENTIFIER", at)]
        k, v = keys[0], ident[keys[0]]
        if k in ("mobileId", "thirdPartyUserId"):
            return None, [err("INCOMPATIBLE_UPLOAD_KEY_TYPE", "%s.%s" % (at, snake(k)))]
        if k != "addressInfo":
            if isinstance(v, str) and HEX64.fullmatch(v):
                return v, []
            st["plaintext"] += 1
            return None, [err("INVALID_SHA256_FORMAT", "%s.%s" % (at, snake(k)))]
        at += ".address_info"
        a, errors = normalise(v, "address", at), []  # city, state, hashedStreetAddress: Store Sales only, ignored
        for f in ("hashedFirstName", "hashedLastName"):
            if f in a and not (isinstance(a[f], str) and HEX64.fullmatch(a[f])):
                st["plaintext"] += 1
                errors.append(err("INVALID_SHA256_FORMAT", "%s.%s" % (at, snake(f))))
        if "countryCode" in a and not re.fullmatch(r"[A-Za-z]{2}", str(a["countryCode"])):
            errors.append(err("INVALID_COUNTRY_CODE", at + ".country_code"))
        if not all(a.get(f) for f in ("hashedFirstName", "hashedLastName", "countryCode", "postalCode")):
            errors.append(err("MISSING_USER_IDENTIFIER", at))
        if errors:
            return None, errors
        return "address:%s:%s:%s:%s" % (a["hashedFirstName"], a["hashedLastName"], str(a["countryCode"]).upper(),
                                        a["postalCode"]), []

    def operation(self, op, i, job, kind_now, warnings):
        """One OfflineUserDataJobOperation: (kind, member keys, errors); under the lock."""
        at = "operations[%d]" % i
        op = normalise(op, "operation", at)
        given = [k for k in ("create", "remove", "removeAll") if k in op]
        if len(given) > 1:
            raise bad_json("Invalid value at '%s': oneof field 'operation' is already set. Cannot set '%s'"
                           % (at, given[1]), at)
        if not given:
            return None, [], [err("OPERATION_REQUIRED", at)]
        kind = given[0]
        if kind == "removeAll":
            if op["removeAll"] is not True or i != 0 or job["ops"]:
                return kind, [], [err("INVALID_OPERATION_ORDER", at + ".remove_all")]
            return kind, [], []
        at += "." + kind
        data, errors, keys = normalise(op[kind], "user_data", at), [], []
        if "userAttribute" in data or "transactionAttribute" in data:
            errors.append(err("ATTRIBUTES_NOT_APPLICABLE_FOR_CUSTOMER_MATCH_USER_LIST", at))
        if "consent" in data:
            consent(data["consent"], at + ".consent")
            warnings.append(err("OPERATION_LEVEL_CONSENT_PROVIDED", at + ".consent"))
        idents = data.get("userIdentifiers") or []
        if not isinstance(idents, list):
            raise bad_json("Invalid value at '%s.user_identifiers'." % at, at)
        if not idents:
            errors.append(err("MISSING_USER_IDENTIFIER", at))
        if len(idents) > MAX_IDS_OP:
            errors.append(err("TOO_MANY_USER_IDENTIFIERS", at))
        for j, ident in enumerate(idents):
            key, errs = self.identifier(ident, "%s.user_identifiers[%d]" % (at, j))
            errors += errs
            keys += [key] if key else []
        if (kind_now or kind) != kind:
            errors.append(err("CONFLICTING_OPERATION", at))
        if kind == "create" and "DENIED" in (job["consent"] or {}).values():
            errors.append(err("CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS", at))
        if not errors and st["reject"].intersection(keys):
            errors.append(err("MISSING_USER_IDENTIFIER", at))
        if not errors and st["fail_once"].intersection(keys):
            st["fail_once"].difference_update(keys)
            errors.append(err("TRANSIENT_ERROR", at))
        return kind, keys, errors

    def add_operations(self, cid, job_id, body, version):
        ops = body.get("operations")
        if ops is not None and not isinstance(ops, list):
            raise bad_json("Invalid value at 'operations': a list is expected.", "operations")
        if not ops:
            raise fail(400, "REQUIRED_NONEMPTY_LIST", "operations")
        n_ids = sum(n_identifiers(o) for o in ops)
        with lock:
            st["max_items"] = max(st["max_items"], n_ids)
            st["max_operations"] = max(st["max_operations"], len(ops))
            if n_ids > MAX_IDS:
                raise fail(400, "TOO_MANY_USER_IDENTIFIERS", "operations")
            rn, job = self.job(cid, job_id)
            if job["status"] != "PENDING":
                raise fail(400, "JOB_ALREADY_STARTED")
            accepted, errors, warnings, kind_now = [], [], [], job["kind"]
            for i, op in enumerate(ops):
                kind, keys, errs = self.operation(op, i, job, kind_now, warnings)
                errors += errs
                if not errs:
                    accepted.append((kind, keys))
                    kind_now = kind_now or (None if kind == "removeAll" else kind)
            if errors and not body.get("enablePartialFailure"):
                raise Fail(400, errors)
            if not body.get("validateOnly"):
                job["ops"] += accepted
                job["kind"] = kind_now
                for kind, keys in accepted:
                    if kind == "removeAll":
                        job["removeAll"] = True
                    else:
                        job[kind + "s"] += 1
                    job["identifiers"] += len(keys)
            answer = {}
            for name, errs in (("partialFailureError", errors), ("warning", warnings)):
                if not errs or (name == "warning" and not body.get("enableWarnings")):
                    continue
                first = "%s, at %s" % (errs[0]["message"], where(errs[0]))
                answer[name] = {"code": 13 if all("internalError" in e["errorCode"] for e in errs) else 3,
                                "message": first if len(errs) == 1 else
                                "Multiple errors in \u2018details\u2019. First error: " + first,
                                "details": [{"@type": "type.googleapis.com/google.ads.googleads.%s.errors."
                                             "GoogleAdsFailure" % version, "errors": errs, "requestId": request_id()}]}
                for e in errs:
                    count(next(iter(e["errorCode"].values())))
        return answer

    def run_job(self, cid, job_id, body, version):
        with lock:
            rn, job = self.job(cid, job_id)
            if job["status"] != "PENDING":
                raise fail(400, "JOB_ALREADY_STARTED")
            if any(j["status"] == "RUNNING" and j["list"] == job["list"] for j in st["jobs"].values()):
                raise fail(400, "CONCURRENT_MODIFICATION")
            if body.get("validateOnly"):
                return {}
            job["status"], job["operation"] = "RUNNING", "customers/%s/operations/%s" % (cid, secrets.token_hex(8))
            st["ops"][job["operation"]] = rn
            job["fail"], st["fail_job_once"] = st["fail_job_once"], None
            if st["job_steps"] <= 0:
                self.complete(job)
            return self.operation_json(job, version, done=False)

    def complete(self, job):
        if job["fail"]:
            job["status"] = "FAILED"
            job["failureReason"] = job["fail"] if isinstance(job["fail"], str) else "UNKNOWN"
            return
        members = st["lists"][job["list"]]
        for kind, keys in job["ops"]:
            if kind == "removeAll":
                members.clear()
            elif kind == "create":
                members.update(keys)
            else:
                members.difference_update(keys)
        job["status"] = "SUCCESS"

    def check(self, job):
        """A status check: a running job moves on, unless stalled."""
        job["checks"] += 1
        if job["status"] == "RUNNING" and not st["stall"]:
            job["steps"] += 1
            if job["steps"] >= st["job_steps"]:
                self.complete(job)

    def operation_json(self, job, version, done=True):
        op = {"name": job["operation"], "metadata": {
            "@type": "type.googleapis.com/google.ads.googleads.%s.resources.OfflineUserDataJobMetadata" % version}}
        if done and job["status"] == "SUCCESS":
            op.update(done=True, response={"@type": "type.googleapis.com/google.protobuf.Empty"})
        elif done and job["status"] == "FAILED":
            op.update(done=True, error={"code": 2, "message": "The offline user data job failed: %s"
                                        % job["failureReason"]})
        return op

    def get_operation(self, cid, op_id, version):
        with lock:
            rn = st["ops"].get("customers/%s/operations/%s" % (cid, op_id))
            if rn is None:
                raise fail(400, "RESOURCE_NOT_FOUND", "name")
            self.check(st["jobs"][rn])
            return self.operation_json(st["jobs"][rn], version)

    # -- GoogleAdsService.Search

    def search(self, cid, body):
        if "pageSize" in body:
            raise fail(400, "PAGE_SIZE_NOT_SUPPORTED", "page_size")
        q = body.get("query")
        if not isinstance(q, str) or not q.strip():
            raise fail(400, "REQUIRED", "query")
        m = re.fullmatch(r"\s*SELECT\s+(.+?)\s+FROM\s+(\w+)(?:\s+WHERE\s+(.+?))?(?:\s+ORDER\s+BY\s+[\w.]+"
                         r"(?:\s+(?:ASC|DESC))?)?(?:\s+LIMIT\s+(\d+))?\s*", q, re.I | re.S)
        if not m:
            raise fail(400, "QUERY_ERROR")
        if m.group(2) != "offline_user_data_job":
            raise fail(400, "PROHIBITED_RESOURCE_TYPE_IN_FROM_CLAUSE")
        fields = [f.strip()[len("offline_user_data_job."):] for f in m.group(1).split(",")]
        if not all(f in JOB_FIELDS for f in fields) or not all(
                f.strip().startswith("offline_user_data_job.") for f in m.group(1).split(",")):
            raise fail(400, "UNRECOGNIZED_FIELD")
        conds = []
        for c in re.split(r"\s+AND\s+", m.group(3), flags=re.I) if m.group(3) else []:
            cm = re.fullmatch(r"\s*offline_user_data_job\.(resource_name|id|status|type)\s*(=|IN)\s*(.+?)\s*", c, re.I)
            if not cm:
                raise fail(400, "QUERY_ERROR")
            vals = re.findall(r"'([^']*)'|\"([^\"]*)\"|([\w-]+)", cm.group(3).strip("() "))
            conds.append((JOB_FIELDS[cm.group(1)], {a or b or d for a, b, d in vals}))
        rows = []
        with lock:
            for rn, job in sorted(st["jobs"].items(), key=lambda kv: int(kv[1]["id"])):
                flat = {"resourceName": rn, "id": job["id"], "type": "CUSTOMER_MATCH_USER_LIST",
                        "status": job["status"]}
                if not rn.startswith("customers/%s/" % cid) or not all(flat[f] in v for f, v in conds):
                    continue
                if m.group(4) and len(rows) >= int(m.group(4)):
                    break
                self.check(job)
                flat.update(status=job["status"], externalId=job["externalId"], userList=job["userList"],
                            failureReason=job["failureReason"] or "UNSPECIFIED", matchRateRange="UNKNOWN")
                row = {"resourceName": rn}
                for path in (JOB_FIELDS[f] for f in fields):
                    *parents, leaf = path.split(".")
                    node = row
                    for part in parents:
                        node = node.setdefault(part, {})
                    if flat.get(leaf) is not None:
                        node[leaf] = flat[leaf]
                rows.append({"offlineUserDataJob": row})
        answer = {"fieldMask": ",".join("offlineUserDataJob." + JOB_FIELDS[f] for f in fields),
                  "requestId": request_id()}
        if rows:
            answer["results"] = rows
        return answer

    # -- control

    def state(self):
        with lock:
            body = {k: st[k] for k in ("requests", "calls", "token_requests", "tokens_issued", "limited", "max_items",
                                       "max_operations", "max_bytes", "codes", "plaintext", "secret_seen",
                                       "daily_ops_used")}
            body["lists"] = {i: {"resourceName": "customers/%s/userLists/%s" % (CONF["customer"], i),
                                 "members": sorted(m), "size": len(m)} for i, m in st["lists"].items()}
            body["jobs"] = {rn: {k: v for k, v in j.items() if k not in ("ops", "kind", "list", "steps", "fail")}
                            for rn, j in st["jobs"].items()}
            body = json.loads(json.dumps(body))
        self.send(200, body)

    def control(self, raw):
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                if body.get("reset"):
                    reset()
                for k in ("fail_once", "reject"):
                    if k in body:
                        st[k] = {str(v) for v in body[k]}
                for k, conv in (("delay_ms", int), ("rate", int), ("window", float), ("exhaust", int),
                                ("job_steps", int), ("stall", bool), ("revoke_refresh_token", bool)):
                    if k in body:
                        st["revoked" if k == "revoke_refresh_token" else k] = max(0, conv(body[k]))
                if "daily_ops" in body:
                    st["daily_ops"] = None if body["daily_ops"] is None else int(body["daily_ops"])
                    st["daily_ops_used"] = 0
                if "fail_job_once" in body:
                    st["fail_job_once"] = body["fail_job_once"] or None
                if body.get("expire_token"):
                    st["tokens"] = {t: min(e, time.time()) for t, e in st["tokens"].items()}
        except (ValueError, TypeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--refresh-token", required=True)
    ap.add_argument("--developer-token", required=True)
    ap.add_argument("--login-customer-id", required=True, help="the manager account (digits)")
    ap.add_argument("--customer-id", required=True, help="the client account (digits)")
    ap.add_argument("--user-list", action="append", help="a Customer Match list id (repeatable; default 9001)")
    ap.add_argument("--api-version", default="v19")
    ap.add_argument("--job-steps", type=int, default=3, help="status checks a run job takes to end")
    ap.add_argument("--token-lifetime", type=float, default=3599)
    a = ap.parse_args()
    CONF.update(client_id=a.client_id, client_secret=a.client_secret, refresh_token=a.refresh_token,
                developer_token=a.developer_token, manager=a.login_customer_id, customer=a.customer_id,
                lists=[str(i) for i in (a.user_list or ["9001"])], version=a.api_version, job_steps=a.job_steps,
                lifetime=a.token_lifetime)
    reset()
    serve(Handler, a.port, a.port_file)


if __name__ == "__main__":
    main()
