#!/usr/bin/python3
"""A local emulator of Salesforce's REST API (OAuth 2.0 token, sObject Collections), for tests.

Usage:
    /usr/bin/python3 test/emulators/salesforce.py --port-file FILE --client-id ID
        --client-secret SECRET [--refresh-token RT] [--rotate-refresh]
        [--campaign 701000000000001AAA ...] [--port 0] [--instance-port 0]

Two servers: the org's My Domain (its port goes to --port-file), serving the
token endpoint, and the instance (the API host), the token answer's
instance_url (http://127.0.0.1:<instance port>).

From Salesforce's documentation (developer.salesforce.com REST API Developer
Guide: resources_composite_sobjects_collections_upsert, _create, _delete,
resources_composite_allornone, errorcodes, headers_api_usage; help.salesforce.com:
remoteaccess_oauth_client_credentials_flow, remoteaccess_oauth_refresh_token_flow,
remoteaccess_oauth_flow_errors, article 000886201; the API Request Limits and
Allocations cheat sheet; SOAP API: UpsertResult, StatusCode, ID field type):
  POST /services/oauth2/token on My Domain (client credentials are not served on
      login.salesforce.com), application/x-www-form-urlencoded: grant_type=
      client_credentials, client_id and client_secret in the form or an
      "Authorization: Basic" header (Salesforce's Postman collection);
      grant_type=refresh_token, client_id, refresh_token, client_secret (optional
      when the app does not require it).  200 {access_token, signature, scope,
      instance_url, id, token_type: "Bearer", issued_at (ms)}, no expires_in;
      signature: Base64 HMAC-SHA256 of id + issued_at keyed with the secret.
      Refresh token rotation: each refresh answers a new refresh_token, the old
      one invalid from then on; client credentials never give one.  Errors 400
      {"error", "error_description"}: invalid_client_id "client identifier
      invalid", invalid_client "invalid client credentials", invalid_grant
      "expired access/refresh token", unsupported_grant_type "grant type not
      supported", invalid_request "must use HTTP POST".
  API calls need "Authorization: Bearer <token>" (or "OAuth <token>"), else 401
      [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
      (errors: an array of {message, errorCode}).  The org's requests over 24 h
      are limited: 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit exceeded.";
      answers carry Sforce-Limit-Info: api-usage=used/allocation.  Unknown
      resource or version: 404 NOT_FOUND "The requested resource does not exist";
      another method: 405 METHOD_NOT_ALLOWED "HTTP Method 'X' not allowed.
      Allowed are ..."; a body not JSON: 415; a malformed request: 400.  The
      latest version is v66.0 (Spring '26).
  PATCH /services/data/vNN.N/composite/sobjects/{SObject}/{ExternalIdField}
      (v46.0+) {"allOrNone" (default false), "records"}: at most 200, each with
      attributes.type, all of the URI's type, no Id.  200, UpsertResults in
      input order {"id", "success", "errors": [{"statusCode", "message",
      "fields"}], "created"}.  POST .../composite/sobjects (v42.0+): creates at
      most 200 of any types, no Id: SaveResults {"id", "success", "errors"}.
      DELETE .../composite/sobjects?ids=a,b&allOrNone=false (v42.0+): at most
      200 ids, DeleteResults.  allOrNone true: one failure keeps nothing, the
      others fail ALL_OR_NONE_OPERATION_ROLLED_BACK "Record rolled back because
      not all records were valid and the request was using AllOrNone header".
  GET /services/data/vNN.N/sobjects/{SObject}/{fieldName}/{fieldValue} (sObject
      Rows by External ID, resources_sobject_upsert_get; no parameters): 200
      the record, {"attributes": {"type", "url"}, "Id", fields...}; 404
      NOT_FOUND "The requested resource does not exist" when no record has
      the value; 300 Multiple Choices, a JSON array of the records' URLs,
      when several have it.
  Salesforce's wordings (as its clients quote them): REQUIRED_FIELD_MISSING
      "Required fields are missing: [LastName]", INVALID_EMAIL_ADDRESS "Email:
      invalid email address: x", UNABLE_TO_LOCK_ROW "unable to obtain exclusive
      access to this record", MISSING_ARGUMENT "Ext_Id__c not specified",
      DUPLICATE_VALUE "Duplicate external id specified: x" (each record sharing
      a key in one request), "duplicate value found: F duplicates value on record
      with id: X", "Already a campaign member.", ENTITY_IS_DELETED "entity is
      deleted", INVALID_CROSS_REFERENCE_KEY "invalid cross reference id",
      MALFORMED_ID "malformed id X", "Contact ID: id value of incorrect type: X",
      INVALID_FIELD_FOR_INSERT_UPDATE "cannot specify Id in an insert call";
      request errors EXCEEDED_ID_LIMIT "record limit reached. cannot submit more
      than 200 records into this call", INVALID_FIELD "No such column 'X' on
      sobject of type Contact", "Field name provided, X is not an External ID or
      indexed field for Contact" ("does not match an External ID, Salesforce Id,
      or indexed field" for no such field), INVALID_TYPE "Must send a concrete
      entity type.", JSON_PARSER_ERROR "Cannot deserialize instance of string
      from START_OBJECT value { or request may be missing a required field ...".
  Ids: 15 case-sensitive characters, a key prefix first (Contact 003, Lead 00Q,
      Account 001, Campaign 701, CampaignMember 00v), or 18: a suffix encodes the
      case.  Text external ids match regardless of case.  Contact needs
      LastName, Lead LastName and Company, Account Name.

Where the documentation is silent, chosen as plausible:
  - Data calls on My Domain: 401 INVALID_SESSION_ID (a session is good at its
    instance only), counted as wrong_host; the token path on the instance: 404.
  - A token request not form-encoded: 400 unsupported_grant_type (nothing is
    read); no refresh_token: invalid_grant; control token_down: 503
    {"error": "temporarily_unavailable"}.  Tokens do not expire by themselves.
  - Order: 401, 403, 404, 405, 415, 400, then the records.  A call with a valid
    session counts against the quota whatever its answer; token requests never.
    The allocation in Sforce-Limit-Info: used + daily_quota, else 100000.
  - Request-level 400: over 200, an unknown field, a value of the wrong JSON
    type (object, array; a non-numeric string for Score__c), another type than
    the URI's (INVALID_TYPE), an ExternalIdField refused, an unknown
    attributes.type (INVALID_TYPE "sObject type 'X' is not supported."); an
    unknown sObject in the URI: 404.  No ids or records: 400 MISSING_ARGUMENT.
  - Text fields take strings, numbers and booleans (as text); "" is null.
    Ext_Id__c is unique too.  Thing__c's Name defaults to its Id.  An Id in an
    upserted record: INVALID_FIELD_FOR_INSERT_UPDATE "Unable to create/update
    fields: Id. ...".
  - CampaignMember needs CampaignId and ContactId or LeadId; a lookup to a
    deleted record: ENTITY_IS_DELETED, to none INVALID_CROSS_REFERENCE_KEY, to
    another object's id MALFORMED_ID (the field in "fields").  Deleting a
    Contact, Lead or Campaign deletes its CampaignMembers.  Deleted ids stay in
    the recycle bin (ENTITY_IS_DELETED); an unknown key prefix: MALFORMED_ID.
    A failed DeleteResult has its id when well formed.
  - API versions v42.0 (v46.0 for upsert) to v66.0, always N.0.  The 415's
    message: "Content-Type header specified in HTTP request is not supported: X".
  - lock_once values match an upsert's external id value; a create's ContactId,
    LeadId or Ext_Id__c; a delete's id.
  - sObject Rows by External ID: only GET is served (405 otherwise); a field
    that is not an external id: 404 NOT_FOUND "Provided external ID field
    does not exist or is not accessible: X".  Ext_Id__c being unique, 300
    never happens here.
Objects: Contact (FirstName, LastName, Email, Phone, Title, Ext_Id__c, Score__c),
Lead (FirstName, LastName, Company, Email, Phone, Title, Ext_Id__c), Account
(Name, Website, Ext_Id__c), Thing__c (Name, Ext_Id__c), Ext_Id__c their External
ID; Campaign (Name); CampaignMember (CampaignId, ContactId, LeadId, Status).

Control (no auth, on both servers):
  GET  /_state   {"records": {SObject: {id: fields}}, "campaign_members":
                  {campaignId: [{"id", "ContactId" | "LeadId"}]}, "deleted",
                  "calls" (data requests), "wrong_host", "token_requests",
                  "grants": {grant_type: tokens issued}, "unauthorized" (401s),
                  "codes": {statusCode | errorCode | error: n}, "max_records",
                  "refresh_token" (the valid one), "quota_left"}
  POST /_control {"daily_quota": n | null, "lock_once": [values], "expire_tokens":
                  true, "token_down": bool, "delay_ms": n, "fail_after_write": n
                  (the next n upserts are applied, then answered 500
                  UNKNOWN_EXCEPTION: the answer lost)}, any of them: {"ok": true}
  GET /_state also has "lookups": the values asked for by external id.

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

from serve import serve_many

MAX_RECORDS, LATEST = 200, 66
ORG_ID, USER_ID = "00D000000000001AAA", "005000000000001AAA"
SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TEXT, DOUBLE = "string", "double"
OBJECTS = {
    "Contact": {"prefix": "003", "required": ["LastName"], "fields": {
        "FirstName": TEXT, "LastName": TEXT, "Email": TEXT, "Phone": TEXT, "Title": TEXT,
        "Ext_Id__c": TEXT, "Score__c": DOUBLE}},
    "Lead": {"prefix": "00Q", "required": ["LastName", "Company"], "fields": {
        "FirstName": TEXT, "LastName": TEXT, "Company": TEXT, "Email": TEXT, "Phone": TEXT,
        "Title": TEXT, "Ext_Id__c": TEXT}},
    "Account": {"prefix": "001", "required": ["Name"], "fields": {
        "Name": TEXT, "Website": TEXT, "Ext_Id__c": TEXT}},
    "Thing__c": {"prefix": "a0X", "required": [], "fields": {"Name": TEXT, "Ext_Id__c": TEXT}},
    "Campaign": {"prefix": "701", "required": ["Name"], "fields": {"Name": TEXT}},
    "CampaignMember": {"prefix": "00v", "required": ["CampaignId"], "fields": {
        "CampaignId": TEXT, "ContactId": TEXT, "LeadId": TEXT, "Status": TEXT}},
}
EXTERNAL = "Ext_Id__c"
LOOKUPS = {"CampaignId": ("Campaign", "Campaign ID"), "ContactId": ("Contact", "Contact ID"),
           "LeadId": ("Lead", "Lead ID")}
BY_PREFIX = {o["prefix"]: name for name, o in OBJECTS.items()}
ROLLED_BACK = ("ALL_OR_NONE_OPERATION_ROLLED_BACK",
               "Record rolled back because not all records were valid and the request was using AllOrNone header")

lock = threading.Lock()
st = {"records": {name: {} for name in OBJECTS}, "deleted": set(), "tokens": set(), "calls": 0,
      "wrong_host": 0, "token_requests": 0, "grants": {}, "unauthorized": 0, "codes": {},
      "max_records": 0, "refresh_token": None, "quota": None, "used": 0, "lock_once": [],
      "token_down": False, "delay_ms": 0, "next_id": 1000, "fail_after_write": 0, "lookups": []}
CONF = {}


class Refused(Exception):
    """A request-level error: HTTP status, errorCode, message."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def count(code):
    st["codes"][code] = st["codes"].get(code, 0) + 1


