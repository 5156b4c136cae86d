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
  Authorization: Bearer <private app token>, else 401 INVALID_AUTHENTICATION.
  More than 100 requests in a rolling 10 s: 429 {"errorType": "RATE_LIMIT",
  "policyName": "TEN_SECONDLY_ROLLING"}.

Control:  GET /_state  {"objects": {type: {hubspot id: properties}},
                        "requests", "limited", "max_inputs", "archived"}

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import datetime
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from serve import serve

UNIQUE = {"contacts": "email", "companies": "domain", "deals": "hs_object_id", "tickets": "hs_object_id"}
lock = threading.Lock()
st = {"objects": {}, "requests": 0, "limited": 0, "max_inputs": 0, "archived": 0, "times": [],
      "next_id": 1000, "lists": {"42": []}}
TOKEN = None


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
                return self.send(200, {k: st[k] for k in ("objects", "requests", "limited",
                                                          "max_inputs", "archived", "lists")})
        self.send(404, error("not found", "OBJECT_NOT_FOUND"))

    def do_PUT(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        m = re.fullmatch(r"/crm/v3/lists/(\d+)/memberships/(add|remove)", self.path)
        if not m:
            return self.send(404, error("not found", "OBJECT_NOT_FOUND"))
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self.send(401, error("Authentication credentials not found.", "INVALID_AUTHENTICATION"))
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
        m = re.fullmatch(r"/crm/v3/objects/([A-Za-z0-9_-]+)/batch/(upsert|archive)", self.path)
        if not m:
            return self.send(404, error("not found", "OBJECT_NOT_FOUND"))
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            return self.send(401, error("Authentication credentials not found.", "INVALID_AUTHENTICATION"))
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
        answer = {"status": "COMPLETE", "results": results, "startedAt": now(), "completedAt": now()}
        if errors:
            answer["numErrors"] = len(errors)
            answer["errors"] = errors
            return self.send(207, answer)
        self.send(200, answer)


def main():
    global TOKEN
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--token", required=True)
    args = ap.parse_args()
    TOKEN = args.token
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
