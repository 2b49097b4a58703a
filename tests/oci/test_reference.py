import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import InvalidReference
from toolbox.oci.digest import Digest
from toolbox.oci.platform import Platform
from toolbox.oci.reference import (
    DOCKER_HUB_SERVER_URL,
    ImageRef,
    api_host,
    canonical_registry,
    credential_keys,
    credential_server_url,
    is_docker_hub,
    registry_of_api_host,
)

HEX = "a" * 64


@pytest.mark.parametrize(
    "text, registry, repository, tag, endpoint",
    [
        ("jq", "docker.io", "library/jq", "latest", "registry-1.docker.io"),
        ("python:3.11-slim", "docker.io", "library/python", "3.11-slim", "registry-1.docker.io"),
        ("mikefarah/yq:4", "docker.io", "mikefarah/yq", "4", "registry-1.docker.io"),
        ("index.docker.io/library/debian", "docker.io", "library/debian", "latest", "registry-1.docker.io"),
        ("ghcr.io/jqlang/jq:1.7.1", "ghcr.io", "jqlang/jq", "1.7.1", "ghcr.io"),
        ("localhost/tool", "localhost", "tool", "latest", "localhost"),
        ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", "localhost:5000"),
        ("127.0.0.1:5000/busybox", "127.0.0.1:5000", "busybox", "latest", "127.0.0.1:5000"),
        ("Registry.Example.COM/x", "registry.example.com", "x", "latest", "registry.example.com"),
        ("[::1]:5000/x:y", "[::1]:5000", "x", "y", "[::1]:5000"),
        ("a__b/c-d.e_f", "docker.io", "a__b/c-d.e_f", "latest", "registry-1.docker.io"),
    ],
)
def test_normalisation(text, registry, repository, tag, endpoint):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.endpoint_host) == (registry, repository, tag, endpoint)
    assert ImageRef.parse(str(ref)) == ref


def test_digest_references():
    ref = ImageRef.parse(f"quay.io/org/tool@sha256:{HEX}")
    assert ref.tag is None and ref.digest == Digest("sha256", HEX)
    assert ref.reference == f"sha256:{HEX}"
    assert str(ref) == f"quay.io/org/tool@sha256:{HEX}"
    both = ImageRef.parse(f"jq:1.7@sha256:{HEX}")
    assert both.tag == "1.7" and both.reference == f"sha256:{HEX}"
    assert str(both) == f"docker.io/library/jq:1.7@sha256:{HEX}"


@pytest.mark.parametrize("name", ["docker.io", "index.docker.io", "registry-1.docker.io", "Index.Docker.IO",
                                  "REGISTRY-1.docker.io"])
def test_every_name_of_docker_hub_is_docker_io(name):
    assert canonical_registry(name) == "docker.io"
    assert is_docker_hub(name.lower())
    assert credential_server_url(name.lower()) == "https://index.docker.io/v1/" == DOCKER_HUB_SERVER_URL


@pytest.mark.parametrize("name, canonical", [("ghcr.io", "ghcr.io"),
                                             ("Registry.Example.COM:5000", "registry.example.com:5000"),
                                             ("docker.io.example", "docker.io.example"),
                                             ("auth.docker.io", "auth.docker.io")])
def test_other_registries_keep_their_name(name, canonical):
    assert canonical_registry(name) == canonical
    assert not is_docker_hub(canonical)
    assert api_host(canonical) == registry_of_api_host(canonical) == canonical
    assert credential_server_url(canonical) == canonical
    assert credential_keys(canonical) == (canonical, f"https://{canonical}", f"http://{canonical}")


def test_docker_hub_api_is_at_registry_1_and_its_credentials_under_docker_io():
    assert api_host("docker.io") == "registry-1.docker.io"
    assert registry_of_api_host("registry-1.docker.io") == "docker.io"
    assert ImageRef.parse("jq").endpoint_host == api_host(ImageRef.parse("jq").registry)


def test_docker_hub_credential_keys_are_the_ones_docker_writes():
    keys = credential_keys("docker.io")
    assert keys[0] == "https://index.docker.io/v1/"  # what `docker login` writes, asked first
    assert set(keys) >= {"index.docker.io", "docker.io", "registry-1.docker.io", "https://index.docker.io/v1"}
    assert credential_keys("index.docker.io") == credential_keys("registry-1.docker.io") == keys


def test_only_index_docker_io_is_rewritten_in_a_reference():
    """As distribution/reference does (its legacyDefaultDomain): the API host names itself."""
    assert ImageRef.parse("index.docker.io/library/debian").registry == "docker.io"
    assert ImageRef.parse("registry-1.docker.io/library/debian").registry == "registry-1.docker.io"


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "empty"),
        (" jq", "spaces"),
        ("JQ", "lowercase"),
        ("a/../b", "'..'"),
        ("jq:", "invalid tag"),
        ("jq:-x", "invalid tag"),
        ("jq@sha256:123", "64"),
        ("jq@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("jq@sha256:" + "A" * 64, "lowercase hex"),
        ("bad_host.com:x:y/z", "invalid"),
        ("a" * 300, "longer than 255"),
        ("a//b", "bad name component"),
    ],
)
def test_invalid_references_say_why(text, words):
    with pytest.raises(InvalidReference) as info:
        ImageRef.parse(text)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


@given(st.text(max_size=80))
def test_parse_never_crashes_and_round_trips(text):
    try:
        ref = ImageRef.parse(text)
    except InvalidReference:
        return
    assert ImageRef.parse(str(ref)) == ref


def test_digest_round_trip_and_check():
    digest = Digest.of_bytes(b"hello")
    assert Digest.parse(str(digest)) == digest
    assert digest.matches(b"hello") and not digest.matches(b"hellO")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/arm64", Platform("linux", "arm64", "v8")),
        ("linux/aarch64", Platform("linux", "arm64", "v8")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
    ],
)
def test_platform_parse(text, expected):
    assert Platform.parse(text) == expected


def test_platform_matching_treats_missing_variant_as_any():
    assert Platform("linux", "arm64", "v8").matches(Platform("linux", "arm64"))
    assert not Platform("linux", "arm", "v7").matches(Platform("linux", "arm", "v6"))
    assert not Platform("linux", "amd64").matches(Platform("linux", "arm64"))
    with pytest.raises(InvalidReference):
        Platform.parse("linux")