def fail(code, message, fields=()):
    count(code)
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": list(fields)}]}


def with_suffix(id15):
    """The 18-character form: each 5 characters' upper-case letters as one character."""
    return id15 + "".join(SUFFIX[sum(1 << j for j, c in enumerate(id15[i:i + 5]) if "A" <= c <= "Z")]
                          for i in (0, 5, 10))


def canonical(raw):
    """A 15- or 18-character id as its 18-character form, or None if malformed."""
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?", raw):
        return None
    if len(raw) == 15:
        return with_suffix(raw)
    body = ""
    for i in range(3):
        bits = SUFFIX.find(raw[15 + i].upper())
        if bits < 0:
            return None
        for j, c in enumerate(raw[i * 5:i * 5 + 5]):
            if bits >> j & 1 and not c.isalpha():
                return None
            body += c.upper() if bits >> j & 1 else c.lower()
    return with_suffix(body)


def new_id(sobject):
    st["next_id"] += 1
    n, digits = st["next_id"], ""
    while n:
        n, d = divmod(n, 62)
        digits = B62[d] + digits
    return with_suffix(OBJECTS[sobject]["prefix"] + "5g" + digits.rjust(10, "0"))


def find_object(name):
    return next((o for o in OBJECTS if o.lower() == str(name).lower()), None)


