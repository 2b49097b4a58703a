"""Server images for the services tests, built from this host's Debian packages (postgresql-15,
gosu, busybox-static; scripts/test installs them): a postgres image whose entrypoint behaves as
the official one does — it starts as root, creates and chowns its data directory to the
`postgres` user (uid 999), drops to it with gosu, runs initdb with POSTGRES_PASSWORD on first
start, and execs the server, which wants SIGINT to stop (StopSignal). Its entrypoint is a
relative name found through the image's PATH, /var/run is a symlink to /run, the locale is
C.UTF-8: the details the official image has that a runtime must get right.
"""

import functools
import os
import subprocess

import pytest

from tests.support import images

POSTGRES_VERSION = "15"
POSTGRES_HOME = f"/usr/lib/postgresql/{POSTGRES_VERSION}"
POSTGRES_BINARIES = ("postgres", "initdb", "pg_ctl", "pg_isready", "psql")
GOSU = "/usr/sbin/gosu"
BUSYBOX_APPLETS = ("sh", "mkdir", "chown", "chmod", "id", "echo", "rm", "cat", "ls", "sleep", "test", "[",
                   "cp", "env")
DATA_DIRS = ("/usr/share/postgresql/" + POSTGRES_VERSION, "/usr/share/zoneinfo", "/usr/lib/locale/C.utf8",
             POSTGRES_HOME + "/lib")

ENTRYPOINT = r"""#!/bin/sh
# As the official image's docker-entrypoint.sh: root prepares the data directory, then drops to postgres.
set -e
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec gosu postgres "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ]; then
        echo "Error: Database is uninitialized and superuser password is not specified." >&2
        echo "       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser." >&2
        exit 1
    fi
    echo "$POSTGRES_PASSWORD" > /tmp/pwfile
    initdb --username=postgres --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA"
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "PostgreSQL init process complete; ready for start up."
fi
if [ "$1" = postgres ]; then
    exec "$@" -c listen_addresses='*'
fi
exec "$@"
"""


def host_has_postgres():
    return all(os.access(f"{POSTGRES_HOME}/bin/{name}", os.X_OK) for name in POSTGRES_BINARIES) and os.access(
        GOSU, os.X_OK)


def require_postgres():
    if not host_has_postgres():
        pytest.skip(f"needs Debian's postgresql-{POSTGRES_VERSION} and gosu (scripts/test installs them)")


def _shared_libraries(paths):
    """The shared libraries `paths` load, and the dynamic loader: (path in the image, real file)."""
    found = {}
    for path in paths:
        listed = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
        for line in listed.splitlines():
            words = line.split()
            library = words[2] if len(words) >= 3 and words[1] == "=>" else words[0]
            if library.startswith("/"):
                found[library] = os.path.realpath(library)
    return found


def _tree(root):
    for directory, _, names in os.walk(root):
        for name in names:
            yield os.path.join(directory, name)


@functools.lru_cache(maxsize=None)
def postgres_image():
    """The image (tests.support.images.BuiltImage): one uncompressed layer of ~80 MB."""
    entries, seen = [], set()

    def add_directory(path, mode=0o755, **kw):
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent not in seen:
                seen.add(parent)
                entries.append(images.directory(parent, mode if depth == len(parts) else 0o755, **kw))

    def add_file(path, source=None, data=None, mode=None):
        add_directory(os.path.dirname(path))
        if source is not None:
            with open(source, "rb") as file:
                data = file.read()
            mode = mode or (os.stat(source).st_mode & 0o777)
        entries.append(images.file(path.lstrip("/"), data, mode or 0o644))

    binaries = [f"{POSTGRES_HOME}/bin/{name}" for name in POSTGRES_BINARIES]
    modules = [path for path in _tree(POSTGRES_HOME + "/lib") if path.endswith(".so")]
    for path in binaries:
        add_file(path, path)
    for directory in DATA_DIRS:
        for path in _tree(directory):
            if not os.path.islink(path):
                add_file(path, path)
    for inside, real in sorted(_shared_libraries(binaries + modules).items()):
        add_file(inside, real)
    add_file("/usr/sbin/gosu", GOSU)
    add_file("/bin/busybox", images.BUSYBOX)
    for applet in BUSYBOX_APPLETS:
        entries.append(images.symlink(f"bin/{applet}", "busybox"))
    add_file("/usr/local/bin/docker-entrypoint.sh", data=ENTRYPOINT.encode(), mode=0o755)
    add_file("/etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"
                                 b"postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n")
    add_file("/etc/group", data=b"root:x:0:\npostgres:x:999:\n")
    for directory, mode in (("/run/postgresql", 0o2777), ("/var/lib/postgresql", 0o755), ("/tmp", 0o1777),
                            ("/root", 0o700), ("/dev", 0o755), ("/proc", 0o555), ("/sys", 0o555)):
        add_directory(directory, mode)
    entries.append(images.symlink("var/run", "/run"))
    spec = images.ImageSpec(
        layers=(images.Layer(tuple(entries), "none"),),
        entrypoint=("docker-entrypoint.sh",),
        cmd=("postgres",),
        env=(f"PATH={POSTGRES_HOME}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "PGDATA=/var/lib/postgresql/data", "LANG=C.UTF-8"),
        labels={"org.example.scenario": "postgres"},
        extra_config={"StopSignal": "SIGINT", "ExposedPorts": {"5432/tcp": {}},
                      "Volumes": {"/var/lib/postgresql/data": {}}},
    )
    return images.build_image(spec)


def psql(port, sql, password="foobarbaz", timeout=30):
    """The host's psql against 127.0.0.1:`port` as postgres."""
    command = [f"{POSTGRES_HOME}/bin/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At",
               "-c", sql]
    return subprocess.run(command, env=dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5"),
                          capture_output=True, text=True, timeout=timeout)


def is_ready(port):
    command = [f"{POSTGRES_HOME}/bin/pg_isready", "-h", "127.0.0.1", "-p", str(port), "-t", "2"]
    return subprocess.run(command, capture_output=True).returncode == 0
