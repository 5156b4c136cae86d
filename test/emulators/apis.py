#!/usr/bin/python3
"""Local emulators of the kinds of API the http connector reaches, for tests.

Usage:
    /usr/bin/python3 test/emulators/apis.py --port 0 --port-file FILE [--token TOKEN]

Each checks what such a server checks and answers as it answers:

  GraphQL (the GraphQL over HTTP spec: https://graphql.github.io/graphql-over-http/)
    POST /graphql            Content-Type application/json, {"query", "variables"};
                             a mutation upsertUser(id, email) or deleteUser(id).
                             Errors come as 200 {"errors": [...]}, as GraphQL does:
                             a malformed request, a missing variable, or a failure
                             injected with /_fail.
  REST
    PUT    /users/{id}       JSON object {"email", "name"}: 200 (201 when new)
    DELETE /users/{id}       204, 404 when there is none
    POST   /contacts         JSON object: 201 {"id": "c-<n>"} (the server's id)
    POST   /contacts/{id}    an update (as Stripe's API has it): 200 {"id"}; 404
                             for an id it never gave
    DELETE /contacts/{id}    204; 404 for an id it never gave
    POST   /bulk             {"items": [...]}: 1 to 5 objects, each with "id"; 400 else.
                             Answers {"results": [{"id", "status": "ok" | "error",
                             "message"}]}, one per item in order (an item whose "v"
                             is "bad" is refused), with 207 when some were refused
  SOAP 1.1 (https://www.w3.org/TR/2000/NOTE-SOAP-20000508/)
    POST /soap               Content-Type text/xml, SOAPAction "urn:UpdateUser", an
                             Envelope whose Body holds UpdateUser(Id, Name); answers a
                             soap:Fault with HTTP 500 when failing (injected) or the
                             envelope is wrong, else an UpdateUserResponse.

Every API requires "Authorization: Bearer <token>" when --token is given (401
otherwise).  Control (paths starting with /_):
    GET  /_state             {"users": {...}, "contacts": {...}, "bulk": {...},
                              "soap": {...}, "requests": [...]}
    POST /_fail              {"api": "graphql"|"soap"|"rest", "count": n}: fail the
                              next n requests of that API the way it fails

Stdlib only, bound to 127.0.0.1 only.
"""

import argparse
import json
import re
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler

from serve import serve

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
lock = threading.Lock()
state = {"users": {}, "contacts": {}, "bulk": {}, "soap": {}, "requests": [], "fail": {}}
next_contact = [0]
TOKEN = None


