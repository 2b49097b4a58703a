#!/usr/bin/env python3
"""Service benchmark: postgres (an image built from this host's Debian postgresql-15 and gosu,
with an entrypoint that behaves as the official one: tests/support/servers.py), served by
Debian's docker-registry on 127.0.0.1 and pulled once beforehand.

Prints the medians of N runs of:
- first start: `toolbox run -d -e POSTGRES_PASSWORD=... -p PORT:5432 IMAGE` until the server
  accepts a connection (pg_isready), initdb included, on a fresh writable layer each time;
- restart: `toolbox start` of a stopped one until it accepts connections again;
- the monitor's resident memory while the server runs;
and, when podman is installed, `podman run -d` of the same image the same way, with the ratios.
Run it as an ordinary user:

    python3 bench/service_bench.py [--runs 5]
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from isolated import bench_setup  # noqa: E402 - bench/, first on the path of a script run from it

from tests.support.servers import host_has_postgres, is_ready, postgres_image  # noqa: E402

PASSWORD = "POSTGRES_PASSWORD=bench"


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def until_ready(port, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not is_ready(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"postgres on port {port} did not become ready")
        time.sleep(0.01)


def timed_start(command, port, env=None):
    """Seconds from `command` (which returns once the server is started in the background) to
    the server accepting connections."""
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    until_ready(port)
    return time.perf_counter() - start


def ms(seconds):
    return f"{statistics.median(seconds) * 1000:7.0f} ms"


def ratio(ours, theirs):
    return f"{statistics.median(ours) / statistics.median(theirs):.2f}x"


def resident_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_toolbox(toolbox, reference, env, runs, layout_dir):
    first, restart, rss = [], [], []
    for index in range(runs):
        name, port = f"bench-pg-{index}", free_port()
        command = toolbox + ["run", "-d", "--name", name, "-e", PASSWORD, "-p", f"{port}:5432", reference]
        first.append(timed_start(command, port, env))
        state = dict(line.split("=", 1) for line in
                     (layout_dir / "containers" / name / "state").read_text().splitlines())
        rss.append(resident_kib(int(state["monitor"])))
        subprocess.run(toolbox + ["stop", name], env=env, check=True, capture_output=True)
        restart.append(timed_start(toolbox + ["start", name], port, env))
        subprocess.run(toolbox + ["rm", "-f", name], env=env, check=True, capture_output=True)
    return first, restart, rss


def bench_podman(registry, reference, runs):
    podman = ["podman"]
    subprocess.run(podman + ["pull", "--tls-verify=false", reference], check=True, capture_output=True)
    first, restart = [], []
    for index in range(runs):
        name, port = f"bench-pg-{index}", free_port()
        command = podman + ["run", "-d", "--name", name, "-e", PASSWORD, "-p", f"{port}:5432", reference]
        first.append(timed_start(command, port))
        subprocess.run(podman + ["stop", name], check=True, capture_output=True)
        restart.append(timed_start(podman + ["start", name], port))
        subprocess.run(podman + ["rm", "-f", name], check=True, capture_output=True)
    return first, restart


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not host_has_postgres():
        sys.exit("service_bench: needs Debian's postgresql-15 and gosu: "
                 "sudo apt-get install postgresql-15 gosu")
    with bench_setup("service-bench", "bench/postgres", "15", postgres_image()) as setup:
        registry, reference, toolbox, env = setup.registry, setup.reference, setup.toolbox, setup.env
        first, restart, rss = bench_toolbox(toolbox, reference, env, args.runs, setup.home / "data")
        print(f"postgres {args.runs} runs, medians")
        print(f"toolbox run -d → accepting connections (initdb)  {ms(first)}")
        print(f"toolbox start  → accepting connections           {ms(restart)}")
        print(f"monitor resident memory                         {statistics.median(rss) / 1024:7.1f} MiB")
        if shutil.which("podman"):
            try:
                peer_first, peer_restart = bench_podman(registry, reference, args.runs)
            except subprocess.CalledProcessError as err:
                detail = (err.stderr or b"").decode(errors="replace")[:300]
                print(f"podman failed: {detail}", file=sys.stderr)
            else:
                print(f"podman run -d  → accepting connections (initdb)  {ms(peer_first)}   "
                      f"toolbox is {ratio(first, peer_first)} its time")
                print(f"podman start   → accepting connections           {ms(peer_restart)}   "
                      f"toolbox is {ratio(restart, peer_restart)} its time")
        else:
            print("podman: not installed (apt-get install podman to compare)")


if __name__ == "__main__":
    main()
