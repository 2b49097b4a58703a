"""A Docker token server (distribution's docs/spec/auth/token.md and jwt.md) for a test registry.

GET /token?service=S&scope=repository:NAME:pull,push[&scope=...] with optional Basic auth:
- no credentials: `pull` on repositories under `public/`, nothing else (the registry then answers
  401, as Docker Hub does for a private or missing repository);
- the configured user: every action asked for, on every repository;
- wrong credentials: 401 with a Basic challenge.

Tokens are ES256 JWTs whose `kid` is the libtrust key ID of a key the registry trusts through its
`rootcertbundle`. Requests are recorded so tests can check that a token is reused or renewed.
"""

import base64
import binascii
import contextlib
import datetime
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .pki import SigningKey


@dataclass(frozen=True)
class TokenRequest:
    time: float
    path: str
    service: str | None
    scopes: tuple
    account: str | None  # the Basic-auth user, None when anonymous
    status: int


class TokenServer:
    def __init__(self, directory, service, issuer, username="bob", password=None, expires_in=300,
                 public_prefix="public/", tls=None):
        self.signing_key = SigningKey.create(directory)
        self.tls = tls  # pki.CertFiles to serve HTTPS, or None for HTTP
        self.service = service
        self.issuer = issuer
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        # Both may be changed while running (see `expiring_in`); read on every request.
        self.expires_in = expires_in
        # Added to the `exp` claim only (not to expires_in). distribution 2.8 allows 60 s of clock
        # skew, so a token is refused once exp is more than 60 s in the past: see issuing_stale_tokens.
        self.exp_offset = 0
        self.public_prefix = public_prefix
        self._requests = []
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None

    # -- lifecycle

    def start(self):
        handler = type("Handler", (_Handler,), {"token_server": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def realm(self):
        return f"{self.url}/token"

    @property
    def cert_file(self):
        return self.signing_key.cert_file

    # -- what tests look at

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self):
        with self._lock:
            return len(self._requests)

    def reset(self):
        with self._lock:
            self._requests.clear()

    @contextlib.contextmanager
    def expiring_in(self, seconds):
        """Issue tokens with `expires_in` = seconds for the duration of the block."""
        before, self.expires_in = self.expires_in, seconds
        try:
            yield self
        finally:
            self.expires_in = before

    @contextlib.contextmanager
    def issuing_stale_tokens(self):
        """Tokens issued in the block say expires_in as usual, but the registry refuses them (their
        exp claim is an hour ago): for testing that a client renews a token that stops working."""
        before, self.exp_offset = self.exp_offset, -3600
        try:
            yield self
        finally:
            self.exp_offset = before

    # -- the policy

    def granted(self, account, scope):
        """The access entry for one requested scope, or None when nothing of it is granted."""
        parts = scope.split(":")
        if len(parts) < 3:
            return None
        # A repository name never contains ':', but a registry host with a port could.
        kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
        if account == self.username:
            allowed = [a for a in actions if a]
        elif kind == "repository" and name.startswith(self.public_prefix):
            allowed = [a for a in actions if a == "pull"]
        else:
            allowed = []
        return {"type": kind, "name": name, "actions": allowed}

    def issue(self, account, scopes):
        now = int(time.time())
        expires_in = int(self.expires_in)
        access = [entry for entry in (self.granted(account, s) for s in scopes) if entry is not None]
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,
            "exp": now + expires_in + self.exp_offset,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(12),
            "access": access,
        }
        token = self.signing_key.sign_jwt({}, claims)
        issued_at = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"token": token, "access_token": token, "expires_in": expires_in, "issued_at": issued_at}

    def _record(self, request):
        with self._lock:
            self._requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    token_server = None  # set on the subclass made in TokenServer.start
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _send_json(self, status, body, extra_headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra_headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _basic_credentials(self):
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return ("", "")
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ("", "")
        return (user, password)

    def do_GET(self):
        server = self.token_server
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        service = query.get("service", [None])[0]
        # A scope value may itself hold several space-separated scopes (token.md).
        scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
        creds = self._basic_credentials()

        def record(status, account):
            server._record(TokenRequest(time.time(), url.path, service, scopes, account, status))

        if url.path != "/token":
            record(404, None)
            self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
            return
        if creds is not None and creds != (server.username, server.password):
            record(401, creds[0])
            self._send_json(401,
                            {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]},
                            [("WWW-Authenticate", 'Basic realm="toolbox-test-token"')])
            return
        if service is not None and service != server.service:
            record(400, creds and creds[0])
            self._send_json(400, {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]})
            return
        account = creds[0] if creds else None
        record(200, account)
        self._send_json(200, server.issue(account, scopes))
