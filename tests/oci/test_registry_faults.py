"""Retries, Retry-After and resumed downloads, through a fault-injecting proxy in front of the
real registry."""

import os
import re
import socket
import time

import pytest

from toolbox.errors import IntegrityError, RegistryError

from tests.support.faults import FaultProxy


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.url) as proxy:
        yield proxy


def proxied(proxy, image):
    return f"{proxy.host}/{image.repository}:{image.tag}"


def test_retries_429_honouring_retry_after_and_5xx(toolbox, proxy, pushed_images):
    toolbox.trust(proxy)
    proxy.add(r"/manifests/", "status", code=429, headers={"Retry-After": "1"})
    proxy.add(r"/blobs/", "status", code=503, times=2)
    start = time.monotonic()
    record = toolbox.pull(proxied(proxy, pushed_images["busybox"]))
    assert time.monotonic() - start >= 1.0  # waited as the registry asked
    assert str(record.digest) == pushed_images["busybox"].manifest_digest
    assert [entry[3] for entry in proxy.log].count("status") == 3


def test_a_broken_blob_download_resumes_with_range(toolbox, proxy, pushed_images):
    toolbox.trust(proxy)
    image = pushed_images["busybox"]
    layer = image.built.layers[0]["digest"]
    proxy.add(rf"/blobs/{layer}", "cut_after", after=100_000)
    record = toolbox.pull(proxied(proxy, image))
    assert str(record.digest) == image.manifest_digest
    ranges = [entry[2] for entry in proxy.log if layer in entry[1]]
    assert ranges == [None, "bytes=100000-"]


def test_a_stalled_download_times_out_and_resumes(toolbox, proxy, pushed_images):
    toolbox.trust(proxy)
    toolbox.env["TOOLBOX_READ_TIMEOUT"] = "1"
    image = pushed_images["shared_a"]
    layer = image.built.layers[0]["digest"]
    proxy.add(rf"/blobs/{layer}", "stall_after", after=50_000, seconds=5)
    record = toolbox.pull(proxied(proxy, image))
    assert str(record.digest) == image.manifest_digest
    assert [entry[2] for entry in proxy.log if layer in entry[1]] == [None, "bytes=50000-"]


def test_wrong_bytes_are_refused(toolbox, proxy, pushed_images):
    toolbox.trust(proxy)
    image = pushed_images["whiteout"]
    proxy.add(rf"/blobs/{image.built.layers[1]['digest']}", "corrupt")
    with pytest.raises(IntegrityError):
        toolbox.pull(proxied(proxy, image))
    assert toolbox.leftovers() == [] and toolbox.store.records() == []


def test_persistent_5xx_gives_up_with_a_clear_error(toolbox, proxy, pushed_images):
    toolbox.trust(proxy)
    proxy.add(r"/manifests/", "status", code=500, times=100)
    with pytest.raises(RegistryError, match="kept failing"):
        toolbox.pull(proxied(proxy, pushed_images["busybox"]))


def test_debug_output_never_shows_signed_urls_or_tokens(toolbox, token_registry, token_pushed_images):
    """A registry redirects blob downloads to storage URLs signed in their query string."""
    image = token_pushed_images["public"]["busybox"]
    secrets = ("SIGNATURE-1f0e", "SIG-77aa", "TOKEN-c3d2")
    query = (f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={secrets[0]}"
             f"&sig={secrets[1]}&token={secrets[2]}")
    with FaultProxy(token_registry.url) as proxy:
        toolbox.trust(proxy)
        proxy.add(rf"/blobs/{image.built.layers[0]['digest']}$", "redirect", query=query)
        result = toolbox.cli("--debug", "pull", proxied(proxy, image))
    assert result.returncode == 0, result.stderr
    assert "X-Amz-Signature" in result.stderr  # the redirected request was logged
    tokens = [value.split()[-1] for value in proxy.authorizations]
    assert tokens and "Authorization" not in result.stderr
    for secret in secrets + tuple(tokens):
        assert secret not in result.stderr


def test_credentials_never_follow_a_redirect_to_another_host(toolbox, token_registry, token_pushed_images,
                                                             registry, pushed_images):
    """A registry may send blob downloads to storage elsewhere: the storage host must not get
    the registry's token (127.0.0.2 is another host on the loopback)."""
    private = token_pushed_images["private"]["busybox"]
    layer = private.built.layers[0]["digest"]
    # the same bytes on the anonymous registry
    assert pushed_images["busybox"].built.layers[0]["digest"] == layer
    with FaultProxy(token_registry.url) as front, FaultProxy(registry.url, bind="127.0.0.2") as storage:
        toolbox.trust(front, storage)
        login = toolbox.cli("login", front.host, "-u", "bob", "--password-stdin",
                            input=token_registry.password)
        assert login.returncode == 0, login.stderr
        front.add(rf"/blobs/{layer}$", "redirect_to",
                  location=f"http://{storage.host}/v2/{pushed_images['busybox'].repository}/blobs/{layer}")
        record = toolbox.pull(proxied(front, private))
        assert str(record.digest) == private.manifest_digest
        assert any(entry[1].endswith(layer) for entry in storage.log)  # the blob came from the storage host
        assert front.authorizations and storage.authorizations == []


