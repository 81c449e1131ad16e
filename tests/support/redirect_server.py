#!/usr/bin/env python3
"""Two roles for the git-redirect tests, on a loopback address given on the command line.

Usage:
  redirect_server.py HOST LOG catch
      Answers 401 (Basic) to every request, as a git server asking for credentials.
  redirect_server.py HOST LOG redirect TARGET [TOKEN]
      Answers 302 to TARGET + the request's path and query; with TOKEN, only once the
      request carries basic auth whose password is TOKEN (401 before).

Prints `PORT <n>` on the first line of stdout; appends one line per request to LOG:
`<method> <path> auth=<Authorization header or ->`.
"""
import base64
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST, LOG, ROLE = sys.argv[1], sys.argv[2], sys.argv[3]
TARGET = sys.argv[4] if ROLE == "redirect" else None
TOKEN = sys.argv[5] if ROLE == "redirect" and len(sys.argv) > 5 else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, headers=()):
        body = b"no\n"
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authorized(self):
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except Exception:
            return False
        return password == TOKEN

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with open(LOG, "a") as log:
            auth = self.headers.get("Authorization", "-")
            log.write(f"{self.command} {self.path} auth={auth}\n")
        challenge = [("WWW-Authenticate", 'Basic realm="test"')]
        if ROLE == "catch":
            return self.reply(401, challenge)
        if TOKEN is not None and not self.authorized():
            return self.reply(401, challenge)
        return self.reply(302, [("Location", TARGET + self.path)])

    do_GET = handle_any
    do_POST = handle_any

    def log_message(self, fmt, *args):
        pass


server = ThreadingHTTPServer((HOST, 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
