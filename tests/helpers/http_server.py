"""A loopback HTTP server for tests: scripted routes, a request log, Range support.

    srv = LoopbackServer(); srv.routes["/x"] = send_bytes(data); ...; srv.close()
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["LoopbackServer", "send_bytes", "send_status", "send_json"]


class LoopbackServer:
    """Routes: path (without query) -> handler(req) where req is the request handler.
    Every request is logged as (method, path, headers)."""

    def __init__(self):
        self.routes = {}
        self.log = []
        self.closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _dispatch(self):
                if server.closed:  # a kept-alive connection after close(): hang up, as a dead host would
                    self.close_connection = True
                    return
                path = self.path.split("?", 1)[0]
                server.log.append((self.command, self.path, dict(self.headers)))
                route = server.routes.get(path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self)

            do_GET = do_HEAD = _dispatch

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def requests_to(self, path):
        return [entry for entry in self.log if entry[1].split("?", 1)[0] == path]

    def close(self):
        self.closed = True
        self.httpd.shutdown()
        self.httpd.server_close()



def send_bytes(data, *, truncate_at=None, honor_range=True, etag='"v1"', status=200, headers=None):
    """A route that serves `data` (with Range support), optionally cutting the body short."""

    def route(req):
        start = 0
        range_header = req.headers.get("Range")
        match = re.match(r"bytes=(\d+)-$", range_header or "")
        if honor_range and match and req.headers.get("If-Range", etag) == etag:
            start = int(match.group(1))
        body = data[start:]
        req.send_response(206 if start else status)
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        req.send_header("Content-Length", str(len(body)))
        if etag is not None:
            req.send_header("ETag", etag)
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.end_headers()
        if req.command == "GET":
            cut = body if truncate_at is None else body[: max(0, truncate_at - start)]
            req.wfile.write(cut)
            if truncate_at is not None and len(cut) < len(body):
                req.close_connection = True  # the client sees a short body

    return route


def send_status(code, body=b"", headers=None):
    def route(req):
        req.send_response(code)
        req.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.end_headers()
        if req.command == "GET":
            req.wfile.write(body)

    return route


def send_json(value):
    return send_bytes(json.dumps(value).encode(), headers={"Content-Type": "application/json"})