def failing(api):
    with lock:
        n = state["fail"].get(api, 0)
        if n > 0:
            state["fail"][api] = n - 1
            return True
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None, ctype="application/json", headers=()):
        data = b""
        if body is not None:
            data = (json.dumps(body) if not isinstance(body, str) else body).encode("utf-8")
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def json_body(self, raw):
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return None, "Content-Type must be application/json"
        try:
            return json.loads(raw), None
        except ValueError as e:
            return None, "malformed JSON: %s" % e

    def authorized(self):
        if TOKEN is None:
            return True
        if self.headers.get("Authorization") == "Bearer " + TOKEN:
            return True
        self.send(401, {"error": "unauthorized"}, headers=[("WWW-Authenticate", "Bearer")])
        return False

    def record(self, raw):
        with lock:
            state["requests"].append({
                "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": raw.decode("utf-8", "replace")})

    def do_GET(self):
        if self.path == "/_state":
            with lock:
                return self.send(200, {k: v for k, v in state.items() if k != "fail"})
        self.send(404, {"error": "not found"})

    def do_POST(self):
        raw = self.body()
        if self.path == "/_fail":
            spec = json.loads(raw)
            with lock:
                state["fail"][spec["api"]] = int(spec.get("count", 1))
            return self.send(200, {"ok": True})
        self.record(raw)
        if not self.authorized():
            return
        if self.path == "/graphql":
            return self.graphql(raw)
        if self.path == "/soap":
            return self.soap(raw)
        m = re.fullmatch(r"/contacts/([^/?#]+)", self.path)
        if m:  # an update by the server's id, as Stripe's POST /v1/customers/{id}
            obj, err = self.json_body(raw)
            if err or not isinstance(obj, dict):
                return self.send(400, {"error": err or "a JSON object is expected"})
            with lock:
                if m.group(1) not in state["contacts"]:
                    return self.send(404, {"error": "no such contact"})
                state["contacts"][m.group(1)] = obj
            return self.send(200, {"id": m.group(1)})
        if self.path == "/contacts":
            obj, err = self.json_body(raw)
            if err or not isinstance(obj, dict):
                return self.send(400, {"error": err or "a JSON object is expected"})
            with lock:
                next_contact[0] += 1
                cid = "c-%d" % next_contact[0]
                state["contacts"][cid] = obj
            return self.send(201, {"id": cid})
        if self.path == "/bulk":
            obj, err = self.json_body(raw)
            items = obj.get("items") if isinstance(obj, dict) else None
            if err or not isinstance(items, list) or not 1 <= len(items) <= 5 or \
                    not all(isinstance(i, dict) and "id" in i for i in items):
                return self.send(400, {"error": err or "items: 1 to 5 objects with an id"})
            results = []
            with lock:
                for i in items:
                    if i.get("v") == "bad":
                        results.append({"id": i["id"], "status": "error", "message": "v is not valid"})
                    else:
                        state["bulk"][str(i["id"])] = i
                        results.append({"id": i["id"], "status": "ok"})
            # one result per item, in order; 207 when some failed
            failed = any(r["status"] != "ok" for r in results)
            return self.send(207 if failed else 200, {"received": len(items), "results": results})
        self.send(404, {"error": "not found"})

    def do_PUT(self):
        raw = self.body()
        self.record(raw)
        if not self.authorized():
            return
        m = re.fullmatch(r"/(users)/([^/?#]+)", self.path)
        if not m:
            return self.send(404, {"error": "not found"})
        if failing("rest"):
            return self.send(503, {"error": "unavailable"}, headers=[("Retry-After", "1")])
        obj, err = self.json_body(raw)
        if err or not isinstance(obj, dict):
            return self.send(400, {"error": err or "a JSON object is expected"})
        with lock:
            coll = state[m.group(1)]
            if m.group(1) == "contacts" and m.group(2) not in coll:
                return self.send(404, {"error": "no such contact"})
            new = m.group(2) not in coll
            coll[m.group(2)] = obj
        self.send(201 if new else 200, {"id": m.group(2)})

    def do_DELETE(self):
        raw = self.body()
        self.record(raw)
        if not self.authorized():
            return
        m = re.fullmatch(r"/(users|contacts)/([^/?#]+)", self.path)
        if not m:
            return self.send(404, {"error": "not found"})
        with lock:
            coll = state[m.group(1)]
            if m.group(2) not in coll:
                return self.send(404, {"error": "not found"})
            del coll[m.group(2)]
        self.send(204)

    def graphql(self, raw):
        req, err = self.json_body(raw)
        if err:
            return self.send(400, {"errors": [{"message": err}]})
        if not isinstance(req, dict) or not isinstance(req.get("query"), str):
            return self.send(200, {"errors": [{"message": "query must be a string"}]})
        q = req["query"]
        v = req.get("variables") or {}
        if failing("graphql"):
            return self.send(200, {"data": None, "errors": [
                {"message": "Service busy, try again", "extensions": {"code": "UNAVAILABLE"}}]})
        if "mutation" not in q:
            return self.send(200, {"errors": [{"message": "only mutations are accepted here"}]})
        if "upsertUser" in q:
            if not isinstance(v.get("id"), str) or "email" not in v:
                return self.send(200, {"errors": [{"message": "Variable \"$id\" and \"$email\" are required"}]})
            with lock:
                state["users"][v["id"]] = {"email": v["email"]}
            return self.send(200, {"data": {"upsertUser": {"id": v["id"]}}})
        if "deleteUser" in q:
            with lock:
                state["users"].pop(str(v.get("id")), None)
            return self.send(200, {"data": {"deleteUser": {"id": v.get("id")}}})
        return self.send(200, {"errors": [{"message": "unknown mutation"}]})

    def fault(self, code, text):
        env = ('<?xml version="1.0"?><soap:Envelope xmlns:soap="%s"><soap:Body><soap:Fault>'
               '<faultcode>soap:%s</faultcode><faultstring>%s</faultstring>'
               '</soap:Fault></soap:Body></soap:Envelope>') % (SOAP_ENV, code, text)
        self.send(500, env, ctype="text/xml; charset=utf-8")

    def soap(self, raw):
        if not (self.headers.get("Content-Type") or "").startswith("text/xml"):
            return self.fault("Client", "Content-Type must be text/xml")
        if self.headers.get("SOAPAction") != '"urn:UpdateUser"':
            return self.fault("Client", "unknown SOAPAction")
        try:
            root = ET.fromstring(raw)
        except ET.ParseError as e:
            return self.fault("Client", "malformed XML: %s" % e)
        body = root.find("{%s}Body" % SOAP_ENV)
        if root.tag != "{%s}Envelope" % SOAP_ENV or body is None:
            return self.fault("Client", "not a SOAP envelope")
        op = body.find("UpdateUser")
        if op is None or op.find("Id") is None or op.find("Name") is None:
            return self.fault("Client", "UpdateUser(Id, Name) expected")
        if failing("soap"):
            return self.fault("Server", "database unavailable")
        with lock:
            state["soap"][op.find("Id").text] = op.find("Name").text or ""
        env = ('<?xml version="1.0"?><soap:Envelope xmlns:soap="%s"><soap:Body>'
               '<UpdateUserResponse><Result>ok</Result></UpdateUserResponse>'
               '</soap:Body></soap:Envelope>') % SOAP_ENV
        self.send(200, env, ctype="text/xml; charset=utf-8")


def main():
    global TOKEN
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--token")
    args = ap.parse_args()
    TOKEN = args.token
    serve(Handler, args.port, args.port_file)


if __name__ == "__main__":
    main()
