"""A real database as a service: postgres from this host's Debian packages, in an image whose
entrypoint does what the official one does (tests/support/servers.py), driven from the host with
the host's psql: write, stop cleanly, start, read back; two side by side; exec; a killed monitor;
a killed server."""

import os
import signal
import subprocess
import sys
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


@pytest.fixture
def postgres_recipe(toolbox, registry, postgres_reference):
    """The built-in postgres recipe (docker.io/library/postgres), its Docker Hub repository
    mirrored to the test registry, where the image of tests/support/servers.py is tag 15."""
    for tag in ("15", "15-alpine"):  # the server's tag, and psql's (its recipe: {version}-alpine)
        push_raw(registry, "mirror/docker/library/postgres", tag, postgres_image())
    toolbox.trust(registry)
    with open(toolbox.layout.config_file, "a") as config:
        config.write(f'[registries."docker.io"]\nmirrors = ["http://{registry.host}/mirror/docker"]\n')
    yield
    for name in ("pg", "recipe-pg"):
        toolbox_command(toolbox, "rm", "-f", name)
    for volume in ("pg-data", "recipe-pg-data"):
        toolbox_command(toolbox, "volume", "rm", volume)


def test_the_postgres_recipe_runs_a_server_with_its_data_in_a_volume(toolbox, postgres_recipe):
    port = free_port()
    refused = toolbox_command(toolbox, "run", "-d", "--name", "pg", "-p", f"{port}:5432", "postgres@15")
    assert refused.returncode == 125 and "postgres@15 needs POSTGRES_PASSWORD" in refused.stderr
    assert toolbox_command(toolbox, "ps", "-a").stdout.count("\n") == 1  # no container made for it
    started = toolbox_command(toolbox, "run", "-d", "--name", "pg", "-e", "POSTGRES_PASSWORD=foobarbaz", "-p",
                              f"{port}:5432", "postgres@15")
    assert started.returncode == 0, started.stderr
    assert f"connect: postgresql://postgres:foobarbaz@127.0.0.1:{port}/postgres" in started.stderr
    assert listed(toolbox, "pg")["volumes"] == ["pg-data:/var/lib/postgresql/data"]
    wait_for(lambda: is_ready(port), timeout=120)
    assert psql(port, "create table t (x int); insert into t values (7)").returncode == 0
    assert toolbox_command(toolbox, "rm", "-f", "pg").returncode == 0
    again = toolbox_command(toolbox, "run", "-d", "--name", "pg", "-e", "POSTGRES_PASSWORD=foobarbaz", "-p",
                            f"{port}:5432", "postgres@15")
    assert again.returncode == 0, again.stderr
    wait_for(lambda: is_ready(port), timeout=120)
    assert psql(port, "select x from t").stdout == "7\n"  # the volume outlived the container


def test_a_project_service_of_the_postgres_recipe_is_ready_when_up_returns(toolbox, postgres_recipe,
                                                                            tmp_path):
    project = tmp_path / "app"
    project.mkdir()
    port = free_port()
    (project / "toolbox.toml").write_text(f'[services.db]\ntool = "postgres@15"\nports = ["{port}:5432"]\n'
                                          'env = { POSTGRES_PASSWORD = "dev" }\n')
    env = {"TOOLBOX_TRUSTED_PROJECTS": str(project)}
    up = subprocess.run([sys.executable, "-m", "toolbox", "up"], cwd=project, env=dict(toolbox.env, **env),
                        capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    assert f"  connect: postgresql://postgres:dev@127.0.0.1:{port}/postgres" in up.stdout
    assert "connect:" not in up.stderr  # said once
    assert psql(port, "select 1", password="dev").stdout == "1\n"  # ready: no waiting here
    # the psql recipe, a client of postgres, reaches the project's service by itself
    def run_psql(**more):
        return subprocess.run([sys.executable, "-m", "toolbox", "run", "psql@15", "-Atc", "select 6*7"],
                              cwd=project, env=dict(toolbox.env, PGPASSWORD="dev", **more),
                              capture_output=True, text=True, timeout=120)

    client = run_psql(**env)
    assert client.returncode == 0 and client.stdout == "42\n", client.stderr
    assert run_psql().returncode != 0  # the service not trusted (no TOOLBOX_TRUSTED_PROJECTS): not followed
    container = up.stdout.split("(")[1].split(")")[0]
    down = subprocess.run([sys.executable, "-m", "toolbox", "down", "--volumes"], cwd=project,
                          env=dict(toolbox.env, **env), capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not os.path.exists(os.path.dirname(toolbox.layout.volume_data(f"{container}-data")))
