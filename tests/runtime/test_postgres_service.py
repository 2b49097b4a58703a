"""A real database as a service: postgres from this host's Debian packages, in an image whose
entrypoint does what the official one does (tests/support/servers.py), driven from the host with
the host's psql: write, stop cleanly, start, read back; two side by side; exec; a killed monitor;
a killed server."""

import os
import signal
import time

import pytest

from tests.runtime.test_forward import free_port
from tests.runtime.test_services import listed, logged, start_service, state_of, toolbox_command, wait_for
from tests.support.push import push_raw
from tests.support.servers import is_ready, postgres_image, psql, require_postgres

pytestmark = [pytest.mark.needs_userns_overlay, pytest.mark.slow]


@pytest.fixture(scope="session")
def postgres_reference(registry):
    require_postgres()
    push_raw(registry, "services/postgres", "15", postgres_image())
    return f"{registry.host}/services/postgres:15"


@pytest.fixture
def postgres(toolbox, registry, postgres_reference):
    toolbox.trust(registry)
    toolbox.pull(postgres_reference)
    yield postgres_reference
    for name in ("pg", "pg2", "nopass"):  # its data belongs to subordinate ids: pytest could not remove it
        toolbox_command(toolbox, "rm", "-f", name)
    toolbox_command(toolbox, "volume", "rm", "pgdata")


def start_postgres(toolbox, image, name, port, *options):
    start_service(toolbox, "--name", name, "-e", "POSTGRES_PASSWORD=foobarbaz", "-p", f"{port}:5432",
                  *options, image)
    wait_for(lambda: is_ready(port) or not listed(toolbox, name)["running"], timeout=120,
             what=f"postgres {name} to accept connections")
    assert listed(toolbox, name)["running"], logged(toolbox, name).stderr


def test_postgres_keeps_its_data_across_stop_and_start(toolbox, postgres):
    port = free_port()
    start_postgres(toolbox, postgres, "pg", port, "-v", "pgdata:/var/lib/postgresql/data")
    created = psql(port, "create table notes (text text); insert into notes values ('kept'); select 1")
    assert created.returncode == 0 and created.stdout.splitlines()[-1] == "1", created.stderr
    assert psql(port, "select 1", password="wrong").returncode != 0  # scram over TCP, as the image sets up
    inside = toolbox_command(toolbox, "exec", "-u", "postgres", "-w", "/", "pg", "psql", "-At", "-c",
                             "select text from notes")
    assert inside.returncode == 0 and inside.stdout == "kept\n", inside.stderr  # through its unix socket
    assert toolbox_command(toolbox, "stop", "pg").returncode == 0
    assert listed(toolbox, "pg")["status"] == "exited (0)"
    assert "database system is shut down" in logged(toolbox, "pg").stderr  # SIGINT: a fast, clean shutdown
    assert toolbox_command(toolbox, "start", "pg").returncode == 0
    wait_for(lambda: is_ready(port), timeout=60)
    assert psql(port, "select text from notes").stdout == "kept\n"
    # the server killed outright: it recovers from its WAL on the next start
    os.kill(listed(toolbox, "pg")["pid"], signal.SIGKILL)
    wait_for(lambda: not listed(toolbox, "pg")["running"])
    assert listed(toolbox, "pg")["status"] == "exited (137)"
    assert toolbox_command(toolbox, "start", "pg").returncode == 0
    wait_for(lambda: is_ready(port), timeout=60)
    assert psql(port, "select text from notes").stdout == "kept\n"
    # its monitor killed: the server goes on (without its published port, which the monitor
    # forwarded), ps says so, and stop still stops it cleanly
    os.kill(int(state_of(toolbox, "pg")["monitor"]), signal.SIGKILL)
    time.sleep(0.2)
    service = listed(toolbox, "pg")
    assert service["running"] and not service["monitor"]
    assert "monitor gone" in toolbox_command(toolbox, "ps").stdout
    assert toolbox_command(toolbox, "exec", "-u", "postgres", "-w", "/", "pg", "psql", "-At", "-c",
                           "select 1").stdout == "1\n"
    assert toolbox_command(toolbox, "stop", "pg").returncode == 0
    assert "database system is shut down" in logged(toolbox, "pg").stderr
    assert not listed(toolbox, "pg")["running"]
    # rm keeps the named volume: a new container finds the data
    assert toolbox_command(toolbox, "rm", "pg").returncode == 0
    start_postgres(toolbox, postgres, "pg", port, "-v", "pgdata:/var/lib/postgresql/data")
    assert psql(port, "select text from notes").stdout == "kept\n"


def test_two_servers_side_by_side_on_their_own_ports(toolbox, postgres):
    ports = free_port(), free_port()
    start_postgres(toolbox, postgres, "pg", ports[0])
    start_postgres(toolbox, postgres, "pg2", ports[1])
    assert psql(ports[0], "create table only_here (x int)").returncode == 0
    assert psql(ports[1], "select count(*) from pg_tables where tablename = 'only_here'").stdout == "0\n"
    for name in ("pg", "pg2"):
        assert toolbox_command(toolbox, "stop", name).returncode == 0


def test_the_entrypoint_error_reaches_the_log_and_the_status(toolbox, postgres):
    start_service(toolbox, "--name", "nopass", postgres)
    wait_for(lambda: not listed(toolbox, "nopass")["running"], timeout=60)
    assert listed(toolbox, "nopass")["status"] == "exited (1)"
    assert "You must specify POSTGRES_PASSWORD" in logged(toolbox, "nopass").stderr
