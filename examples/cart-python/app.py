#!/usr/bin/env python3
"""A shopping cart kept in the Tandem session: Python standard library only.

Tandem runs this as the cluster's application (kind "process"): it sets PORT
and TANDEM_SERVER, sends the session in Tandem-Session-Id and Tandem-Session
(base64url JSON object), and keeps what comes back in Tandem-Session-Set
(base64url JSON merge patch; null deletes a key) or Tandem-Session-Invalidate.

  GET  /healthz             200 ok (500 when FAIL_HEALTH=1: a broken release)
  GET  /cart                the cart
  POST /cart/add?item=NAME  appends NAME to the cart
  POST /logout              ends the session
  GET  /events              three server-sent events (streams)

With CART_TEST_ROUTES=1 (Tandem's tests) also:
  GET  /test/bad-set        answers a malformed Tandem-Session-Set
  GET  /test/slow?s=N       answers after N seconds
  GET  /test/big?kib=N      answers N KiB (streams through Tandem)
"""
import base64
import json
import os
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def version():
    """APP_VERSION, else the VERSION file shipped in the archive beside this file, else v1."""
    if os.environ.get("APP_VERSION"):
        return os.environ["APP_VERSION"]
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION")) as f:
            return f.read().strip() or "v1"
    except OSError:
        return "v1"


VERSION = version()
SERVER = os.environ.get("TANDEM_SERVER", "")


def b64decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64encode(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive to the managed server

    def session(self):
        raw = self.headers.get("Tandem-Session", "")
        return json.loads(b64decode(raw)) if raw else {}

    def answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def cart_answer(self, cart, headers=None):
        self.answer(200, {"server": SERVER, "app": "cart-python", "version": VERSION,
                          "session": self.headers.get("Tandem-Session-Id", ""), "cart": cart}, headers)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/healthz":
            if os.environ.get("FAIL_HEALTH") == "1":
                print("health check failing on purpose (FAIL_HEALTH=1)", file=sys.stderr, flush=True)
                return self.answer(500, {"ok": False})
            return self.answer(200, {"ok": True})
        if url.path == "/cart":
            return self.cart_answer(self.session().get("cart", []))
        if url.path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(3):
                self.wfile.write(f"data: {i}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.05)
            self.close_connection = True
            return
        if os.environ.get("CART_TEST_ROUTES") == "1":
            if url.path == "/test/bad-set":
                return self.answer(200, {"ok": True}, {"Tandem-Session-Set": "%%% not base64 %%%"})
            if url.path == "/test/slow":
                time.sleep(float(q.get("s", ["1"])[0]))
                return self.answer(200, {"slept": True})
            if url.path == "/test/big":
                data = b"x" * (1024 * int(q.get("kib", ["1"])[0]))
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
        self.answer(404, {"error": "not found"})

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if url.path == "/cart/add":
            cart = self.session().get("cart", []) + [q.get("item", ["?"])[0]]
            patch = b64encode(json.dumps({"cart": cart}).encode())
            return self.cart_answer(cart, {"Tandem-Session-Set": patch})
        if url.path == "/logout":
            return self.answer(200, {"ok": True}, {"Tandem-Session-Invalidate": "1"})
        self.answer(404, {"error": "not found"})

    def log_message(self, fmt, *args):
        pass  # the managed server's log has the requests


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"cart-python {VERSION} on 127.0.0.1:{port} for {SERVER}", file=sys.stderr, flush=True)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
