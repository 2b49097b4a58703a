"""A project's services (toolbox.toml [services.NAME]): `toolbox up`, `down`, `status`, with
trust as for project recipes, names scoped to the checkout, a changed definition made anew."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.runtime.test_forward import free_port
from tests.runtime.test_services import echoes, wait_for

pytestmark = pytest.mark.needs_userns_overlay


def toolbox_in(toolbox, directory, *args, env=None):
    return subprocess.run([sys.executable, "-m", "toolbox", *args], env=dict(toolbox.env, **(env or {})),
                          cwd=directory, capture_output=True, text=True, timeout=120)


def project_file(busybox, port, greeting="hi"):
    return f"""
[tools]

[services.echo]
image = "{busybox}"
entrypoint = ["busybox", "nc"]
command = ["-ll", "-p", "7000", "-e", "/bin/cat"]
ports = ["{port}:7000"]
env = {{ GREETING = "{greeting}" }}
volumes = ["data:/data"]
"""


@pytest.fixture
def project(tmp_path, busybox):
    directory = tmp_path / "shop"
    directory.mkdir()
    port = free_port()
    (directory / "toolbox.toml").write_text(project_file(busybox, port))
    return directory, port


def test_up_status_down_with_trust_and_scoped_names(toolbox, busybox, project, tmp_path):
    directory, port = project
    refused = toolbox_in(toolbox, directory, "up")
    assert refused.returncode == 125 and "defines services not trusted yet" in refused.stderr
    assert "publish port" in refused.stderr and "volume data at /data" in refused.stderr
    assert not os.path.isdir(toolbox.layout.containers_dir) or os.listdir(toolbox.layout.containers_dir) == []
    trusted = toolbox_in(toolbox, directory, "trust")
    assert trusted.returncode == 0 and "service echo" in trusted.stdout, trusted.stderr
    started = toolbox_in(toolbox, directory, "up")
    assert started.returncode == 0, started.stderr
    line = started.stdout.strip()
    assert line.startswith("echo: started (shop-") and line.endswith(f"-echo)  127.0.0.1:{port}->7000/tcp")
    assert echoes(port)  # `up` returned once the port took connections
    container = line.split("(")[1].split(")")[0]
    assert toolbox_in(toolbox, directory, "exec", container, "sh", "-c",
                      'echo "$GREETING" > /data/kept').returncode == 0
    listed = json.loads(toolbox_in(toolbox, directory, "status", "--json").stdout)
    assert [(s["service"], s["name"], s["status"]) for s in listed] == [("echo", container, "running")]
    assert toolbox_in(toolbox, directory, "up").stdout.strip().startswith("echo: already running")
    # another checkout of the same project: its own names (and its own trust)
    other = tmp_path / "other-checkout" / "shop"
    shutil.copytree(directory, other)
    (other / "toolbox.toml").write_text(project_file(busybox, free_port()))
    theirs = json.loads(toolbox_in(toolbox, other, "status", "--json",
                                   env={"TOOLBOX_TRUSTED_PROJECTS": str(other)}).stdout)
    assert theirs[0]["name"] != container and theirs[0]["status"] == "not created"
    # a changed definition asks for trust again, then is made anew; its volume stays
    (directory / "toolbox.toml").write_text(project_file(busybox, port, greeting="hello"))
    changed = toolbox_in(toolbox, directory, "up")
    assert changed.returncode == 125 and "changed since you trusted them" in changed.stderr
    assert "+ variable GREETING=hello" in changed.stderr and "- variable GREETING=hi" in changed.stderr
    assert toolbox_in(toolbox, directory, "trust").returncode == 0
    remade = toolbox_in(toolbox, directory, "up")
    assert remade.returncode == 0 and remade.stdout.startswith("echo: made anew"), remade.stderr
    assert toolbox_in(toolbox, directory, "exec", container, "cat", "/data/kept").stdout == "hi\n"
    greeting = toolbox_in(toolbox, directory, "exec", container, "sh", "-c", 'echo "$GREETING"')
    assert greeting.stdout == "hello\n"
    # down: gone, the volume kept; down --volumes: the volume too
    down = toolbox_in(toolbox, directory, "down")
    assert down.returncode == 0 and down.stdout.strip() == f"echo: removed ({container})"
    assert not echoes(port)
    volume = container.rsplit("-", 1)[0] + "-data"
    assert os.path.isdir(toolbox.layout.volume_data(volume))
    assert toolbox_in(toolbox, directory, "up").returncode == 0
    assert toolbox_in(toolbox, directory, "exec", container, "cat", "/data/kept").stdout == "hi\n"
    assert toolbox_in(toolbox, directory, "down", "--volumes").returncode == 0
    assert not os.path.exists(os.path.dirname(toolbox.layout.volume_data(volume)))


def test_service_definitions_are_checked(toolbox, busybox, tmp_path):
    directory = tmp_path / "bad"
    directory.mkdir()
    cases = [
        ('[services.db]\nimage = "x:1"\nports = ["5432"]\n', "port '5432'"),
        ('[services.db]\nimage = "x:1"\nvolumes = ["/etc:/etc"]\n', "must be NAME:/path inside"),
        ('[services.db]\nimage = "x:1"\nrestart = "always"\n', "unknown key 'restart'"),
        ('[services.db]\ntool = "Postgres 16"\n', "must be a recipe's name, maybe @VERSION"),
        ('[services.db]\ntool = "postgres@16"\nimage = "x:1"\n', "give either 'tool'"),
        ('[services.db]\ntool = "postgress@16"\n', "postgres"),  # unknown: close names suggested
        ('[tools]\n', "defines no services"),
    ]
    for text, said in cases:
        (directory / "toolbox.toml").write_text(text)
        result = toolbox_in(toolbox, directory, "up", env={"TOOLBOX_TRUSTED_PROJECTS": str(directory)})
        assert result.returncode == 125 and said in result.stderr, (text, result.stderr)
        assert (str(directory / "toolbox.toml") in result.stderr or "no services" in result.stderr
                or "postgress" in result.stderr)
    (directory / "toolbox.toml").write_text(f'[services.db]\nimage = "{busybox}"\n')
    missing = toolbox_in(toolbox, directory, "up", "web", env={"TOOLBOX_TRUSTED_PROJECTS": str(directory)})
    assert missing.returncode == 125 and "defines no service 'web'" in missing.stderr
    assert "its services: db" in missing.stderr


def test_a_service_that_ends_at_once_is_an_error_with_its_last_lines(toolbox, busybox, tmp_path):
    directory = tmp_path / "dies"
    directory.mkdir()
    (directory / "toolbox.toml").write_text(
        f'[services.once]\nimage = "{busybox}"\nentrypoint = ["sh", "-c", "echo bad config >&2; exit 3"]\n'
        f'ports = ["{free_port()}:80"]\n')
    result = toolbox_in(toolbox, directory, "up", env={"TOOLBOX_TRUSTED_PROJECTS": str(directory)})
    assert result.returncode == 125 and "ended: exited (3)" in result.stderr and "bad config" in result.stderr
    wait_for(lambda: toolbox_in(toolbox, directory, "down").returncode == 0)
