#!/usr/bin/env python3
"""Cold-pull benchmark: an image of ~35 MB compressed / ~110 MB unpacked (the host's Python
standard library and dist-packages, in two layers) served by Debian's docker-registry on 127.0.0.1.

Measures, each from an empty store, in turn (round robin, page cache flushed before each), the
median of N runs of:
  toolbox pull            (the CLI, as a user runs it)
  podman pull             (fresh --root/--runroot), when podman is installed
  skopeo copy + umoci unpack --rootless, when both are installed
and prints the ratios against toolbox. Run it as an ordinary user:

    python3 bench/pull_bench.py [--runs 5]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import images  # noqa: E402
from tests.support.push import push_raw  # noqa: E402
from tests.support.registry import RegistryServer  # noqa: E402

SOURCES = ["/usr/lib/python3.11", "/usr/lib/python3/dist-packages"]


def layer_from_directory(source):
    """An uncompressed tar of a host directory, with names relative to / (deterministic order)."""
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(source):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(root, name)
                info = tar.gettarinfo(path, arcname=path.lstrip("/"))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as file:
                        tar.addfile(info, file)
                elif info.isdir() or info.issym():
                    tar.addfile(info)
    return buffer.getvalue()


def build_image():
    import gzip
    import hashlib
    import json

    blobs, layers, diff_ids = {}, [], []
    for source in SOURCES:
        if not os.path.isdir(source):
            continue
        tar = layer_from_directory(source)
        blob = gzip.compress(tar, compresslevel=6, mtime=0)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        blobs[digest] = blob
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest,
                       "size": len(blob)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["python3"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    blobs[config_digest] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": images.OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config)},
            "layers": layers,
        }
    ).encode()
    built = images.BuiltImage(
        manifest_bytes=manifest,
        manifest_digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
        config_bytes=config,
        config_digest=config_digest,
        blobs=blobs,
        media_type=images.OCI_MANIFEST,
        layers=tuple(layers),
        diff_ids=tuple(diff_ids),
        platform={"architecture": "amd64", "os": "linux"},
    )
    unpacked = sum(len(layer_from_directory(s)) for s in SOURCES if os.path.isdir(s))
    return built, sum(layer["size"] for layer in layers), unpacked


def timed(command, env=None, cwd=None):
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def toolbox_pull(reference, registry, workdir, i):
    toolbox = shutil.which("toolbox") or None
    command = [toolbox] if toolbox else [sys.executable, "-m", "toolbox"]
    home = workdir / f"toolbox-{i}"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text(registry.toolbox_config_toml())
    env = dict(os.environ, TOOLBOX_HOME=str(home), PYTHONPATH=str(REPO))
    try:
        return timed(command + ["pull", "--quiet", reference], env=env)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def podman_pull(reference, registry, workdir, i):
    top = workdir / f"podman-{i}"
    command = ["podman", "--root", str(top / "root"), "--runroot", str(top / "run"), "--storage-driver",
               "overlay", "pull", "--quiet", "--tls-verify=false", reference]
    try:
        return timed(command)
    finally:
        subprocess.run(["podman", "unshare", "rm", "-rf", str(top)], check=False, capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def skopeo_umoci_pull(reference, registry, workdir, i):
    policy = workdir / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    target = workdir / f"skopeo-{i}"
    target.mkdir()
    start = time.perf_counter()
    try:
        subprocess.run(["skopeo", "--policy", str(policy), "copy", "--src-tls-verify=false",
                        f"docker://{reference}", f"oci:{target}/layout:img"], check=True, capture_output=True)
        subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{target}/layout:img",
                        str(target / "bundle")], check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(target, ignore_errors=True)


CONTENDERS = [
    ("toolbox pull", toolbox_pull, ()),
    ("podman pull", podman_pull, ("podman",)),
    ("skopeo copy + umoci unpack", skopeo_umoci_pull, ("skopeo", "umoci")),
]


def run_round_robin(reference, registry, workdir, runs):
    """One run of each tool in turn, so slow phases of a noisy machine hit all of them alike;
    the page cache is flushed before every run, so no run pays for the previous one's writes."""
    results = {name: ([] if all(shutil.which(p) for p in needs) else None) for name, _, needs in CONTENDERS}
    for i in range(runs):
        for name, pull, _ in CONTENDERS:
            if results[name] is None:
                continue
            os.sync()
            try:
                results[name].append(pull(reference, registry, workdir, i))
            except subprocess.CalledProcessError as err:
                print(f"{name} failed: {(err.stderr or b'').decode(errors='replace').strip()[:300]}",
                      file=sys.stderr)
                results[name] = None
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="toolbox-bench-"))
    try:
        built, compressed, unpacked = build_image()
        with RegistryServer(workdir / "registry", "plain") as registry:
            push_raw(registry, "bench/python", "1", built)
            reference = f"{registry.host}/bench/python:1"
            print(f"image: {len(built.layers)} layers, {compressed / 1e6:.1f} MB compressed, "
                  f"{unpacked / 1e6:.1f} MB unpacked; {args.runs} cold pulls each")
            results = run_round_robin(reference, registry, workdir, args.runs)
        ours = statistics.median(results["toolbox pull"])
        for name, times in results.items():
            if times is None:
                print(f"{name:28s}  not installed or failed")
                continue
            median = statistics.median(times)
            ratio = "" if name == "toolbox pull" else f"   {median / ours:.2f}x toolbox's time"
            print(f"{name:28s}  median {median:6.2f} s  (min {min(times):.2f}, max {max(times):.2f}){ratio}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
