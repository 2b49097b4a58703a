"""The test support itself works: registries in every mode, the token server, the pushed images."""

import base64
import gzip
import io
import json
import tarfile
import time

import pytest
import requests

from tests.support import images
from tests.support.pki import libtrust_key_id
from tests.support.push import RegistrySession, Skopeo, get_manifest, push_raw

pytest_plugins = ["tests.support.fixtures"]

pytestmark = pytest.mark.needs_registry


def _b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bearer_token(token_registry, scope, auth=None):
    server = token_registry.token_server
    answer = requests.get(server.realm, params={"service": server.service, "scope": scope}, auth=auth,
                          timeout=10)
    answer.raise_for_status()
    return answer.json()


# -- registries answer /v2/ as their mode says


def test_plain_registry_answers_anonymously(registry):
    answer = requests.get(f"{registry.url}/v2/", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert registry.url.startswith("http://127.0.0.1:")


def test_tls_registry_is_trusted_only_through_its_ca(tls_registry):
    assert requests.get(f"{tls_registry.url}/v2/", verify=str(tls_registry.ca_file),
                        timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_registry.url}/v2/", timeout=10)
    # The certificate names localhost too.
    localhost = tls_registry.url.replace("127.0.0.1", "localhost")
    assert requests.get(f"{localhost}/v2/", verify=str(tls_registry.ca_file), timeout=10).status_code == 200


def test_basic_registry_challenges_and_accepts_alice(basic_registry):
    url, ca = f"{basic_registry.url}/v2/", str(basic_registry.ca_file)
    challenge = requests.get(url, verify=ca, timeout=10)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert basic_registry.username == "alice"
    assert requests.get(url, verify=ca, auth=basic_registry.credentials, timeout=10).status_code == 200
    assert requests.get(url, verify=ca, auth=("alice", "wrong"), timeout=10).status_code == 401


def test_token_registry_challenges_with_its_realm(token_registry):
    challenge = requests.get(f"{token_registry.url}/v2/", timeout=10)
    assert challenge.status_code == 401
    header = challenge.headers["WWW-Authenticate"]
    assert header.startswith("Bearer ")
    assert f'realm="{token_registry.token_server.realm}"' in header
    assert f'service="{token_registry.token_server.service}"' in header


def test_token_tls_registry_serves_both_over_https(token_tls_registry):
    server, ca = token_tls_registry.token_server, str(token_tls_registry.ca_file)
    assert token_tls_registry.url.startswith("https://") and server.realm.startswith("https://")
    challenge = requests.get(f"{token_tls_registry.url}/v2/", verify=ca, timeout=10)
    assert f'realm="{server.realm}"' in challenge.headers["WWW-Authenticate"]
    image = images.busybox_image()
    assert push_raw(token_tls_registry, "private/busybox", "1", image) == image.digest
    _, _, digest = get_manifest(token_tls_registry, "private/busybox", "1")
    assert digest == image.digest


# -- the token server


def test_token_server_issues_tokens_the_registry_accepts(token_registry, token_pushed_images):
    private = token_pushed_images["private"]["busybox"]
    scope = f"repository:{private.repository}:pull"
    token = _bearer_token(token_registry, scope, auth=token_registry.credentials)
    assert token["token"] == token["access_token"]
    assert token["expires_in"] == token_registry.token_server.expires_in
    answer = requests.get(f"{token_registry.url}/v2/{private.repository}/manifests/{private.tag}",
                          headers={"Authorization": f"Bearer {token['token']}", "Accept": private.media_type},
                          timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Docker-Content-Digest"] == private.manifest_digest


def test_token_header_names_the_libtrust_key_id(token_registry):
    token = _bearer_token(token_registry, "repository:public/x:pull")["token"]
    header = json.loads(_b64url(token.split(".")[0]))
    kid = libtrust_key_id(token_registry.token_server.signing_key.key.public_key())
    assert header == {"typ": "JWT", "alg": "ES256", "kid": kid}
    assert len(kid.split(":")) == 12 and all(len(group) == 4 for group in kid.split(":"))


def test_token_server_refuses_a_wrong_password(token_registry):
    server = token_registry.token_server
    before = server.request_count
    answer = requests.get(server.realm,
                          params={"service": server.service, "scope": "repository:public/x:pull"},
                          auth=(server.username, "wrong"), timeout=10)
    assert answer.status_code == 401
    assert server.request_count == before + 1
    assert server.requests[-1].status == 401


def test_anonymous_tokens_pull_public_only(token_registry, token_pushed_images):
    for visibility, status in (("public", 200), ("private", 401)):
        image = token_pushed_images[visibility]["busybox"]
        token = _bearer_token(token_registry, f"repository:{image.repository}:pull")["token"]
        answer = requests.get(f"{token_registry.url}/v2/{image.repository}/manifests/{image.tag}",
                              headers={"Authorization": f"Bearer {token}", "Accept": image.media_type},
                              timeout=10)
        assert answer.status_code == status, visibility
    public = token_pushed_images["public"]["busybox"]
    push_token = _bearer_token(token_registry, f"repository:{public.repository}:pull,push")["token"]
    upload = requests.post(f"{token_registry.url}/v2/{public.repository}/blobs/uploads/",
                           headers={"Authorization": f"Bearer {push_token}"}, timeout=10)
    assert upload.status_code == 401


def test_expired_claims_are_refused_by_the_registry(token_registry, token_pushed_images):
    server = token_registry.token_server
    public = token_pushed_images["public"]["busybox"]
    with server.issuing_stale_tokens():
        token = _bearer_token(token_registry, f"repository:{public.repository}:pull")["token"]
    assert server.exp_offset == 0
    answer = requests.get(f"{token_registry.url}/v2/{public.repository}/manifests/{public.tag}",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 401
    before = server.expires_in
    with server.expiring_in(1):
        assert _bearer_token(token_registry, "repository:public/x:pull")["expires_in"] == 1
    assert server.expires_in == before


# -- the pushed scenarios


def test_every_scenario_is_served_with_its_built_digest(pushed_images):
    assert set(pushed_images) >= {"busybox", "shared_a", "shared_b", "whiteout", "multiarch", "zstd",
                                  "uncompressed", "docker_schema2", "docker_list", "dotdot", "symlink_escape",
                                  "hardlink_escape", "tampered"}
    for name, image in pushed_images.items():
        data, content_type, digest = get_manifest(image.registry, image.repository, image.tag)
        assert images.sha256_digest(data) == image.manifest_digest == image.built.manifest_digest, name
        assert digest == image.manifest_digest, name
        assert content_type == image.media_type, name
        assert image.reference == f"{image.registry.host}/{image.repository}:1"


def test_skopeo_reads_what_skopeo_pushed(pushed_images, tmp_path):
    skopeo = Skopeo(tmp_path)
    for name in ("busybox", "docker_schema2"):
        image = pushed_images[name]
        raw = skopeo.inspect_raw(image.registry, image.repository, image.tag)
        assert images.sha256_digest(raw) == image.manifest_digest, name


def test_index_children_and_blobs_are_all_there(pushed_images):
    index = pushed_images["multiarch"]
    entries = index.built.index["manifests"]
    assert [(e["platform"]["architecture"], e["platform"].get("variant")) for e in entries] == [
        ("amd64", None), ("arm64", "v8"), ("unknown", None), ("unknown", None)]
    assert entries[2]["annotations"]["vnd.docker.reference.digest"] == entries[0]["digest"]
    with RegistrySession(index.registry, index.repository, actions=("pull",)) as session:
        for child in index.built.children:
            assert session.request("HEAD", session.url(f"manifests/{child.manifest_digest}"),
                                   headers={"Accept": child.media_type}).status_code == 200
            for digest in child.blobs:
                assert session.blob_exists(digest)


def test_shared_base_layer_is_one_blob(pushed_images):
    a, b = pushed_images["shared_a"].built, pushed_images["shared_b"].built
    assert a.layers[0] == b.layers[0]
    assert a.layers[1] != b.layers[1]


def test_tampered_blob_is_served_but_does_not_match(pushed_images):
    image = pushed_images["tampered"]
    answer = requests.get(f"{image.registry.url}/v2/{image.repository}/blobs/{image.tampered_digest}",
                          timeout=10)
    assert answer.status_code == 200
    assert len(answer.content) == image.built.layers[0]["size"]
    assert images.sha256_digest(answer.content) != image.tampered_digest


def test_auth_registries_hold_the_images(tls_pushed_images, basic_pushed_images, token_pushed_images):
    for pushed in (tls_pushed_images, basic_pushed_images, token_pushed_images["private"]):
        for name, image in pushed.items():
            _, _, digest = get_manifest(image.registry, image.repository, image.tag)
            assert digest == image.manifest_digest, (image.registry.mode, name)


# -- the image builder


def test_layers_are_deterministic_and_hold_what_was_asked():
    entries = [images.directory("d"), images.file("d/f", "hello\n", 0o600), images.symlink("d/l", "f"),
               images.hardlink("d/h", "d/f"), images.Entry("latin", raw_name=b"caf\xe9", data=b"x")]
    tar = images.layer_tar(entries)
    assert tar == images.layer_tar(entries)
    assert images.compress(tar, "gzip") == images.compress(tar, "gzip")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(images.compress(tar, "gzip"))),
                      encoding="utf-8", errors="surrogateescape") as archive:
        members = {m.name: m for m in archive.getmembers()}
        assert archive.extractfile("d/f").read() == b"hello\n"
    assert members["d/f"].mode == 0o600
    assert members["d/l"].issym() and members["d/l"].linkname == "f"
    assert members["d/h"].islnk() and members["d/h"].linkname == "d/f"
    assert "caf\udce9" in members


def test_whiteout_and_hostile_layers_have_the_expected_members():
    def names(built, index):
        blob = built.blobs[built.layers[index]["digest"]]
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as archive:
            return [m.name for m in archive.getmembers()]

    assert names(images.whiteout_image(), 2) == ["a", "a/.wh.x", "d", "d/.wh..wh..opq", "d/new"]
    assert names(images.dotdot_image(), 0) == ["../escape"]
    assert names(images.symlink_escape_image(), 0) == ["evil", "evil/tmp", "evil/tmp/pwned"]
    assert names(images.hardlink_escape_image(), 0) == ["passwd"]


def test_the_whole_push_is_quick(registry_factory, tmp_path):
    # Guards the session's start-up cost: one more registry and every raw scenario.
    started = time.monotonic()
    server = registry_factory()
    built = images.multiarch_index()
    assert push_raw(server, "again", "1", built) == built.digest
    assert time.monotonic() - started < 10
