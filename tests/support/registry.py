"""Debian's docker-registry (CNCF distribution 2.8) on 127.0.0.1, in one of five modes.

- plain: HTTP, anonymous;
- tls:   HTTPS with a certificate for 127.0.0.1 and localhost from a throwaway CA (`ca_file`);
- basic: HTTPS and htpasswd (bcrypt) auth for user "alice";
- token: HTTP, Docker token auth against `token_server` (a TokenServer on 127.0.0.1, HTTP),
         whose user "bob" may push and pull everything and anonymous users may pull `public/*`;
- token_tls: the same over HTTPS, registry and token server both with certificates from `ca_file`
         (a client that trusts a registry's HTTPS should refuse to send a password to an HTTP
         realm, so this is the mode to test credentials with a verified registry).

The registry cannot listen on port 0 and tell us the port, so a free port is found by binding a
socket, released, and the start retried on the rare conflict.
"""

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

from .pki import CertificateAuthority
from .token_server import TokenServer

BINARY_NAMES = ("docker-registry", "registry")
MODES = ("plain", "tls", "basic", "token", "token_tls")
SERVICE = "toolbox-test-registry"
ISSUER = "toolbox-test-issuer"
START_TIMEOUT = 15.0


class RegistryError(RuntimeError):
    pass


def find_registry_binary():
    for name in BINARY_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bcrypt_htpasswd_line(username, password):
    # distribution's htpasswd backend accepts bcrypt only. Cost 4 (the minimum): the registry
    # checks the hash on every request, and these passwords protect nothing.
    import bcrypt

    return f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"


class RegistryServer:
    """One docker-registry process. Use as a context manager, or call start() and stop()."""

    def __init__(self, directory, mode="plain", *, token_expires_in=300, binary=None):
        if mode not in MODES:
            raise ValueError(f"unknown registry mode {mode!r}; expected one of {', '.join(MODES)}")
        self.mode = mode
        self.directory = Path(directory)
        self.storage_dir = self.directory / "storage"
        self.config_file = self.directory / "config.yml"
        self.log_file = self.directory / "registry.log"
        self.binary = binary or find_registry_binary()
        if self.binary is None:
            raise RegistryError("docker-registry is not installed (Debian package docker-registry)")
        self.scheme = "https" if mode in ("tls", "basic", "token_tls") else "http"
        self.port = None
        self.ca_file = None
        self.username = None
        self.password = None
        self.token_server = None
        self._token_expires_in = token_expires_in
        self._process = None

    # -- addresses and credentials

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"{self.scheme}://{self.host}"

    @property
    def verify(self):
        """The `verify` argument for requests."""
        return str(self.ca_file) if self.ca_file else True

    @property
    def credentials(self):
        """(username, password) that may push, or None for an anonymous registry."""
        return (self.username, self.password) if self.username else None

    def toolbox_config_toml(self):
        """This registry's table for toolbox's config.toml (format of toolbox/config.py today)."""
        if self.ca_file:
            return f'[registries."{self.host}"]\nca_file = "{self.ca_file}"\n'
        return f'[registries."{self.host}"]\ninsecure = true\n'

    def reference(self, repository, tag_or_digest="latest"):
        sep = "@" if ":" in tag_or_digest else ":"
        return f"{self.host}/{repository}{sep}{tag_or_digest}"

    # -- lifecycle

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        auth, tls = self._prepare_security()
        last_log = ""
        for _attempt in range(5):
            self.port = free_port()
            self._write_config(auth, tls)
            self._spawn()
            try:
                self._wait_ready()
                return self
            except RegistryError:
                last_log = self._log_tail()
                self._terminate()
                if "address already in use" not in last_log:
                    break
        self.stop()
        raise RegistryError(f"docker-registry ({self.mode}) did not start; its log ends with:\n{last_log}")

    def stop(self):
        self._terminate()
        if self.token_server is not None:
            self.token_server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _prepare_security(self):
        auth = tls = ca = None
        if self.scheme == "https":
            ca = CertificateAuthority.create(self.directory / "pki")
            server = ca.issue_server_cert(self.directory / "pki")
            self.ca_file = ca.cert_file
            tls = {"certificate": str(server.cert_file), "key": str(server.key_file)}
        if self.mode == "basic":
            self.username, self.password = "alice", secrets.token_urlsafe(12)
            htpasswd = self.directory / "htpasswd"
            htpasswd.write_text(bcrypt_htpasswd_line(self.username, self.password))
            auth = {"htpasswd": {"realm": "toolbox-test-basic", "path": str(htpasswd)}}
        if self.mode in ("token", "token_tls"):
            token_tls = ca.issue_server_cert(self.directory / "pki", "token-server") if ca else None
            self.token_server = TokenServer(self.directory / "token", SERVICE, ISSUER,
                                            expires_in=self._token_expires_in, tls=token_tls).start()
            self.username, self.password = self.token_server.username, self.token_server.password
            auth = {"token": {"realm": self.token_server.realm, "service": SERVICE, "issuer": ISSUER,
                              "rootcertbundle": str(self.token_server.cert_file), "autoredirect": False}}
        return auth, tls

    def _write_config(self, auth, tls):
        http = {"addr": self.host, "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]}}
        if tls:
            http["tls"] = tls
        config = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                # The purger would otherwise wake up on its own schedule and walk the storage.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if auth:
            config["auth"] = auth
        # YAML is a superset of JSON, so no YAML library is needed to write the config.
        self.config_file.write_text(json.dumps(config, indent=2))

    def _spawn(self):
        # REGISTRY_* variables override the config file; a developer's shell must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen([self.binary, "serve", str(self.config_file)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=env, start_new_session=True)

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RegistryError(f"docker-registry exited with status {self._process.returncode}")
            try:
                response = requests.get(f"{self.url}/v2/", verify=self.verify, timeout=1)
                if response.status_code in (200, 401):
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        raise RegistryError(f"docker-registry did not answer on {self.url}/v2/ within {START_TIMEOUT} s")

    def _terminate(self):
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def _log_tail(self, lines=20):
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self):
        return self._process is not None and self._process.poll() is None

    # -- storage, for tests that need to break things

    def blob_path(self, digest):
        """Where the filesystem driver keeps a blob (manifests are blobs too)."""
        algorithm, _, hexdigest = digest.partition(":")
        return self.storage_dir / "docker/registry/v2/blobs" / algorithm / hexdigest[:2] / hexdigest / "data"

    def tamper_blob(self, digest, offset=None):
        """Corrupt a stored blob in place, keeping its size.

        The registry hashes blobs on upload, so a blob that does not match its digest can only be
        made after the push. It then serves the corrupt bytes with the right Content-Length and a
        Docker-Content-Digest header naming the original digest. Blobs are shared by every
        repository in the registry: tamper only blobs no other test uses.
        """
        path = self.blob_path(digest)
        data = bytearray(path.read_bytes())
        algorithm, _, hexdigest = digest.partition(":")
        if hashlib.new(algorithm, data).hexdigest() != hexdigest:
            return path  # already corrupt: flipping again would repair it
        position = len(data) // 2 if offset is None else offset
        data[position] ^= 0xFF
        path.write_bytes(bytes(data))
        return path

    def replace_blob(self, digest, data):
        """Store `data` under `digest` (it may differ in size: for tests of a wrong length)."""
        path = self.blob_path(digest)
        path.write_bytes(data)
        return path

    def __repr__(self):
        return f"<RegistryServer {self.mode} {self.url}>"
