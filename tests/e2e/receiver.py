#!/usr/bin/env python3
"""A local webhook receiver for the e2e suite: stands in for the pager and chat integrations
that deploy/alertmanager/alertmanager.yml would notify.

Listens on 127.0.0.1 on a free port (written to PORT_FILE once bound), answers every POST with
200 and appends one JSON line per request to OUT_FILE: {"path": ..., "body": <parsed JSON or
text>}. Standard library only. Usage: receiver.py PORT_FILE OUT_FILE
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT_FILE, OUT_FILE = sys.argv[1], sys.argv[2]
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with LOCK, open(OUT_FILE, "a", encoding="utf-8") as out:
            out.write(json.dumps({"path": self.path, "body": body}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802 (a liveness probe for the harness)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w", encoding="utf-8") as f:
    f.write(str(server.server_address[1]))
os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
