#!/usr/bin/python3
"""A local emulator of HubSpot's CRM v3 object batch API, for tests.

Usage:
    /usr/bin/python3 test/emulators/hubspot.py --port-file FILE --token TOKEN

From HubSpot's OpenAPI specification (HubSpot-public-api-spec-collection:
PublicApiSpecs/CRM/Objects/.../v3/objects.json) and its error-handling guide:
  POST /crm/v3/objects/{objectType}/batch/upsert
      {"inputs": [{"id", "idProperty", "properties": {name: string},
                   "objectWriteTraceId"}]}: at most 100 inputs; "id" and
      "properties" required, every property value a string; idProperty a
      unique property of the object (contacts: email; companies: domain).
      200 {"status": "COMPLETE", "results": [...], "startedAt", "completedAt"}
      when all were upserted, 207 adding "numErrors" and "errors": [{"status":
      "error", "category": "VALIDATION_ERROR", "message", "context":
      {"objectWriteTraceId": [trace]}}] when some were not (an email without
      "@" is invalid).  Each result: {"id", "new", "properties",
      "objectWriteTraceId", "createdAt", "updatedAt"}; results come in no
      particular order (here: reversed).
      A malformed request is 400 {"status": "error", "category":
      "VALIDATION_ERROR", "message"}.
  PUT  /crm/v3/lists/{listId}/memberships/add and /remove
      a JSON array of record id strings (list 42, a MANUAL list, exists);
      200 {"recordsIdsAdded" (sic) | "recordIdsRemoved", "recordIdsMissing"}.
  POST /crm/v3/objects/{objectType}/batch/archive
      {"inputs": [{"id": <HubSpot id>}]}: at most 100; 204.
  POST /crm/v3/objects/{objectType}/batch/read
      {"inputs": [{"id"}], "idProperty", "properties": [name],
       "propertiesWithHistory", "archived"}: at most 100; each id a HubSpot
      id, or with idProperty (a unique property) that property's value.
      200 {"status": "COMPLETE", "results": [{"id", "properties": {the
      properties asked for, hs_object_id}, "createdAt", "updatedAt",
      "archived": false}], "startedAt", "completedAt"}; when some are not
      found, 207 adding "numErrors" and "errors": [{"status": "error",
      "category": "OBJECT_NOT_FOUND", "message": "Could not get some CONTACT
      objects, they may be deleted or not exist. Check that ids are
      valid.", "context": {"ids": [the ids not found, as sent]}}].
  Authorization: Bearer <private app token>, or an OAuth access token,
      else 401 INVALID_AUTHENTICATION; an OAuth token past its expires_in:
      401 {"status": "error", "message": "The OAuth token used to make this
      call expired N minute(s) ago.", "category": "EXPIRED_AUTHENTICATION"}.
  POST /oauth/v1/token (HubSpot's OAuth spec, Auth/Oauth/.../v1/oauth.json,
      and its "Refresh an access token" guide), form-encoded
      grant_type=refresh_token&client_id&client_secret&refresh_token: 200
      {"token_type": "bearer", "refresh_token", "access_token", "expires_in"}
      (the same refresh token: HubSpot's do not rotate); a wrong client or
      refresh token: 400 {"status": "BAD_REFRESH_TOKEN" | "BAD_CLIENT_ID" |
      "BAD_CLIENT_SECRET", "message"}; not a form: 415.
  More than 100 requests in a rolling 10 s: 429 {"errorType": "RATE_LIMIT",
  "policyName": "TEN_SECONDLY_ROLLING"}.

Control:  POST /_control {"expire_tokens": true}: every OAuth access token
                        given so far has expired;
                        {"fail_after_write": n}: the next n upserts are
                        applied, then answered 500 (the answer lost).
          GET /_state  {"objects": {type: {hubspot id: properties}},
                        "requests", "limited", "max_inputs", "archived",
                        "read_inputs" (ids asked for by batch/read)}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import datetime
import json
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from serve import serve

UNIQUE = {"contacts": "email", "companies": "domain", "deals": "hs_object_id", "tickets": "hs_object_id"}
lock = threading.Lock()
st = {"objects": {}, "requests": 0, "limited": 0, "max_inputs": 0, "archived": 0, "times": [],
      "next_id": 1000, "lists": {"42": []}, "token_requests": 0, "expired_calls": 0, "oauth": {},
      "fail_after_write": 0, "read_inputs": []}
TOKEN = None
CONF = {}


def now():
    return datetime.datetime.utcnow().isoformat(timespec="milliseconds") + "Z"


def error(message, category="VALIDATION_ERROR", **extra):
    return dict({"status": "error", "message": message, "category": category,
                 "correlationId": "00000000-0000-4000-8000-000000000000"}, **extra)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_state":
            with lock:
                return self.send(200, {k: st[k] for k in ("objects", "requests", "limited", "max_inputs",
                                                          "archived", "lists", "token_requests",
                                                          "expired_calls", "read_inputs")})
        self.send(404, error("not found", "OBJECT_NOT_FOUND"))

    def authorized(self):
        """Whether the call carries a valid token; else the 401 is sent."""
        auth = self.headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else None
        with lock:
            if token is not None and token == TOKEN:
                return True
            expires = st["oauth"].get(token)
            if expires is not None and time.time() < expires:
                return True
            if expires is not None:
                st["expired_calls"] += 1
        if expires is not None:
            ago = int((time.time() - expires) // 60)
            self.send(401, error("The OAuth token used to make this call expired %d minute(s) ago." % ago,
                                 "EXPIRED_AUTHENTICATION"))
        else:
            self.send(401, error("Authentication credentials not found.", "INVALID_AUTHENTICATION"))
        return False

    def oauth_token(self, raw):
        if not (self.headers.get("Content-Type") or "").startswith("application/x-www-form-urlencoded"):
            return self.send(415, error("Content-Type must be application/x-www-form-urlencoded"))
        p = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        with lock:
            st["token_requests"] += 1
        if p.get("grant_type") != "refresh_token":
            return self.send(400, {"status": "BAD_GRANT_TYPE", "message": "grant_type must be refresh_token"})
        if not CONF.get("client_id") or p.get("client_id") != CONF["client_id"]:
            return self.send(400, {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"})
        if p.get("client_secret") != CONF["client_secret"]:
            return self.send(400, {"status": "BAD_CLIENT_SECRET", "message": "missing or invalid client secret"})
        if p.get("refresh_token") != CONF["refresh_token"]:
            return self.send(400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"})
        token = "CJT" + secrets.token_hex(24)
        with lock:
            st["oauth"][token] = time.time() + CONF["lifetime"]
        self.send(200, {"token_type": "bearer", "refresh_token": CONF["refresh_token"], "access_token": token,
                        "expires_in": int(CONF["lifetime"])})

    def control(self, raw):
        body = json.loads(raw or b"{}")
        with lock:
            if body.get("expire_tokens"):
                st["oauth"] = {t: 0.0 for t in st["oauth"]}
            if "fail_after_write" in body:
                st["fail_after_write"] = int(body["fail_after_write"])
        self.send(200, {"ok": True})

    def do_PUT(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        m = re.fullmatch(r"/crm/v3/lists/(\d+)/memberships/(add|remove)", self.path)
        if not m:
            return self.send(404, error("not found", "OBJECT_NOT_FOUND"))
        if not self.authorized():
            return
        with lock:
            st["requests"] += 1
            if m.group(1) not in st["lists"]:
                return self.send(404, error("List %s does not exist" % m.group(1), "OBJECT_NOT_FOUND"))
        try:
            ids = json.loads(raw)
        except ValueError:
            return self.send(400, error("Invalid input JSON"))
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return self.send(400, error("a JSON array of record id strings is expected"))
        with lock:
            members = st["lists"][m.group(1)]
            known = st["objects"].get("contacts", {})
            missing = [i for i in ids if i not in known]
            if m.group(2) == "add":
                added = [i for i in ids if i in known and i not in members]
                members.extend(added)
                # (sic): the answer's field is spelt this way
                return self.send(200, {"recordsIdsAdded": added, "recordIdsMissing": missing})
            removed = [i for i in ids if i in members]
            st["lists"][m.group(1)] = [i for i in members if i not in ids]
            return self.send(200, {"recordIdsRemoved": removed, "recordIdsMissing": missing})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.path == "/oauth/v1/token":
            return self.oauth_token(raw)
        if self.path == "/_control":
            return self.control(raw)
        m = re.fullmatch(r"/crm/v3/objects/([A-Za-z0-9_-]+)/batch/(upsert|archive|read)", self.path)
        if not m:
            return self.send(404, error("not found", "OBJECT_NOT_FOUND"))
        if not self.authorized():
            return
        t = time.time()
        with lock:
            st["requests"] += 1
            st["times"] = [x for x in st["times"] if t - x < 10.0] + [t]
            if len(st["times"]) > 100:
                st["limited"] += 1
                return self.send(429, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                                       "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"})
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self.send(415, error("Content-Type must be application/json"))
        try:
            body = json.loads(raw)
        except ValueError:
            return self.send(400, error("Invalid input JSON"))
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return self.send(400, error("inputs: a non-empty array is required"))
        if len(inputs) > 100:
            return self.send(400, error("Batch input cannot exceed 100 inputs."))
        otype = m.group(1)
        with lock:
            st["max_inputs"] = max(st["max_inputs"], len(inputs))
            store = st["objects"].setdefault(otype, {})
        if m.group(2) == "archive":
            for i in inputs:
                if not isinstance(i, dict) or not isinstance(i.get("id"), str):
                    return self.send(400, error("each input needs an id"))
            with lock:
                for i in inputs:
                    if store.pop(i["id"], None) is not None:
                        st["archived"] += 1
            return self.send(204)
        if m.group(2) == "read":
            return self.read(otype, store, body, inputs)
        results, errors = [], []
        for i in inputs:
            if not isinstance(i, dict) or "id" not in i or not isinstance(i.get("properties"), dict):
                return self.send(400, error("each input needs id and properties"))
            if not all(isinstance(v, str) for v in i["properties"].values()):
                return self.send(400, error("property values must be strings"))
            idp = i.get("idProperty")
            if idp != UNIQUE.get(otype, idp):
                return self.send(400, error("%s is not a unique property of %s" % (idp, otype)))
        with lock:
            for i in inputs:
                props = i["properties"]
                trace = i.get("objectWriteTraceId")
                if otype == "contacts" and "email" in props and "@" not in props["email"]:
                    errors.append(error("Property values were not valid: email %r is invalid" % props["email"],
                                        context={"objectWriteTraceId": [trace]} if trace else {}))
                    continue
                hid = next((k for k, v in store.items() if v.get(i["idProperty"]) == i["id"]), None)
                new = hid is None
                if new:
                    st["next_id"] += 1
                    hid = str(st["next_id"])
                    store[hid] = {}
                store[hid].update(props)
                store[hid][i["idProperty"]] = i["id"]
                results.append({"id": hid, "new": new, "properties": dict(store[hid]),
                                "objectWriteTraceId": trace, "createdAt": now(), "updatedAt": now()})
        results.reverse()
        with lock:
            lost = st["fail_after_write"] > 0
            if lost:
                st["fail_after_write"] -= 1
        if lost:
            return self.send(500, error("internal error", "INTERNAL_ERROR"))
        answer = {"status": "COMPLETE", "results": results, "startedAt": now(), "completedAt": now()}
        if errors:
            answer["numErrors"] = len(errors)
            answer["errors"] = errors
            return self.send(207, answer)
        self.send(200, answer)

    def read(self, otype, store, body, inputs):
        idp = body.get("idProperty")
        props = body.get("properties") or []
        if idp is not None and idp != UNIQUE.get(otype, idp):
            return self.send(400, error("%s is not a unique property of %s" % (idp, otype)))
        if not isinstance(props, list) or not all(isinstance(p, str) for p in props):
            return self.send(400, error("properties: an array of property names is expected"))
        for i in inputs:
            if not isinstance(i, dict) or not isinstance(i.get("id"), str):
                return self.send(400, error("each input needs an id"))
        results, missing = [], []
        with lock:
            for i in inputs:
                st["read_inputs"].append(i["id"])
                if idp is None:
                    hid = i["id"] if i["id"] in store else None
                else:
                    # unique values match whatever their case (emails)
                    hid = next((k for k, v in store.items()
                                if str(v.get(idp, "")).lower() == i["id"].lower()), None)
                if hid is None:
                    missing.append(i["id"])
                    continue
                found = {p: store[hid].get(p) for p in props if p in store[hid]}
                found["hs_object_id"] = hid
                results.append({"id": hid, "properties": found, "createdAt": now(), "updatedAt": now(),
                                "archived": False})
        answer = {"status": "COMPLETE", "results": results, "startedAt": now(), "completedAt": now()}
        if not missing:
            return self.send(200, answer)
        answer["numErrors"] = 1
        answer["errors"] = [error("Could not get some %s objects, they may be deleted or not exist. "
                                  "Check that ids are valid." % otype.upper().rstrip("S"),
                                  "OBJECT_NOT_FOUND", context={"ids": missing})]
        self.send(207, answer)


def main():
    global TOKEN
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--token", required=True, help="the private app token")
    ap.add_argument("--client-id")
    ap.add_argument("--client-secret")
    ap.add_argument("--refresh-token")
    ap.add_argument("--token-lifetime", type=float, default=1800)
    args = ap.parse_args()
    TOKEN = args.token
    CONF.update(client_id=args.client_id, client_secret=args.client_secret, refresh_token=args.refresh_token,
                lifetime=args.token_lifetime)
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
