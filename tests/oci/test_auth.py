import base64
import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import AuthError, ConfigError
from toolbox.oci.auth import Credentials, CredentialStore, parse_www_authenticate


@pytest.mark.parametrize(
    "header, expected",
    [
        (
            ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
             'scope="repository:library/jq:pull"'),
            [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                         "scope": "repository:library/jq:pull"})],
        ),
        ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
        (
            'Bearer realm="https://ghcr.io/token", service="ghcr.io",scope="repository:a/b:pull,push"',
            [("bearer",
              {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:a/b:pull,push"})],
        ),
        (
            'Bearer realm="r", scope="repository:x:pull", Basic realm="with \\"quotes\\", and a comma"',
            [("bearer", {"realm": "r", "scope": "repository:x:pull"}),
             ("basic", {"realm": 'with "quotes", and a comma'})],
        ),
        ("  bearer   REALM = unquoted ,service=s", [("bearer", {"realm": "unquoted", "service": "s"})]),
        ("", []),
    ],
)
def test_parse_www_authenticate(header, expected):
    parsed = [(c.scheme, dict(c.params)) for c in parse_www_authenticate(header)]
    assert parsed == expected


@given(st.text(max_size=200))
def test_parse_www_authenticate_never_raises(text):
    for challenge in parse_www_authenticate(text):
        assert challenge.scheme == challenge.scheme.lower()


def test_credentials_never_show_their_secret():
    creds = Credentials("bob", "hunter2", identity_token="tok")
    assert "hunter2" not in repr(creds) and "tok" not in str(creds) and "bob" in repr(creds)
    assert creds.basic_header() == "Basic " + base64.b64encode(b"bob:hunter2").decode()


def auth_entry(user, password):
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def write_json(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            "PATH": str(tmp_path / "bin") + ":/usr/bin:/bin"}


def test_lookup_order_across_files(tmp_path, env):
    home = tmp_path / "home"
    docker = home / ".docker" / "config.json"
    user_auth = home / ".config" / "containers" / "auth.json"
    runtime_auth = tmp_path / "run" / "containers" / "auth.json"
    explicit = tmp_path / "explicit.json"
    write_json(docker, {"auths": {"reg.example": auth_entry("docker", "1"),
                                  "https://index.docker.io/v1/": auth_entry("hub", "h")}})
    store = CredentialStore(env)
    assert store.lookup("reg.example").username == "docker"
    assert store.lookup("docker.io").username == "hub"
    write_json(user_auth, {"auths": {"reg.example": auth_entry("user-auth", "2")}})
    assert store.lookup("reg.example").username == "user-auth"
    write_json(runtime_auth, {"auths": {"https://reg.example/v1/": auth_entry("runtime", "3")}})
    assert store.lookup("reg.example").username == "runtime"
    write_json(explicit, {"auths": {"reg.example": auth_entry("explicit", "4")}})
    assert (CredentialStore(dict(env, REGISTRY_AUTH_FILE=str(explicit))).lookup("reg.example").username
            == "explicit")
    assert store.lookup("other.example") is None


def test_repository_scoped_keys_most_specific_wins(tmp_path, env):
    write_json(tmp_path / "run" / "containers" / "auth.json", {"auths": {
        "quay.io": auth_entry("host", "1"),
        "quay.io/org": auth_entry("org", "2"),
        "quay.io/org/tool": auth_entry("tool", "3"),
    }})
    store = CredentialStore(env)
    assert store.lookup("quay.io", "org/tool").username == "tool"
    assert store.lookup("quay.io", "org/other").username == "org"
    assert store.lookup("quay.io", "elsewhere/x").username == "host"
    assert store.lookup("quay.io").username == "host"


def write_helper(tmp_path, name, store_file):
    """A real docker-credential-NAME program keeping its secrets in a JSON file."""
    helper = tmp_path / "bin" / f"docker-credential-{name}"
    helper.parent.mkdir(exist_ok=True)
    helper.write_text(f"""#!/usr/bin/env python3
import json, sys
path = {str(store_file)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
verb = sys.argv[1]
if verb == "get":
    url = sys.stdin.read().strip()
    if url not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": url, "Username": data[url][0], "Secret": data[url][1]}}))
elif verb == "store":
    doc = json.load(sys.stdin); data[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
    json.dump(data, open(path, "w"))
elif verb == "erase":
    data.pop(sys.stdin.read().strip(), None); json.dump(data, open(path, "w"))
""")
    helper.chmod(0o755)


def test_credential_helpers(tmp_path, env):
    secrets = tmp_path / "helper-secrets.json"
    secrets.write_text(json.dumps({"ghcr.io": ["octo", "ghp_x"],
                                   "https://index.docker.io/v1/": ["<token>", "refresh"]}))
    write_helper(tmp_path, "test", secrets)
    write_json(tmp_path / "home" / ".docker" / "config.json",
               {"credHelpers": {"ghcr.io": "test"}, "credsStore": "test"})
    store = CredentialStore(env)
    assert store.lookup("ghcr.io") == Credentials("octo", "ghp_x")
    hub = store.lookup("docker.io")
    assert hub.identity_token == "refresh" and not hub.password
    assert store.lookup("unknown.example") is None  # the helper said "not found"
    assert store.store("quay.io", Credentials("q", "pw")) == "docker-credential-test"
    assert json.loads(secrets.read_text())["quay.io"] == ["q", "pw"]
    assert store.erase("quay.io")
    assert "quay.io" not in json.loads(secrets.read_text())


def test_missing_helper_is_named(tmp_path, env):
    write_json(tmp_path / "home" / ".docker" / "config.json", {"credHelpers": {"ecr.example": "ecr-login"}})
    with pytest.raises(AuthError, match="docker-credential-ecr-login not found"):
        CredentialStore(env).lookup("ecr.example")


def test_store_and_erase_in_docker_config(tmp_path, env):
    config = tmp_path / "home" / ".docker" / "config.json"
    write_json(config, {"auths": {"keep.example": auth_entry("k", "k")}, "psFormat": "table"})
    os.chmod(config, 0o644)
    store = CredentialStore(env)
    assert store.store("docker.io", Credentials("me", "s3cret")) == str(config)
    doc = json.loads(config.read_text())
    assert doc["psFormat"] == "table" and "keep.example" in doc["auths"]
    assert doc["auths"]["https://index.docker.io/v1/"] == auth_entry("me", "s3cret")
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [p.name for p in config.parent.iterdir()] == ["config.json"]  # no temp file left
    assert store.lookup("docker.io") == Credentials("me", "s3cret")
    assert store.erase("docker.io") and store.lookup("docker.io") is None
    assert not store.erase("docker.io")


def test_fresh_docker_dir_is_private(tmp_path, env):
    CredentialStore(env).store("reg.example", Credentials("a", "b"))
    docker_dir = tmp_path / "home" / ".docker"
    assert stat.S_IMODE(docker_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((docker_dir / "config.json").stat().st_mode) == 0o600


def test_broken_file_is_a_config_error_without_secrets(tmp_path, env):
    config = tmp_path / "home" / ".docker" / "config.json"
    write_json(config, {})
    config.write_text('{"auths": {"r": {"auth": "c2VjcmV0"}}')  # truncated JSON
    with pytest.raises(ConfigError) as info:
        CredentialStore(env).lookup("r")
    assert str(config) in str(info.value) and "c2VjcmV0" not in str(info.value)
