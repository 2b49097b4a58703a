"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real registry.

Each rule matches a request path (regex) and fires a limited number of times:
    status(code, headers)   answer `code` instead of forwarding (429 with Retry-After, 503, ...)
    cut_after(n)            forward, but close the connection after n bytes of the body
    stall_after(n, seconds) forward n bytes of the body, then go silent
    corrupt()               flip one byte in the middle of the body
    redirect(query)         answer 307 to the same path with `query` appended, as a registry
                            redirects to a pre-signed storage URL (match the path with `$`, so
                            that the redirected request is forwarded)
    redirect_to(location)   answer 307 to `location`, a URL on another host
    body(code, data, headers)  answer `data` as the body, instead of forwarding
    wrong_length(extra)     forward, but declare `extra` more bytes than the body has, then close
    drop()                  close the connection without an answer (a server or proxy that dies)
Range requests are forwarded, so a client's resume reaches the registry. Every Authorization
header the proxy receives is kept in `authorizations`.
"""

import http.server
import re
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field

import requests

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


@dataclass
class Rule:
    pattern: str
    action: str
    times: int = 1
    code: int = 0
    headers: dict = field(default_factory=dict)
    after: int = 0
    seconds: float = 0.0
    query: str = ""
    location: str = ""
    data: bytes = b""
    extra: int = 0
    fired: int = 0

    def matches(self, method, path):
        return self.fired < self.times and re.search(self.pattern, path) is not None


class FaultProxy:
    def __init__(self, upstream_url, bind="127.0.0.1"):
        self.upstream = upstream_url.rstrip("/")
        self.rules = []
        self.log = []  # (method, path, range header, status or action)
        self.authorizations = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy._handle(self)

            do_HEAD = do_GET

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._server = Server((bind, 0), Handler)
        self.host = f"{bind}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def toolbox_config_toml(self):
        return f'[registries."{self.host}"]\ninsecure = true\n'

    def add(self, pattern, action, **kw):
        rule = Rule(pattern, action, **kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def _take_rule(self, method, path):
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.fired += 1
                    return rule
        return None

    def _handle(self, handler):
        rule = self._take_rule(handler.command, handler.path)
        self.log.append((handler.command, handler.path, handler.headers.get("Range"),
                         rule.action if rule else "forward"))
        if handler.headers.get("Authorization"):
            self.authorizations.append(handler.headers["Authorization"])
        if rule is not None and rule.action == "drop":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if rule is not None and rule.action in ("redirect", "redirect_to"):
            handler.send_response(307)
            handler.send_header("Location",
                                rule.location if rule.action == "redirect_to" else handler.path + rule.query)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if rule is not None and rule.action == "body":
            handler.send_response(rule.code or 200)
            for key, value in rule.headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(rule.data)))
            handler.end_headers()
            handler.wfile.write(rule.data)
            return
        if rule is not None and rule.action == "status":
            body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}'
            handler.send_response(rule.code)
            for key, value in rule.headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
        upstream = requests.request(handler.command, self.upstream + handler.path, headers=headers,
                                    stream=True, allow_redirects=False)
        body = upstream.raw.read(decode_content=False) if handler.command != "HEAD" else b""
        handler.send_response(upstream.status_code)
        for key, value in upstream.headers.items():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                handler.send_header(key, value)
        declared = len(body) + (rule.extra if rule is not None and rule.action == "wrong_length" else 0)
        handler.send_header("Content-Length",
                            (upstream.headers.get("Content-Length", str(len(body)))
                             if handler.command == "HEAD" else str(declared)))
        handler.end_headers()
        if rule is None:
            handler.wfile.write(body)
        elif rule.action == "wrong_length":
            handler.wfile.write(body)
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)
        elif rule.action == "cut_after":
            handler.wfile.write(body[: rule.after])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)
        elif rule.action == "stall_after":
            handler.wfile.write(body[: rule.after])
            handler.wfile.flush()
            time.sleep(rule.seconds)
            handler.close_connection = True
        elif rule.action == "corrupt":
            middle = len(body) // 2
            handler.wfile.write(body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :])
