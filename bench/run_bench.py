#!/usr/bin/env python3
"""Warm-launch benchmark: `jq --version` from an image holding the host's jq and its shared
libraries, served by Debian's docker-registry on 127.0.0.1 and pulled once beforehand.

Prints the median of N runs of: native jq; `toolbox run IMAGE --version` (the `toolbox` on
PATH, as scripts/install makes it, else `python -m toolbox`), also in the fuse-overlayfs and
read-only root modes (TOOLBOX_ROOTFS) where they work; the `jq` shim in a project that pins the
real jq recipe (its ghcr.io upstream mirrored to the loopback registry); and, when they
are installed, bwrap and ch-run on the unpacked root filesystem and `podman run --rm` —
and each one's ratio to toolbox. Run it as an ordinary user:

    python3 bench/run_bench.py [--runs 30]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from isolated import bench_setup  # noqa: E402 - bench/, first on the path of a script run from it

from tests.support import images  # noqa: E402
from tests.support.push import push_raw  # noqa: E402


def shared_libraries(binary):
    output = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    paths = []
    for line in output.splitlines():
        parts = line.split("=>")
        candidate = (parts[1] if len(parts) > 1 else parts[0]).split("(")[0].strip()
        if candidate.startswith("/"):
            paths.append(candidate)
    return paths


def jq_image():
    entries = [images.directory(d) for d in ("bin", "dev", "etc", "home", "lib", "lib64", "proc", "sys",
                                             "tmp", "usr", "usr/bin")]
    entries.append(images.file("usr/bin/jq", Path("/usr/bin/jq").read_bytes(), 0o755))
    entries.append(images.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"))
    entries.append(images.file("etc/group", "root:x:0:\n"))
    seen_dirs = set()
    for library in shared_libraries("/usr/bin/jq"):
        real = os.path.realpath(library)
        for directory in (os.path.dirname(library), os.path.dirname(real)):
            parts = directory.strip("/").split("/")
            for depth in range(1, len(parts) + 1):
                sub = "/".join(parts[:depth])
                if sub not in seen_dirs and sub not in ("bin", "dev", "etc", "home", "lib", "lib64", "proc",
                                                        "sys", "tmp", "usr", "usr/bin"):
                    seen_dirs.add(sub)
                    entries.append(images.directory(sub))
        entries.append(images.file(real.lstrip("/"), Path(real).read_bytes(), 0o755))
        if library != real:
            entries.append(images.symlink(library.lstrip("/"), real))
    spec = images.ImageSpec(layers=(images.Layer(tuple(entries)),), entrypoint=("/usr/bin/jq",))
    return images.build_image(spec)


def shim_for_pinned_jq(registry, built, home, workdir, toolbox, env):
    """The real jq recipe, its upstream (ghcr.io) mirrored to the loopback registry; a project
    pinning jq 1.7.1; `toolbox shim install jq`. Returns the shim's path."""
    push_raw(registry, "mirror/ghcr/jqlang/jq", "1.7.1", built)
    with open(home / "config" / "config.toml", "a") as config:
        config.write(f'[registries."ghcr.io"]\nmirrors = ["http://{registry.host}/mirror/ghcr"]\n')
    project = workdir / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    subprocess.run(toolbox + ["sync"], env=env, cwd=project, check=True, capture_output=True)
    subprocess.run(toolbox + ["shim", "install", "jq"], env=env, cwd=project, check=True, capture_output=True)
    return str(home / "data" / "shims" / "jq")


def median_ms(command, runs, env=None, cwd=None):
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=cwd)  # warm-up (and plan cache)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    built = jq_image()
    with bench_setup("run-bench", "bench/jq", "1", built) as setup:
        workdir, registry, reference = setup.workdir, setup.registry, setup.reference
        toolbox, env, home = setup.toolbox, setup.env, setup.home
        rootfs = workdir / "rootfs"
        rootfs.mkdir()
        from toolbox.layout import Layout
        from toolbox.oci.digest import Digest
        from toolbox.runtime.flatten import merge_layers

        layout = Layout.from_env(env)
        merge_layers([layout.layer_tree(Digest.parse(d)) for d in built.diff_ids], str(rootfs))

        results = {"native jq": median_ms(["/usr/bin/jq", "--version"], args.runs)}
        results["toolbox run"] = median_ms(toolbox + ["run", "--no-cwd", reference, "--version"],
                                           args.runs, env=env)
        shim = shim_for_pinned_jq(registry, built, home, workdir, toolbox, env)
        results["shim jq"] = median_ms([shim, "--version"], args.runs, env=env, cwd=workdir / "project")
        # The fallbacks for kernels without unprivileged overlayfs (fuse-overlayfs needs a
        # /dev/fuse the user may open).
        for mode in ("fuse-overlayfs", "read-only"):
            try:
                results[f"  {mode} mode"] = median_ms(toolbox + ["run", "--no-cwd", reference,
                                                                 "--version"], args.runs,
                                                      env=dict(env, TOOLBOX_ROOTFS=mode))
            except subprocess.CalledProcessError as err:
                print(f"toolbox run in {mode} mode failed: "
                      f"{(err.stderr or b'').decode(errors='replace')[:300]}", file=sys.stderr)
        peers = {
            "bwrap": ["bwrap", "--unshare-user", "--ro-bind", str(rootfs), "/", "--dev-bind", "/dev",
                      "/dev", "--ro-bind", "/proc", "/proc", "/usr/bin/jq", "--version"],
            "ch-run": ["ch-run", str(rootfs), "--", "/usr/bin/jq", "--version"],
        }
        for name, command in peers.items():
            if not shutil.which(command[0]):
                continue
            try:
                results[name] = median_ms(command, args.runs)
            except subprocess.CalledProcessError as err:
                print(f"{name} failed: {(err.stderr or b'').decode(errors='replace')[:300]}",
                      file=sys.stderr)
        if shutil.which("podman"):
            # runc: crun 1.8 refuses hybrid v1/v2 cgroup hosts such as this one.
            runtime = (["--runtime", "runc", "--cgroup-manager", "cgroupfs"] if shutil.which("runc")
                       else [])
            podman = ["podman", "--root", str(workdir / "podman"), "--runroot",
                      str(workdir / "podman-run"), "--storage-driver", "overlay", *runtime]
            try:
                subprocess.run(podman + ["pull", "-q", "--tls-verify=false", reference], check=True,
                               capture_output=True)
                # No cgroups: a hybrid v1/v2 host without systemd (like the CI machine) has none to offer.
                results["podman run --rm"] = median_ms(
                    podman + ["run", "--rm", *(["--cgroups=disabled"] if not runtime else []),
                              "--network", "host", reference, "--version"],
                    max(5, args.runs // 3))
            except subprocess.CalledProcessError as err:
                print(f"podman failed: {err.stderr.decode(errors='replace')[:300]}", file=sys.stderr)
            finally:
                subprocess.run(["podman", "unshare", "rm", "-rf", str(workdir / "podman")],
                               capture_output=True)
        ours = results["toolbox run"]
        print(f"jq --version, median of {args.runs} warm runs each")
        for name, value in results.items():
            relation = ("" if name == "toolbox run"
                        else f"   toolbox is {value / ours:.2f}x its time" if value > ours
                        else f"   {ours / value:.1f}x faster than toolbox")
            print(f"{name:22s} {value:8.1f} ms{relation}")
        if "podman run --rm" in results:
            print("shim jq vs podman run --rm: "
                  f"{results['podman run --rm'] / results['shim jq']:.1f}x faster")


if __name__ == "__main__":
    main()
