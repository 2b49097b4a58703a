"""Registry credentials and authentication challenges. Standard library only; the HTTP token
exchange itself lives in toolbox.oci.tokens.

Credentials are found where Docker and podman keep them, first hit wins:
  $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
  ${XDG_CONFIG_HOME:-~/.config}/containers/auth.json, ${DOCKER_CONFIG:-~/.docker}/config.json
In each: `credHelpers[registry]`, then (Docker's file) `credsStore`, then `auths`. Helpers are
`docker-credential-NAME` programs speaking the docker-credential-helpers protocol: the verb as
argument, the server URL (or JSON) on stdin, JSON on stdout.

Secrets never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from toolbox.errors import AuthError, ConfigError
from toolbox.oci.reference import canonical_registry, credential_keys, credential_server_url

TOKEN_USERNAME = "<token>"  # a helper's way of saying "Secret is an identity token"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    identity_token: str | None = field(default=None, repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def __repr__(self) -> str:
        hidden = "<hidden>" if self.password or self.identity_token else "''"
        return f"Credentials(username={self.username!r}, password={hidden})"

    __str__ = __repr__


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: tuple = ()

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


# RFC 7235: challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]; auth-param = token BWS
# "=" BWS ( token / quoted-string ). Challenges and their params share the comma separator, so a
# token followed by a space (and not by "=") starts a new challenge.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM_RE = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"?|[^,\s]*)\s*')
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?=\s|$|,)")


def parse_www_authenticate(header: str | None) -> list[Challenge]:
    """Parse a WWW-Authenticate header into challenges. Lenient: what does not parse is skipped;
    it never raises."""
    challenges = []
    text = header or ""
    pos = 0
    scheme, params = None, []
    while pos < len(text):
        if text[pos] in ", \t":
            pos += 1
            continue
        param = _PARAM_RE.match(text, pos)
        if param and scheme is not None:
            key, value = param.group(1).lower(), param.group(2)
            params.append((key, _unquote(value)))
            pos = param.end()
            continue
        scheme_match = _SCHEME_RE.match(text, pos)
        if scheme_match:
            if scheme is not None:
                challenges.append(Challenge(scheme, tuple(params)))
            scheme, params = scheme_match.group(1).lower(), []
            pos = scheme_match.end()
            token68 = re.match(r"\s+([A-Za-z0-9._~+/-]+=*)\s*(?:,|$)", text[pos:])
            if token68 and "=" not in token68.group(1).rstrip("="):
                params.append(("token68", token68.group(1)))
                pos += token68.end()
            continue
        pos += 1  # junk: skip a character and carry on
    if scheme is not None:
        challenges.append(Challenge(scheme, tuple(params)))
    return challenges


def _unquote(value):
    if value.startswith('"'):
        value = value[1:-1] if value.endswith('"') and len(value) > 1 else value[1:]
        return re.sub(r"\\(.)", r"\1", value)
    return value


class CredentialStore:
    def __init__(self, environ: Mapping[str, str] | None = None, home: str | None = None) -> None:
        self._env = os.environ if environ is None else environ
        self._home = home or self._env.get("HOME") or os.path.expanduser("~")

    # -- where to look -----------------------------------------------------------------------------
    def docker_config_path(self) -> str:
        base = self._env.get("DOCKER_CONFIG") or os.path.join(self._home, ".docker")
        return os.path.join(base, "config.json")

    def search_path(self) -> list[str]:
        paths = []
        if self._env.get("REGISTRY_AUTH_FILE"):
            paths.append(self._env["REGISTRY_AUTH_FILE"])
        if self._env.get("XDG_RUNTIME_DIR"):
            paths.append(os.path.join(self._env["XDG_RUNTIME_DIR"], "containers", "auth.json"))
        config_home = self._env.get("XDG_CONFIG_HOME") or os.path.join(self._home, ".config")
        paths.append(os.path.join(config_home, "containers", "auth.json"))
        paths.append(self.docker_config_path())
        return paths

    def _load(self, path):
        from toolbox.fsutil import (
            read_input,  # bounded, regular files only: a FIFO here would hang every pull
        )

        found = read_input(path, "credentials file")
        if found is None:
            return None
        try:
            doc = json.loads(found.data)
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path} is not valid JSON: {err}",
                              hint="fix or remove the file; `toolbox login` writes a fresh one") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path} is not a JSON object", hint="fix or remove the file")
        return doc

    # -- lookup ------------------------------------------------------------------------------------
    def lookup(self, registry: str, repository: str | None = None) -> Credentials | None:
        registry = registry.lower()
        for path in self.search_path():
            doc = self._load(path)
            if doc is None:
                continue
            found = self._lookup_in(doc, registry, repository, is_docker=path == self.docker_config_path())
            if found is not None:
                return found
        return None

    def _lookup_in(self, doc, registry, repository, is_docker):
        helpers = doc.get("credHelpers") or {}
        for key in credential_keys(registry):
            if isinstance(helpers, dict) and helpers.get(key):
                return self._helper_get(helpers[key], credential_server_url(registry))
        auths = doc.get("auths") or {}
        entry = _best_auth_entry(auths, registry, repository) if isinstance(auths, dict) else None
        if entry is not None:
            return _credentials_from_entry(entry)
        if is_docker and doc.get("credsStore"):
            return self._helper_get(doc["credsStore"], credential_server_url(registry))
        return None

    # -- helpers -----------------------------------------------------------------------------------
    def _helper_program(self, name):
        program = f"docker-credential-{name}"
        found = shutil.which(program, path=self._env.get("PATH", os.defpath))
        if not found:
            raise AuthError(f"{program} not found on PATH",
                            hint=f"install it, or remove '{name}' from credsStore/credHelpers in "
                                 f"{self.docker_config_path()}")
        return found

    def _run_helper(self, name, verb, stdin):
        try:
            return subprocess.run([self._helper_program(name), verb], input=stdin, capture_output=True,
                                  timeout=60, env=dict(self._env))
        except subprocess.TimeoutExpired:
            raise AuthError(f"docker-credential-{name} {verb} did not answer within 60 s") from None
        except OSError as err:
            raise AuthError(f"cannot run docker-credential-{name}: {err.strerror}") from None

    def _helper_get(self, name, server_url):
        result = self._run_helper(name, "get", server_url.encode())
        if result.returncode != 0:
            # "credentials not found in native keychain" is the protocol's "none", not an error.
            return None
        try:
            answer = json.loads(result.stdout)
            username, secret = answer.get("Username", ""), answer.get("Secret", "")
        except (ValueError, AttributeError):
            raise AuthError(f"docker-credential-{name} gave an answer "
                            "that is not the expected JSON") from None
        if not secret:
            return None
        if username == TOKEN_USERNAME:
            return Credentials(username, "", identity_token=secret)
        return Credentials(username, secret)

    # -- login / logout ----------------------------------------------------------------------------
    def store(self, registry: str, credentials: Credentials) -> str:
        """Store like `docker login`: through the configured helper, else in Docker's config.json
        (0600). Returns where the credentials went."""
        registry = registry.lower()
        path = self.docker_config_path()
        doc = self._load(path) or {}
        helper = (doc.get("credHelpers") or {}).get(registry) or doc.get("credsStore")
        if helper:
            payload = json.dumps({"ServerURL": credential_server_url(registry),
                                  "Username": credentials.username, "Secret": credentials.password})
            result = self._run_helper(helper, "store", payload.encode())
            if result.returncode != 0:
                raise AuthError(f"docker-credential-{helper} could not store the credentials")
            return f"docker-credential-{helper}"
        auths = doc.setdefault("auths", {})
        for key in [k for k in auths if _split_key(k) == (registry, "")]:
            del auths[key]
        raw = f"{credentials.username}:{credentials.password}".encode()
        auths[credential_server_url(registry)] = {"auth": base64.b64encode(raw).decode()}
        _write_private_json(path, doc)
        return path

    def erase(self, registry: str) -> bool:
        registry = registry.lower()
        removed = False
        for path in self.search_path():
            doc = self._load(path)
            if doc is None:
                continue
            auths = doc.get("auths") or {}
            keys = [k for k in list(auths) if _split_key(k)[0] == registry]
            for key in keys:
                del auths[key]
            if keys:
                _write_private_json(path, doc)
                removed = True
            helper = ((doc.get("credHelpers") or {}).get(registry)
                      or (doc.get("credsStore") if path == self.docker_config_path() else None))
            if helper:
                result = self._run_helper(helper, "erase", credential_server_url(registry).encode())
                removed = removed or result.returncode == 0
        return removed


def _split_key(key):
    """(registry, repository scope) of a key of `auths`: keys may be URLs ("https://host/v1/"),
    hosts, or host/namespace/repository (containers-auth.json(5))."""
    host, _, path = re.sub(r"^https?://", "", key).partition("/")
    path = path.strip("/")
    return canonical_registry(host), ("" if path in ("", "v1", "v2") else path)


def _best_auth_entry(auths, registry, repository):
    """The entry for this registry; a repository-scoped one wins over the host's own, the
    longest scope first."""
    best, best_scope = None, -1
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        host, scope = _split_key(key)
        if host != registry:
            continue
        if scope and not (repository and (repository == scope or repository.startswith(scope + "/"))):
            continue
        if len(scope) > best_scope:
            best, best_scope = entry, len(scope)
    return best


def _credentials_from_entry(entry):
    if entry.get("identitytoken"):
        return Credentials(entry.get("username") or TOKEN_USERNAME, "", identity_token=entry["identitytoken"])
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"], validate=False).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise ConfigError("a stored credential ('auth') is not valid base64 of user:password",
                              hint="log in again with `toolbox login`") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ConfigError("a stored credential ('auth') has no ':' between user and password",
                              hint="log in again with `toolbox login`")
        return Credentials(username, password)
    if entry.get("username") and entry.get("password"):
        return Credentials(entry["username"], entry["password"])
    return None


def _write_private_json(path, doc):
    from toolbox.fsutil import atomic_write

    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    atomic_write(path, (json.dumps(doc, indent="\t") + "\n").encode(), mode=0o600)