def locked_once(*values):
    """Whether one of values is listed in lock_once (and take it off)."""
    for v in values:
        if v is not None and str(v) in st["lock_once"]:
            st["lock_once"].remove(str(v))
            return True
    return False


def by_external(sobject, value):
    return next((i for i, f in st["records"][sobject].items()
                 if f.get(EXTERNAL) is not None and f[EXTERNAL].lower() == value.lower()), None)


def type_of(rec):
    if not isinstance(rec.get("attributes"), dict) or not rec["attributes"].get("type"):
        raise Refused(400, "INVALID_TYPE", "Must send a concrete entity type.")
    return rec["attributes"]["type"]


def check_fields(sobject, rec, raw):
    """The record's fields by their API names (and Id), values checked; Refused if malformed."""
    fields = {}
    for k, v in rec.items():
        if k.lower() == "attributes":
            continue
        if k.lower() == "id":
            fields["Id"] = v
            continue
        name = next((f for f in OBJECTS[sobject]["fields"] if f.lower() == k.lower()), None)
        if name is None:
            raise Refused(400, "INVALID_FIELD", "No such column '%s' on sobject of type %s" % (k, sobject))
        at = "at [line:1, column:%d]" % (raw.find('"%s"' % k) + 1)
        if isinstance(v, (dict, list)):
            token = ("START_OBJECT value {", "START_ARRAY value [")[isinstance(v, list)]
            raise Refused(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of %s from %s or request "
                          "may be missing a required field %s" % (OBJECTS[sobject]["fields"][name], token, at))
        if OBJECTS[sobject]["fields"][name] == DOUBLE and v is not None and v != "":
            try:
                if isinstance(v, bool):
                    raise ValueError(v)
                v = float(v)
            except ValueError:
                raise Refused(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of double from VALUE_STRING "
                              "value %s or request may be missing a required field %s" % (v, at))
        elif isinstance(v, bool):
            v = "true" if v else "false"
        elif v is not None and OBJECTS[sobject]["fields"][name] == TEXT:
            v = v if isinstance(v, str) else json.dumps(v)
        fields[name] = None if v == "" else v
    return fields


