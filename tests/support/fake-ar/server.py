#!/usr/bin/env python3
"""Fake Adresseregisteret (SOAP GetCommunicationPartyDetails) for the nhn plugin's tests.

    server.py HERID=ANSWER.xml ... [--default NOT_FOUND.xml] [--hang HERID]

Plain HTTP on 127.0.0.1, port chosen by the OS; the first line on stdout is "LISTENING <port>".
Each POST is answered with the file mapped to the <herId> in its body (NHN's sample answers in
tests/data/nhn/registries), else the default (the not-found fault, HTTP 500 as SOAP 1.2 does).
GET /_test/calls returns the number of lookups answered. A lookup of the --hang HER-id is never
answered: the server reads until the client closes the connection, and GET /_test/held lists how
long each such connection was held open, in ms (comma-separated).
"""
import http.server
import re
import sys
import threading
import time

answers, default, calls, hang, held = {}, None, [0], set(), []
lock = threading.Lock()
args = sys.argv[1:]
while args:
    a = args.pop(0)
    if a == "--default":
        default = open(args.pop(0), "rb").read()
    elif a == "--hang":
        hang.add(args.pop(0))
    else:
        her, path = a.split("=", 1)
        answers[her] = open(path, "rb").read()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, body, ctype="application/soap+xml; charset=utf-8"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/_test/calls":
            return self.reply(200, str(calls[0]).encode(), "text/plain")
        if self.path == "/_test/held":
            with lock:
                return self.reply(200, ",".join(str(h) for h in held).encode(), "text/plain")
        self.reply(404, b"")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        m = re.search(r"<herId>(\d+)</herId>", body)
        with lock:
            calls[0] += 1
        if m and m.group(1) in hang:
            start = time.monotonic()
            while self.rfile.read(1):  # until the client gives up and closes
                pass
            with lock:
                held.append(int((time.monotonic() - start) * 1000))
            self.close_connection = True
            return
        if m and m.group(1) in answers:
            return self.reply(200, answers[m.group(1)])
        self.reply(500, default or b"")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("LISTENING", server.server_address[1], flush=True)
server.serve_forever()
