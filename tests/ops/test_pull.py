"""Pulling from a real registry (Debian's docker-registry on 127.0.0.1), as an ordinary user."""

import json
import os
import re
import stat
import time
from pathlib import Path

import pytest

from toolbox.errors import AuthError, IntegrityError, LayerError, NotFound, RegistryError
from toolbox.oci.digest import Digest
from toolbox.oci.platform import host_platform

BUSYBOX = Path("/bin/busybox").read_bytes() if Path("/bin/busybox").exists() else None


def layer_tree(toolbox, diff_id):
    return Path(toolbox.layout.layer_tree(Digest.parse(diff_id)))


def test_pull_unpacks_every_layer_into_the_store(toolbox, registry, pushed_images, recorder):
    image = pushed_images["busybox"]
    toolbox.trust(registry)
    record = toolbox.pull(image.reference, progress=recorder)
    assert record.reference == image.reference
    assert str(record.digest) == image.manifest_digest
    (diff_id,) = image.built.diff_ids
    tree = layer_tree(toolbox, diff_id)
    assert (tree / "bin" / "busybox").read_bytes() == BUSYBOX
    assert os.readlink(tree / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((tree / "tmp").stat().st_mode) == 0o1777
    assert toolbox.leftovers() == []
    stored = toolbox.store.load_image(record)
    assert [str(d) for d in stored.diff_ids] == list(image.built.diff_ids)


def test_a_shared_base_layer_is_stored_once(toolbox, registry, pushed_images, recorder):
    toolbox.trust(registry)
    a, b = pushed_images["shared_a"], pushed_images["shared_b"]
    toolbox.pull(a.reference)
    toolbox.pull(b.reference, progress=recorder)
    base = a.built.diff_ids[0]
    assert b.built.diff_ids[0] == base
    # The second pull found the base stored and downloaded only its own layer.
    assert [str(d) for d in recorder.downloaded] == [b.built.diff_ids[1]]
    assert (sorted(toolbox.layer_dirs())
            == sorted({d.split(":")[1] for d in a.built.diff_ids + b.built.diff_ids}))


def test_whiteouts_become_overlay_whiteouts(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    image = pushed_images["whiteout"]
    toolbox.pull(image.reference)
    upper = layer_tree(toolbox, image.built.diff_ids[2])
    deleted = os.lstat(upper / "a" / "x")
    assert stat.S_ISCHR(deleted.st_mode) and deleted.st_rdev == os.makedev(0, 0)
    assert os.getxattr(upper / "d", "user.overlay.opaque") == b"y"
    assert not (upper / "a" / ".wh.x").exists()
    lower = layer_tree(toolbox, image.built.diff_ids[1])
    assert (lower / "a" / "x").read_text() == "x\n"  # the lower layer itself is untouched


@pytest.mark.parametrize("scenario", ["zstd", "uncompressed", "docker_schema2", "odd_names"])
def test_layer_formats(toolbox, registry, pushed_images, scenario):
    toolbox.trust(registry)
    image = pushed_images[scenario]
    record = toolbox.pull(image.reference)
    assert str(record.digest) == image.manifest_digest
    for diff_id in image.built.diff_ids:
        assert layer_tree(toolbox, diff_id).is_dir()


def test_odd_names_keep_their_bytes(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    image = pushed_images["odd_names"]
    toolbox.pull(image.reference)
    tree = layer_tree(toolbox, image.built.diff_ids[-1])
    assert (os.fsencode(tree) + b"/caf\xe9.txt") and os.path.exists(os.fsencode(tree) + b"/caf\xe9.txt")
    assert (tree / ("long/" + "n" * 145)).read_text() == "long name\n"


@pytest.mark.parametrize("scenario", ["multiarch", "docker_list"])
def test_index_selects_this_platform_and_others_on_request(toolbox, registry, pushed_images, scenario):
    toolbox.trust(registry)
    index = pushed_images[scenario]
    here = host_platform()
    children = {c.platform["architecture"]: c for c in index.built.images}
    if here.architecture not in children:
        pytest.skip(f"the test index has no image for {here}")
    record = toolbox.pull(index.reference)
    assert str(record.index_digest) == index.manifest_digest
    assert str(record.digest) == children[here.architecture].manifest_digest
    other = "arm64" if here.architecture != "arm64" else "amd64"
    record = toolbox.pull(index.reference, platform=f"linux/{other}")
    chosen = children[other]
    assert str(record.digest) == chosen.manifest_digest
    assert (layer_tree(toolbox, chosen.diff_ids[-1]) / "arch").read_text().startswith(other)
    with pytest.raises(NotFound, match="available: linux/amd64, linux/arm64"):
        toolbox.pull(index.reference, platform="linux/s390x")


def test_pull_by_digest(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    image = pushed_images["busybox"]
    record = toolbox.pull(image.by_digest)
    assert record.reference == image.by_digest and str(record.digest) == image.manifest_digest


def test_unknown_repository_and_tag(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    with pytest.raises(NotFound):
        toolbox.pull(f"{registry.host}/no/such-repo:1")
    with pytest.raises(NotFound):
        toolbox.pull(f"{registry.host}/busybox:no-such-tag")
    result = toolbox.cli("pull", f"{registry.host}/busybox:no-such-tag")
    assert result.returncode == 125
    assert "not found" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_reference_is_a_clear_cli_error(toolbox):
    result = toolbox.cli("pull", "Not/Valid")
    assert result.returncode == 125
    assert "must be lowercase" in result.stderr


def test_tampered_blob_is_refused_and_nothing_kept(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    image = pushed_images["tampered"]
    with pytest.raises(IntegrityError, match="does not match"):
        toolbox.pull(image.reference)
    assert toolbox.store.find(image.reference) == []
    assert not layer_tree(toolbox, image.built.diff_ids[-1]).exists()
    assert toolbox.leftovers() == []


@pytest.mark.parametrize(
    "scenario, words",
    [("dotdot", "'..'"), ("symlink_escape", "symlink"), ("hardlink_escape", "hard link"),
     ("too_deep", "601 levels deep"), ("trailing_data", "after the end of the tar archive")],
)
def test_hostile_layers_are_refused(toolbox, registry, pushed_images, tmp_path, scenario, words):
    toolbox.trust(registry)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("unchanged")
    image = pushed_images[scenario]
    with pytest.raises(LayerError, match=words):
        toolbox.pull(image.reference)
    assert toolbox.leftovers() == []
    assert toolbox.store.find(image.reference) == []
    assert [p.name for p in canary.iterdir()] == ["keep"] and (canary / "keep").read_text() == "unchanged"
    # Nothing named after the hostile members appeared anywhere under the test's directory.
    for _root, dirs, files in os.walk(tmp_path):
        assert not {"escape", "pwned"} & set(dirs + files)
    result = toolbox.cli("pull", image.reference)
    assert result.returncode == 125 and words in result.stderr and "Traceback" not in result.stderr


def test_max_layer_bytes_from_the_environment_limits_a_pull(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    image = pushed_images["busybox"]
    toolbox.env["TOOLBOX_MAX_LAYER_BYTES"] = "1000"
    result = toolbox.cli("pull", image.reference)
    assert result.returncode == 125, result.stderr
    assert "more than the limit of 1000 bytes per layer" in result.stderr
    assert "hint: if the image is genuine, raise the limit with TOOLBOX_MAX_LAYER_BYTES" in result.stderr
    assert "Traceback" not in result.stderr
    assert toolbox.store.records() == [] and toolbox.layer_dirs() == [] and toolbox.leftovers() == []
    toolbox.env["TOOLBOX_MAX_LAYER_BYTES"] = "1G"
    result = toolbox.cli("pull", image.reference)
    assert (result.returncode == 125
            and "TOOLBOX_MAX_LAYER_BYTES='1G' is not a number of bytes" in result.stderr)
    toolbox.env["TOOLBOX_MAX_LAYER_BYTES"] = str(10 * 1024 * 1024)
    assert toolbox.cli("pull", image.reference).returncode == 0


def test_min_free_bytes_from_the_environment_refuses_a_pull_before_it_writes(toolbox, registry,
                                                                             pushed_images):
    toolbox.trust(registry)
    image = pushed_images["busybox"]
    statvfs = os.statvfs(toolbox.root)
    toolbox.env["TOOLBOX_MIN_FREE_BYTES"] = str(statvfs.f_bavail * statvfs.f_frsize + 1024**3)
    result = toolbox.cli("pull", image.reference)
    assert result.returncode == 125 and "Traceback" not in result.stderr, result.stderr
    refused = (r"not enough free space to store blob [0-9a-f]{12}: [0-9.]+ (GiB|MiB|bytes) free "
               "on the filesystem of the store")
    assert re.search(refused, result.stderr), result.stderr
    assert "lower the reserve with TOOLBOX_MIN_FREE_BYTES=BYTES" in result.stderr
    assert toolbox.store.records() == [] and toolbox.layer_dirs() == [] and toolbox.leftovers() == []
    toolbox.env["TOOLBOX_MIN_FREE_BYTES"] = "1G"
    result = toolbox.cli("pull", image.reference)
    assert (result.returncode == 125
            and "TOOLBOX_MIN_FREE_BYTES='1G' is not a number of bytes" in result.stderr)
    toolbox.env["TOOLBOX_MIN_FREE_BYTES"] = "0"
    assert toolbox.cli("pull", image.reference).returncode == 0


def test_neutralised_members(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    toolbox.pull(pushed_images["special_files"].reference)
    tree = layer_tree(toolbox, pushed_images["special_files"].built.diff_ids[-1])
    assert not (tree / "null").exists() and not (tree / "fifo").exists()
    assert stat.S_IMODE((tree / "setuid").stat().st_mode) == 0o755
    assert stat.S_IMODE((tree / "setgid").stat().st_mode) == 0o755
    assert (tree / "ro").stat().st_mode & 0o700 == 0o700
    toolbox.pull(pushed_images["absolute_paths"].reference)


def test_https_registry_needs_its_ca(toolbox, tls_registry, tls_pushed_images):
    image = tls_pushed_images["busybox"]
    with pytest.raises(RegistryError, match="TLS verification failed") as info:
        toolbox.pull(image.reference)
    assert "ca_file" in info.value.hint
    toolbox.trust(tls_registry)
    assert str(toolbox.pull(image.reference).digest) == image.manifest_digest


def test_basic_auth_login_pull_logout(toolbox, basic_registry, basic_pushed_images):
    toolbox.trust(basic_registry)
    image = basic_pushed_images["busybox"]
    with pytest.raises(AuthError, match="toolbox login|requires"):
        toolbox.pull(image.reference)
    wrong = toolbox.cli("login", basic_registry.host, "-u", "alice", "--password-stdin", input="wrong\n")
    assert wrong.returncode == 125 and "rejected" in wrong.stderr and "wrong" not in wrong.stderr
    assert not (toolbox.home / ".docker" / "config.json").exists()
    ok = toolbox.cli("login", basic_registry.host, "-u", "alice", "--password-stdin",
                     input=basic_registry.password + "\n")
    assert ok.returncode == 0, ok.stderr
    config = toolbox.home / ".docker" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert basic_registry.password not in ok.stdout + ok.stderr
    assert str(toolbox.pull(image.reference).digest) == image.manifest_digest
    assert toolbox.cli("logout", basic_registry.host).returncode == 0
    assert basic_registry.host not in json.loads(config.read_text()).get("auths", {})


def test_token_auth_anonymous_and_with_credentials(toolbox, token_registry, token_pushed_images):
    toolbox.trust(token_registry)
    public = token_pushed_images["public"]["busybox"]
    private = token_pushed_images["private"]["busybox"]
    token_registry.token_server.reset()
    assert str(toolbox.pull(public.reference).digest) == public.manifest_digest
    # One token for the whole pull: it is cached, not fetched per request.
    assert token_registry.token_server.request_count == 1
    with pytest.raises(AuthError) as info:
        toolbox.pull(private.reference)
    assert "toolbox login" in info.value.hint
    login = toolbox.cli("login", token_registry.host, "-u", "bob", "--password-stdin",
                        input=token_registry.password)
    assert login.returncode == 0, login.stderr
    assert str(toolbox.pull(private.reference).digest) == private.manifest_digest


def test_expired_token_is_renewed_and_a_refused_one_is_an_error(toolbox, token_registry, token_pushed_images):
    import time

    from toolbox.oci.reference import ImageRef

    toolbox.trust(token_registry)
    ref = ImageRef.parse(token_pushed_images["public"]["multiarch"].reference)
    server = token_registry.token_server
    client = toolbox.services().registry_client()
    try:
        server.reset()
        with server.expiring_in(6):  # the client renews 5 s early: this token lasts 1 s
            client.get_manifest(ref)
            client.get_manifest(ref)
            assert server.request_count == 1
            time.sleep(1.2)
            client.get_manifest(ref)
        assert server.request_count == 2
    finally:
        client.close()
    client = toolbox.services().registry_client()
    try:
        with server.issuing_stale_tokens(), pytest.raises(AuthError, match="denied"):
            client.get_manifest(ref)
    finally:
        client.close()


def test_mirror_is_tried_first_and_falls_back(toolbox, registry, registry_factory, pushed_images):
    from tests.support.push import push_raw

    mirror = registry_factory("plain")
    push_raw(mirror, "library/mirrored", "1", pushed_images["busybox"].built)
    dead_port_mirror = "127.0.0.1:9"  # discard port: connection refused
    config = Path(toolbox.layout.config_file)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[registries."docker.io"]\nmirrors = ["http://{dead_port_mirror}", "{mirror.host}"]\n'
        + mirror.toolbox_config_toml()
    )
    # a user's settings: a dead mirror costs no backoff
    for name in ("TOOLBOX_RETRIES", "TOOLBOX_RETRY_BACKOFF"):
        toolbox.env.pop(name)
    start = time.monotonic()
    record = toolbox.pull("docker.io/library/mirrored:1")
    assert time.monotonic() - start < 5
    assert record.reference == "docker.io/library/mirrored:1"
    assert str(record.digest) == pushed_images["busybox"].manifest_digest


def test_images_inspect_rmi_prune_df_agree_with_disk(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    a, b = pushed_images["shared_a"], pushed_images["shared_b"]
    toolbox.pull(a.reference)
    toolbox.pull(b.reference)
    listed = json.loads(toolbox.cli("images", "--json").stdout)
    assert sorted(i["reference"] for i in listed) == sorted([a.reference, b.reference])
    assert all(i["complete"] for i in listed)
    inspected = json.loads(toolbox.cli("inspect", a.reference, "--json").stdout)
    assert inspected["config"]["cmd"] == ["cat", "/a.txt"]
    assert [layer["diff_id"] for layer in inspected["layers"]] == list(a.built.diff_ids)
    usage = json.loads(toolbox.cli("df", "--json").stdout)
    per_image = {u["reference"]: u for u in usage["images"]}
    base_bytes = toolbox.store.layer_info(Digest.parse(a.built.diff_ids[0]))["disk_bytes"]
    assert per_image[a.reference]["shared"] == base_bytes == per_image[b.reference]["shared"]
    assert usage["layers_count"] == len(toolbox.layer_dirs()) == 3
    assert usage["reclaimable"] == 0

    removed = toolbox.cli("rmi", a.reference)
    assert removed.returncode == 0, removed.stderr
    assert len(toolbox.layer_dirs()) == 2  # A's own layer went, the shared base stayed
    assert (layer_tree(toolbox, b.built.diff_ids[0]) / "bin" / "busybox").exists()
    assert toolbox.cli("rmi", "no-such-image").returncode == 125
    assert toolbox.cli("rmi", b.reference).returncode == 0
    assert toolbox.layer_dirs() == []
    assert json.loads(toolbox.cli("images", "--json").stdout) == []
    prune = toolbox.cli("prune")
    assert prune.returncode == 0 and "Removed 0 layers" in prune.stdout


@pytest.mark.parametrize("which", ["basic", "token"])
def test_wrong_stored_credentials_are_a_clear_error(toolbox, which, request):
    import base64

    server = request.getfixturevalue(f"{which}_registry")
    images = request.getfixturevalue(f"{which}_pushed_images")
    image = images["busybox"] if which == "basic" else images["private"]["busybox"]
    toolbox.trust(server)
    config = toolbox.home / ".docker" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    bad = base64.b64encode(f"{server.username}:not-the-password".encode()).decode()
    config.write_text(json.dumps({"auths": {server.host: {"auth": bad}}}))
    with pytest.raises(AuthError) as info:
        toolbox.pull(image.reference)
    assert "not-the-password" not in str(info.value) + str(info.value.hint)
    assert "toolbox login" in info.value.hint
    assert toolbox.store.records() == [] and toolbox.leftovers() == []


def test_pulling_a_stored_image_again_shows_no_empty_progress(toolbox, registry, pushed_images):
    import io

    from toolbox.ops.progress import PlainProgress, TerminalProgress

    toolbox.trust(registry)
    single, double = pushed_images["busybox"], pushed_images["shared_a"]  # one layer, two
    first = io.StringIO()
    toolbox.pull(single.reference, progress=PlainProgress(first))
    assert first.getvalue().splitlines()[1].startswith("1 layer, 0 already stored, ")
    for image, said in ((single, "its one layer is already stored"), (double, None)):
        toolbox.pull(image.reference)
        again = io.StringIO()  # what a terminal gets
        toolbox.pull(image.reference, progress=TerminalProgress(again))
        text = again.getvalue()
        assert "total" not in text and " / " not in text and "[" not in text and "\x1b" not in text, text
        assert text.splitlines()[1] == f"  {said or 'all 2 layers are already stored'}", text
        plain = io.StringIO()
        toolbox.pull(image.reference, progress=PlainProgress(plain))
        assert (plain.getvalue().splitlines()[1]
                == f"{said or 'all 2 layers are already stored'}: nothing to download")


def test_pull_names_each_digest_once(toolbox, registry, pushed_images):
    """`Pulling R@D (linux/amd64), D` said the digest twice, and a pull by tag said it on stderr
    and again in its result on stdout: a log (2>&1) has the digest a tag names once, a pull by
    digest names it only as the reference typed, and one of an index by its digest still says
    which manifest it chose."""
    import subprocess
    import sys

    toolbox.trust(registry)
    single, index = pushed_images["busybox"], pushed_images["multiarch"]
    chosen = next(child.manifest_digest for child in index.built.children
                  if child.platform.get("architecture") == "amd64")

    def log(*args):
        done = subprocess.run([sys.executable, "-m", "toolbox", *args], env=toolbox.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        assert done.returncode == 0, done.stdout
        return done.stdout

    for reference, digest in ((single.reference, single.digest), (index.reference, index.digest)):
        text = log("pull", reference)
        assert text.count(digest) == 1 and text.endswith(f"@{digest}\n"), text  # in the result only
    text = log("pull", single.by_digest)
    assert (text.startswith(f"Pulling {single.by_digest} (linux/amd64)\n")
            and text.endswith(f"\n{single.by_digest}\n")), text
    text = log("pull", index.by_digest)
    assert text.startswith(f"Pulling {index.by_digest} (linux/amd64), manifest {chosen}\n"), text
    assert text.count(chosen) == 1 and text.endswith(f"\n{index.by_digest}\n"), text
    # Where nothing else prints the digest (a run's pull on first use), the progress line does.
    import io

    from toolbox.ops.progress import PlainProgress

    out = io.StringIO()
    toolbox.pull(single.reference, progress=PlainProgress(out))
    assert out.getvalue().splitlines()[0] == f"Pulling {single.reference} (linux/amd64), {single.digest}"


def test_rmi_says_what_it_removed_before_what_it_freed(toolbox, registry, pushed_images):
    import subprocess
    import sys

    toolbox.trust(registry)
    image = pushed_images["busybox"]
    toolbox.pull(image.reference)
    # stdout and stderr into one pipe, as `toolbox rmi X 2>&1 | less` has them
    result = subprocess.run([sys.executable, "-m", "toolbox", "rmi", image.reference], env=toolbox.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert result.returncode == 0
    removed, freed = result.stdout.splitlines()
    assert removed == f"Removed {image.reference}"
    assert re.fullmatch(r"Freed [0-9.]+ [kM]?B \(1 layer\)", freed), freed