def test_manifest_faults_are_clear_errors_and_keep_nothing(toolbox, proxy, pushed_images):
    from toolbox.errors import NotFound, UnsupportedImage

    toolbox.trust(proxy)
    image = pushed_images["busybox"]
    oci = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    proxy.add(r"/manifests/", "body", data=b"{" * (5 * 1024 * 1024), headers=oci)
    with pytest.raises(RegistryError, match="over the .*-byte limit"):
        toolbox.pull(proxied(proxy, image))
    proxy.add(r"/manifests/", "body", data=b'{"schemaVersion": 2, "config": ', headers=oci)
    with pytest.raises(UnsupportedImage, match="not valid JSON|JSON"):
        toolbox.pull(proxied(proxy, image))
    missing = "sha256:" + "ab" * 32
    manifest = image.built.manifest_bytes.replace(image.built.config_digest.encode(), missing.encode())
    proxy.add(r"/manifests/", "body", data=manifest, headers=oci)
    with pytest.raises(NotFound, match="not found"):
        toolbox.pull(proxied(proxy, image))
    assert toolbox.leftovers() == [] and toolbox.store.records() == [] and toolbox.layer_dirs() == []


@pytest.mark.parametrize("extra, requests_made", [(1000, [None]), (-1000, [None, "bytes={}-"])])
def test_a_wrong_content_length_does_not_decide_what_a_blob_is(toolbox, proxy, pushed_images, extra,
                                                               requests_made):
    """The manifest's size and digest decide: a Content-Length too long is not waited for, one
    too short makes a resumed download of the rest."""
    toolbox.trust(proxy)
    image = pushed_images["busybox"]
    layer = image.built.layers[0]
    proxy.add(rf"/blobs/{layer['digest']}", "wrong_length", extra=extra)
    record = toolbox.pull(proxied(proxy, image))
    assert str(record.digest) == image.manifest_digest
    made = [entry[2] for entry in proxy.log if layer["digest"] in entry[1]]
    if len(requests_made) == 1:
        assert made == requests_made
    else:
        # The resume may be tried twice: the proxy's surplus bytes can poison a kept-alive
        # connection, and the client retries on a fresh one. Always from the same offset.
        resume = requests_made[1].format(layer["size"] + extra)
        assert made[0] is None and len(made) >= 2 and set(made[1:]) == {resume}, made
    assert toolbox.leftovers() == []


def _user_defaults(toolbox):
    """The retry settings a user has (the suite's are short, to keep fault tests quick)."""
    for name in ("TOOLBOX_RETRIES", "TOOLBOX_RETRY_BACKOFF"):
        toolbox.env.pop(name, None)


def test_a_registry_nothing_listens_on_fails_fast_with_one_readable_line(toolbox, proxy, pushed_images):
    """Connection refused: at most one quick retry, then the registry and the cause. Once
    connected, a connection that breaks is still retried with backoff."""
    _user_defaults(toolbox)
    with socket.socket() as bound:  # bound, never listening: connections to it are refused
        bound.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{bound.getsockname()[1]}"
        for reference, shown in ((f"{host}/x:1", host),
                                 (f"localhost:{host.split(':')[1]}/x:1", f"localhost:{host.split(':')[1]}")):
            start = time.monotonic()
            result = toolbox.cli("pull", reference)
            took = time.monotonic() - start
            assert result.returncode == 125 and took < 5, (took, result.stderr)
            error, hint = result.stderr.splitlines()
            assert error == f"toolbox: error: cannot reach {shown}: connection refused", result.stderr
            assert hint.startswith("toolbox: hint: ") and "port" in hint
        # An insecure registry is tried over HTTPS and then HTTP: refused both ways, as fast.
        os.makedirs(os.path.dirname(toolbox.layout.config_file), exist_ok=True)
        with open(toolbox.layout.config_file, "a") as config:
            config.write(f'[registries."{host}"]\ninsecure = true\n')
        start = time.monotonic()
        result = toolbox.cli("pull", f"{host}/x:1")
        assert (result.returncode == 125 and time.monotonic() - start < 5
                and "connection refused" in result.stderr)
    # A server that accepts, then drops the connection without answering: retried, with backoff.
    toolbox.trust(proxy)
    toolbox.env["TOOLBOX_RETRY_BACKOFF"] = "0.2"
    proxy.add(r"/manifests/", "drop", times=2)
    start = time.monotonic()
    record = toolbox.pull(proxied(proxy, pushed_images["busybox"]))
    assert str(record.digest) == pushed_images["busybox"].manifest_digest
    assert [entry[3] for entry in proxy.log if "/manifests/" in entry[1]][:3] == ["drop", "drop", "forward"]
    assert time.monotonic() - start >= 0.2 + 0.4  # two waits, the second twice the first


def test_a_registry_name_that_does_not_resolve_fails_fast(toolbox):
    _user_defaults(toolbox)
    name = "no-such-registry.invalid"  # RFC 2606: never resolves
    start = time.monotonic()
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo(name, 443)
    lookup = time.monotonic() - start
    start = time.monotonic()
    result = toolbox.cli("pull", f"{name}/x:1")
    took = time.monotonic() - start
    assert result.returncode == 125
    error, hint = result.stderr.splitlines()
    assert re.fullmatch(rf"toolbox: error: cannot reach {name}: name lookup failed \([^)]+\)",
                        error), result.stderr
    assert hint.startswith("toolbox: hint: ") and "DNS" in hint
    assert took < 5 + 2 * lookup, (took, lookup)  # one retry at most, whatever this host's resolver costs