def invalid(sobject, fields):
    """A record error of the fields a record would have once saved, or None."""
    missing = [f for f in OBJECTS[sobject]["required"] if fields.get(f) is None]
    if missing:
        return fail("REQUIRED_FIELD_MISSING", "Required fields are missing: [%s]" % ", ".join(missing), missing)
    email = fields.get("Email")
    if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        return fail("INVALID_EMAIL_ADDRESS", "Email: invalid email address: %s" % email, ["Email"])
    return None


def member_error(fields):
    """A new CampaignMember's record error, or None (and its lookups in 18 characters)."""
    if fields.get("ContactId") is None and fields.get("LeadId") is None:
        return fail("REQUIRED_FIELD_MISSING", "Required fields are missing: [ContactId, LeadId]",
                    ["ContactId", "LeadId"])
    for field, (target, label) in LOOKUPS.items():
        if fields.get(field) is None:
            continue
        rid = canonical(fields[field])
        if rid is None or not rid.startswith(OBJECTS[target]["prefix"]):
            return fail("MALFORMED_ID", "%s: id value of incorrect type: %s" % (label, fields[field]), [field])
        if rid in st["deleted"]:
            return fail("ENTITY_IS_DELETED", "entity is deleted", [field])
        if rid not in st["records"][target]:
            return fail("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field])
        fields[field] = rid
    if any(m["CampaignId"] == fields["CampaignId"] and m.get(p) and m.get(p) == fields.get(p)
           for m in st["records"]["CampaignMember"].values() for p in ("ContactId", "LeadId")):
        return fail("DUPLICATE_VALUE", "Already a campaign member.")
    return None


def delete_record(rid):
    sobject = BY_PREFIX[rid[:3]]
    del st["records"][sobject][rid]
    st["deleted"].add(rid)
    if sobject in ("Contact", "Lead", "Campaign"):
        for mid, m in list(st["records"]["CampaignMember"].items()):
            if rid in (m.get("ContactId"), m.get("LeadId"), m.get("CampaignId")):
                delete_record(mid)


def all_or_none(process, items, atomic, keep_id=False):
    """Process items in order under the lock; with atomic, one failure undoes all."""
    saved = copy.deepcopy((st["records"], st["deleted"]))
    results = [process(i, item) for i, item in enumerate(items)]
    if atomic and any(not r["success"] for r in results):
        st["records"], st["deleted"] = saved
        results = [dict({"id": r["id"]} if keep_id else {}, **fail(*ROLLED_BACK)) if r["success"] else r
                   for r in results]
    return results


def upsert(sobject, field, records, raw, atomic):
    """PATCH composite/sobjects/{sobject}/{field}: UpsertResults."""
    for rec in records:
        if find_object(type_of(rec)) != sobject:
            raise Refused(400, "INVALID_TYPE", "Records of type %s in a request that upserts %s: all must be %s"
                          % (type_of(rec), sobject, sobject))
    checked = [check_fields(sobject, rec, raw) for rec in records]
    keys = [f.get(field) for f in checked]
    seen = [k.lower() for k in keys if k is not None]

    def one(i, fields):
        key = keys[i]
        if key is None:
            return fail("MISSING_ARGUMENT", "%s not specified" % field)
        if seen.count(key.lower()) > 1:
            return fail("DUPLICATE_VALUE", "Duplicate external id specified: %s" % key)
        if fields.pop("Id", None) is not None:
            return fail("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: Id. Please check the "
                        "security settings of this field and verify that it is read/write for your profile or "
                        "permission set.", ["Id"])
        rid = by_external(sobject, key)
        if locked_once(key):
            return fail("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"
                        + (" or 1 records: %s" % rid if rid else ""))
        merged = dict(st["records"][sobject].get(rid, {}), **fields)
        error = invalid(sobject, merged)
        if error:
            return error
        created = rid is None
        rid = rid or new_id(sobject)
        if sobject == "Thing__c" and merged.get("Name") is None:
            merged["Name"] = rid
        st["records"][sobject][rid] = merged
        return {"id": rid, "success": True, "errors": [], "created": created}

    with lock:
        return all_or_none(one, checked, atomic)


def create(records, raw, atomic):
    """POST composite/sobjects: SaveResults."""
    checked = []
    for rec in records:
        sobject = find_object(type_of(rec))
        if sobject is None:
            raise Refused(400, "INVALID_TYPE", "sObject type '%s' is not supported." % type_of(rec))
        checked.append((sobject, check_fields(sobject, rec, raw)))

    def one(i, item):
        sobject, fields = item
        if fields.pop("Id", None) is not None:
            return fail("INVALID_FIELD_FOR_INSERT_UPDATE", "cannot specify Id in an insert call", ["Id"])
        if locked_once(fields.get("ContactId"), fields.get("LeadId"), fields.get(EXTERNAL)):
            return fail("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")
        error = invalid(sobject, fields) or sobject == "CampaignMember" and member_error(fields)
        if error:
            return error
        taken = fields.get(EXTERNAL) is not None and by_external(sobject, fields[EXTERNAL])
        if taken:
            return fail("DUPLICATE_VALUE", "duplicate value found: %s duplicates value on record with id: %s"
                        % (EXTERNAL, taken), [EXTERNAL])
        rid = new_id(sobject)
        if sobject == "Thing__c" and fields.get("Name") is None:
            fields["Name"] = rid
        st["records"][sobject][rid] = fields
        return {"id": rid, "success": True, "errors": []}

    with lock:
        return all_or_none(one, checked, atomic)


def delete(ids, atomic):
    """DELETE composite/sobjects?ids=: DeleteResults."""
    def one(i, raw):
        rid = canonical(raw)
        if rid is None or rid[:3] not in BY_PREFIX:
            return fail("MALFORMED_ID", "malformed id %s" % raw)
        if locked_once(raw, rid):
            result = fail("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")
        elif rid in st["deleted"]:
            result = fail("ENTITY_IS_DELETED", "entity is deleted")
        elif rid not in st["records"][BY_PREFIX[rid[:3]]]:
            result = fail("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        else:
            delete_record(rid)
            result = {"success": True, "errors": []}
        return dict({"id": rid}, **result)

    with lock:
        return all_or_none(one, ids, atomic, keep_id=True)


def sign(ident, issued):
    mac = hmac.new(CONF["client_secret"].encode(), (ident + issued).encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def token(form, basic):
    """The token endpoint's (status, answer), under the lock."""
    grant = form.get("grant_type")
    if grant not in ("client_credentials", "refresh_token"):
        return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
    client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
    if client_id != CONF["client_id"]:
        return 400, {"error": "invalid_client_id", "error_description": "client identifier invalid"}
    if (grant == "client_credentials" or secret is not None) and secret != CONF["client_secret"]:
        return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
    answer = {}
    if grant == "refresh_token":
        if st["refresh_token"] is None or form.get("refresh_token") != st["refresh_token"]:
            return 400, {"error": "invalid_grant", "error_description": "expired access/refresh token"}
        if CONF["rotate"]:
            st["refresh_token"] = answer["refresh_token"] = "5Aep861" + secrets.token_urlsafe(48)
    access = ORG_ID[:15] + "!" + secrets.token_urlsafe(72)
    st["tokens"].add(access)
    st["grants"][grant] = st["grants"].get(grant, 0) + 1
    ident, issued = CONF["login_url"] + "/id/%s/%s" % (ORG_ID, USER_ID), str(int(time.time() * 1000))
    answer.update(access_token=access, signature=sign(ident, issued), instance_url=CONF["instance_url"],
                  id=ident, token_type="Bearer", issued_at=issued,
                  scope="api" if grant == "client_credentials" else "api refresh_token")
    return 200, answer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    instance = False  # which of the two servers

    def log_message(self, *args):
        pass

    def send(self, status, body=None, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, status, code, message, headers=()):
        with lock:
            count(code)
            st["unauthorized"] += status == 401
        self.send(status, [{"message": message, "errorCode": code}], headers)

    def route(self):
        url = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if url.path == "/_state" and self.command == "GET":
            return self.state()
        if url.path == "/_control" and self.command == "POST":
            return self.control(raw)
        if url.path == "/services/oauth2/token" and not self.instance:
            return self.token(raw)
        if url.path.startswith("/services/data/"):
            with lock:
                st["calls"] += 1
                st["wrong_host"] += not self.instance
            if not self.instance:
                return self.refuse(401, "INVALID_SESSION_ID", "Session expired or invalid")
            return self.api(url, raw)
        self.refuse(404, "NOT_FOUND", "The requested resource does not exist")

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = route

    # -- OAuth

    def token(self, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        form = {}
        if ctype == "application/x-www-form-urlencoded":
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        auth = self.headers.get("Authorization") or ""
        basic = None
        if auth[:6].lower() == "basic ":
            try:
                user, _, pw = base64.b64decode(auth[6:].strip()).decode().partition(":")
                basic = (unquote_plus(user), unquote_plus(pw))
            except ValueError:
                basic = ("", "")
        with lock:
            st["token_requests"] += 1
            if st["token_down"]:
                status, body = 503, {"error": "temporarily_unavailable",
                                     "error_description": "the service is temporarily unavailable"}
            elif self.command != "POST":
                status, body = 400, {"error": "invalid_request", "error_description": "must use HTTP POST"}
            else:
                status, body = token(form, basic)
            if status != 200:
                count(body["error"])
        self.send(status, body, [("Cache-Control", "no-cache,must-revalidate,max-age=0,no-store,private")])

    # -- REST

    def api(self, url, raw):
        auth = self.headers.get("Authorization") or ""
        scheme, _, session = auth.partition(" ")
        with lock:
            valid = scheme.lower() in ("bearer", "oauth") and session.strip() in st["tokens"]
            quota_out = valid and st["quota"] is not None and st["quota"] <= 0
            if valid and not quota_out:
                st["used"] += 1
                if st["quota"] is not None:
                    st["quota"] -= 1
            usage = ("Sforce-Limit-Info", "api-usage=%d/%d" % (
                st["used"], st["used"] + st["quota"] if st["quota"] is not None else 100000))
            delay = st["delay_ms"]
        if not valid:
            return self.refuse(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if quota_out:
            return self.refuse(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", [usage])
        time.sleep(delay / 1000.0)
        try:
            if re.match(r"/services/data/v\d+\.0/sobjects/", url.path):
                return self.send(*self.row_by_external(url), [usage])
            answer = self.collections(url, raw)
            with lock:
                lost = self.command == "PATCH" and st["fail_after_write"] > 0
                if lost:
                    st["fail_after_write"] -= 1
            if lost:
                raise Refused(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                              "ErrorId if you contact support: 0000000000-00000 (0000000000)")
            self.send(200, answer, [usage])
        except Refused as e:
            self.refuse(e.status, e.code, e.message, [usage])

    def row_by_external(self, url):
        """GET sobjects/{SObject}/{field}/{value}: (status, body)."""
        m = re.fullmatch(r"/services/data/v(\d+)\.0/sobjects/([^/]+)/([^/]+)/([^/]+)", url.path)
        sobject = m and find_object(m.group(2))
        if not m or not 20 <= int(m.group(1)) <= LATEST or sobject is None:
            raise Refused(404, "NOT_FOUND", "The requested resource does not exist")
        if self.command != "GET":
            raise Refused(405, "METHOD_NOT_ALLOWED", "HTTP Method '%s' not allowed. Allowed are GET"
                          % self.command)
        if m.group(3).lower() != EXTERNAL.lower() or EXTERNAL not in OBJECTS[sobject]["fields"]:
            raise Refused(404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: %s"
                          % m.group(3))
        value = unquote(m.group(4))
        with lock:
            st["lookups"].append(value)
            rid = by_external(sobject, value)
            if rid is None:
                count("NOT_FOUND")
                return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
            fields = dict(st["records"][sobject][rid])
        base = "/services/data/v%s.0/sobjects/%s/" % (m.group(1), sobject)
        return 200, dict({"attributes": {"type": sobject, "url": base + rid}, "Id": rid}, **fields)

    def collections(self, url, raw):
        m = re.fullmatch(r"/services/data/v(\d+)\.0/composite/sobjects(?:/([^/]+)/([^/]+))?/?", url.path)
        if not m or not 42 <= int(m.group(1)) <= LATEST or m.group(2) and int(m.group(1)) < 46:
            raise Refused(404, "NOT_FOUND", "The requested resource does not exist")
        allowed = ["PATCH"] if m.group(2) else ["POST", "DELETE"]
        if self.command not in allowed:
            raise Refused(405, "METHOD_NOT_ALLOWED", "HTTP Method '%s' not allowed. Allowed are %s"
                          % (self.command, ",".join(allowed)))
        if self.command == "DELETE":
            q = parse_qs(url.query)
            ids = [i for v in q.get("ids", []) for i in v.split(",") if i.strip()]
            if not ids:
                raise Refused(400, "MISSING_ARGUMENT", "ids not specified")
            self.limit(len(ids))
            return delete([i.strip() for i in ids], q.get("allOrNone", ["false"])[0].lower() == "true")
        sobject = m.group(2) and find_object(m.group(2))
        if m.group(2) and sobject is None:
            raise Refused(404, "NOT_FOUND", "The requested resource does not exist")
        text, body = self.json_body(raw)
        records, atomic = body.get("records"), body.get("allOrNone") or False
        if records is None:
            raise Refused(400, "MISSING_ARGUMENT", "records not specified")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records) \
                or not isinstance(atomic, bool):
            raise Refused(400, "JSON_PARSER_ERROR", "records must be an array of sObjects, allOrNone a boolean")
        self.limit(len(records))
        if not sobject:
            return create(records, text, atomic)
        field = next((f for f in OBJECTS[sobject]["fields"] if f.lower() == m.group(3).lower()), None)
        if field is None and m.group(3).lower() != "id":
            raise Refused(400, "INVALID_FIELD", "Field name provided, %s does not match an External ID, Salesforce "
                          "Id, or indexed field for %s" % (m.group(3), sobject))
        if field != EXTERNAL:
            raise Refused(400, "INVALID_FIELD", "Field name provided, %s is not an External ID or indexed field "
                          "for %s" % (field or "Id", sobject))
        return upsert(sobject, field, records, text, atomic)

    def limit(self, n):
        with lock:
            st["max_records"] = max(st["max_records"], n)
        if n > MAX_RECORDS:
            raise Refused(400, "EXCEEDED_ID_LIMIT",
                          "record limit reached. cannot submit more than %d records into this call" % MAX_RECORDS)

    def json_body(self, raw):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refused(415, "UNSUPPORTED_MEDIA_TYPE",
                          "Content-Type header specified in HTTP request is not supported: %s" % ctype)
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError as e:
            raise Refused(400, "JSON_PARSER_ERROR", "Unexpected character at [line:%d, column:%d]"
                          % (getattr(e, "lineno", 1), getattr(e, "colno", 1)))
        if not isinstance(body, dict):
            raise Refused(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject collection "
                          "from START_ARRAY value [ or request may be missing a required field at [line:1, column:1]")
        return text, body

    # -- control

    def state(self):
        with lock:
            members = {}
            for mid, m in st["records"]["CampaignMember"].items():
                person = {p: m[p] for p in ("ContactId", "LeadId") if m.get(p)}
                members.setdefault(m["CampaignId"], []).append(dict({"id": mid}, **person))
            body = {"records": {o: r for o, r in st["records"].items() if o != "CampaignMember"},
                    "campaign_members": members, "deleted": sorted(st["deleted"]), "quota_left": st["quota"]}
            for k in ("calls", "wrong_host", "token_requests", "grants", "unauthorized", "codes",
                      "max_records", "refresh_token", "lookups"):
                body[k] = st[k]
            body = json.loads(json.dumps(body))  # a snapshot
        self.send(200, body)

    def control(self, raw):
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("an object is expected")
            with lock:
                if body.get("expire_tokens"):
                    st["tokens"].clear()
                if "daily_quota" in body:
                    st["quota"] = None if body["daily_quota"] is None else int(body["daily_quota"])
                if "lock_once" in body:
                    st["lock_once"] = [str(v) for v in body["lock_once"]]
                if "token_down" in body:
                    st["token_down"] = bool(body["token_down"])
                if "delay_ms" in body:
                    st["delay_ms"] = max(0, int(body["delay_ms"]))
                if "fail_after_write" in body:
                    st["fail_after_write"] = max(0, int(body["fail_after_write"]))
        except (ValueError, TypeError) as e:
            return self.send(400, {"ok": False, "error": str(e)})
        self.send(200, {"ok": True})


class Instance(Handler):
    instance = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0, help="the My Domain server's port")
    ap.add_argument("--instance-port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--refresh-token", help="the valid refresh token at start")
    ap.add_argument("--rotate-refresh", action="store_true", help="each refresh answers a new refresh token")
    ap.add_argument("--campaign", action="append", help="a Campaign id that exists (repeatable)")
    args = ap.parse_args()
    CONF.update(client_id=args.client_id, client_secret=args.client_secret, rotate=args.rotate_refresh)
    st["refresh_token"] = args.refresh_token
    for raw in args.campaign or ["701000000000001AAA"]:
        cid = canonical(raw)
        if cid is None or not cid.startswith("701"):
            ap.error("--campaign %s: not a Campaign id (701..., 15 or 18 characters)" % raw)
        st["records"]["Campaign"][cid] = {"Name": "Campaign %s" % cid}

    def ready(ports):
        CONF["login_url"], CONF["instance_url"] = ("http://127.0.0.1:%d" % p for p in ports)

    serve_many([(Handler, args.port), (Instance, args.instance_port)], args.port_file, ready)


if __name__ == "__main__":
    main()
