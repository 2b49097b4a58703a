"""`toolbox run` as an ordinary user: a real user + mount namespace, overlayfs over the stored
layer trees, exec in place."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from toolbox.runtime import _sys_build

from tests.support.host import fuse_usable, lacks_host_feature, run_on_a_small_store
from tests.support.rootfs_modes import rootfs_mode_params


def run(toolbox, *args, input=None, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "toolbox", "run", *args],
        env=dict(toolbox.env, **(env or {})),
        input=input,
        capture_output=True,
        cwd=cwd or toolbox.root,
        timeout=60,
    )


@pytest.mark.needs_userns_overlay
def test_pipes_and_arguments(toolbox, busybox):
    result = run(toolbox, busybox, "cat", input=b'{"a":1}\n')
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"a":1}\n'
    result = run(toolbox, busybox, "sh", "-c", 'printf "%s|" "$@"', "sh", "two words", "", "-x", "*")
    assert result.stdout == b"two words||-x|*|"


@pytest.mark.needs_userns_overlay
def test_exit_codes(toolbox, busybox, tmp_path):
    assert run(toolbox, busybox, "true").returncode == 0
    assert run(toolbox, busybox, "sh", "-c", "exit 3").returncode == 3
    missing = run(toolbox, busybox, "no-such-command")
    assert missing.returncode == 127 and b"command not found in the image" in missing.stderr
    not_executable = run(toolbox, busybox, "/etc/passwd")
    assert not_executable.returncode == 126, not_executable.stderr
    not_stored = run(toolbox, "--pull", "never", "127.0.0.1:1/not-pulled:1", "true")
    assert (not_stored.returncode == 125 and b"not in the store" in not_stored.stderr
            and b"toolbox pull" in not_stored.stderr)
    # --pull missing tries, and says why it failed
    unreachable = run(toolbox, "127.0.0.1:1/not-pulled:1", "true")
    assert (unreachable.returncode == 125 and b"127.0.0.1:1" in unreachable.stderr
            and b"Traceback" not in unreachable.stderr)
    bad_option = run(toolbox, "--bogus", busybox)
    assert bad_option.returncode == 125 and b"unknown option --bogus" in bad_option.stderr
    # A command found on PATH but not executable is 126, as in a shell, not 127.
    on_path = run(toolbox, busybox, "sh", "-c",
                  "mkdir -p /x && cp /etc/passwd /x/tool && PATH=/x:/bin exec tool")
    assert on_path.returncode in (126,), on_path.stderr
    # A working directory the image lacks is created, as docker does; one the user may not enter is an error.
    assert run(toolbox, "--no-cwd", "-w", "/made/for/me", busybox, "pwd").stdout == b"/made/for/me\n"
    assert run(toolbox, "--no-cwd", "--read-only", "-w", "/made/too", busybox, "pwd").stdout == b"/made/too\n"
    # fails after pivot_root, where no hint can load
    refused = run(toolbox, "--no-cwd", "-w", "/etc/passwd", busybox, "pwd")
    assert (refused.returncode == 125 and b"chdir /etc/passwd: Not a directory" in refused.stderr
            and b"Traceback" not in refused.stderr)
    # Killed by a signal: the shell that started it sees 128 + the signal, as for any program.
    shell = subprocess.run(
        ["sh", "-c", f'"$0" -m toolbox run {busybox} sh -c "kill -TERM \\$\\$"; echo $?', sys.executable],
        env=toolbox.env, capture_output=True, cwd=toolbox.root, timeout=60,
    )
    assert shell.stdout.strip() == b"143", shell.stderr


@pytest.mark.needs_userns_overlay
def test_the_console_script_runs_commands_found_on_the_image_path(toolbox, busybox):
    # The installed `toolbox` starts without runpy, so nothing has imported `warnings`, which
    # os.execvpe imports after pivot_root, where the host's Python library is gone.
    # On the hot path (the run plan made by an earlier run) nothing else needs it: blocked here.
    assert run(toolbox, busybox, "true").returncode == 0
    # None: cannot be imported
    script = "import sys; sys.modules['warnings'] = None; from toolbox.entry import main; sys.exit(main())"
    result = subprocess.run([sys.executable, "-c", script, "run", busybox, "sh", "-c", "echo found"],
                            env=toolbox.env, capture_output=True, cwd=toolbox.root, timeout=60)
    assert (result.returncode, result.stdout) == (0, b"found\n"), result.stderr
    missing = subprocess.run([sys.executable, "-c", script, "run", busybox, "no-such-command"],
                             env=toolbox.env, capture_output=True, cwd=toolbox.root, timeout=60)
    assert missing.returncode == 127 and b"Traceback" not in missing.stderr, missing.stderr


@pytest.mark.needs_userns_overlay
def test_files_written_to_the_cwd_belong_to_the_user(toolbox, busybox, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "input.txt").write_text("from the host\n")
    result = run(toolbox, busybox, "sh", "-c",
                 "cat input.txt > output.txt && pwd && id -u && whoami && echo $HOME", cwd=project)
    assert result.returncode == 0, result.stderr
    pwd, uid, name, home = result.stdout.decode().split()
    assert pwd == str(project) and uid == str(os.getuid())
    assert home.startswith("/home/")
    assert (project / "output.txt").read_text() == "from the host\n"
    assert (project / "output.txt").stat().st_uid == os.getuid()


@pytest.mark.needs_userns_overlay
def test_the_scratch_layer_vanishes_and_the_store_is_untouched(toolbox, busybox, tmp_path):
    assert run(toolbox, busybox, "sh", "-c", "echo scratch > /etc/new && rm /bin/sh.bak 2>/dev/null; rm -f "
                                             "/bin/busybox.x; echo x > /tmp/t").returncode == 0
    assert run(toolbox, busybox, "cat", "/etc/new").returncode == 1
    assert os.listdir(toolbox.layout.scratch_mountpoint) == []
    assert toolbox.leftovers() == []
    read_only = run(toolbox, "--read-only", busybox, "touch", "/etc/nope")
    assert read_only.returncode != 0 and b"Read-only file system" in read_only.stderr


@pytest.mark.needs_userns_overlay
def test_image_env_entrypoint_and_options(toolbox, busybox, tmp_path):
    env = run(toolbox, "-e", "GREETING=hi", "-e", "FROM_HOST", busybox, "env",
              env={"FROM_HOST": "passed", "TERM": "xterm-test"})
    lines = set(env.stdout.decode().splitlines())
    assert {"GREETING=hi", "FROM_HOST=passed", "TERM=xterm-test"} <= lines
    assert any(line.startswith("PATH=") for line in lines)
    workdir = run(toolbox, "--no-cwd", "-w", "/tmp", busybox, "pwd")
    assert workdir.stdout == b"/tmp\n"
    entrypoint = run(toolbox, "--entrypoint", "echo", busybox, "via", "entrypoint")
    assert entrypoint.stdout == b"via entrypoint\n"


@pytest.mark.needs_userns_overlay
def test_sigterm_to_the_toolbox_pid_reaches_the_tool(toolbox, busybox):
    process = subprocess.Popen(
        [sys.executable, "-m", "toolbox", "run", busybox, "sh", "-c",
         "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done"],
        env=toolbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=toolbox.root,
    )
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGTERM)  # the pid we started is the tool itself: exec in place
    out, err = process.communicate(timeout=30)
    assert process.returncode == 7, err
    assert out == b"got TERM\n"


@pytest.mark.needs_userns_overlay
def test_a_new_pull_of_the_tag_refreshes_the_plan(toolbox, registry, pushed_images, busybox):
    from tests.support.push import push_raw

    assert run(toolbox, busybox, "cat", "/a.txt").returncode == 1
    push_raw(registry, "busybox", "replaced", pushed_images["shared_a"].built)
    reference = busybox.rsplit(":", 1)[0] + ":replaced"
    toolbox.pull(reference)
    assert run(toolbox, reference, "cat", "/a.txt").stdout == b"image A\n"


def test_the_generated_syscall_module_is_current(tmp_path):
    generated = tmp_path / "_sys.py"
    _sys_build.builder().emit_python_code(str(generated))
    committed = os.path.join(os.path.dirname(_sys_build.__file__), "_sys.py")
    assert generated.read_text() == open(committed).read(), "run `python -m toolbox._sys_build`"


def test_usage_errors_without_a_namespace(toolbox):
    result = run(toolbox)
    assert result.returncode == 125 and b"no image given" in result.stderr
    assert run(toolbox, "--help").returncode == 0


@pytest.mark.parametrize("mode", rootfs_mode_params())
def test_image_symlinks_cannot_redirect_setup_to_host_files(toolbox, registry, tmp_path, mode):
    """/etc and /home as absolute symlinks to a host directory: the runtime prepares the root
    before pivot_root, and must resolve them inside the image, not on the host, whichever
    root filesystem mode it uses."""
    from tests.support import images
    from tests.support.push import push_raw

    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "passwd").write_text("host file\n")
    entries = [e for e in images.busybox_entries() if e.path.split("/")[0] not in ("etc", "home")]
    entries += [images.symlink("etc", str(canary)), images.symlink("home", str(canary))]
    built = images.build_image(images.ImageSpec(layers=(images.Layer(tuple(entries)),)))
    push_raw(registry, "hostile/symlinked-dirs", "1", built)
    toolbox.trust(registry)
    reference = f"{registry.host}/hostile/symlinked-dirs:1"
    toolbox.pull(reference)
    project = tmp_path / "project"
    project.mkdir()
    result = run(toolbox, reference, "sh", "-c", "pwd; cat /etc/passwd", cwd=project,
                 env={"TOOLBOX_ROOTFS": mode})
    assert result.returncode == 0, result.stderr
    assert str(project).encode() in result.stdout  # the user's entry went to the image's own /etc
    assert [p.name for p in canary.iterdir()] == ["passwd"]
    assert (canary / "passwd").read_text() == "host file\n"


@pytest.mark.needs_userns_overlay
def test_named_volume_is_kept_between_runs(toolbox, busybox):
    assert run(toolbox, "-v", "cache:/data", busybox, "sh", "-c", "echo kept > /data/f").returncode == 0
    again = run(toolbox, "--volume", "cache:/data:ro", busybox, "sh", "-c", "cat /data/f; echo x > /data/g")
    assert again.stdout == b"kept\n" and b"Read-only file system" in again.stderr
    listed = toolbox.cli("volume", "ls", "--json")
    (volume,) = json.loads(listed.stdout)
    assert volume["name"] == "cache" and open(os.path.join(volume["path"], "f")).read() == "kept\n"
    assert toolbox.cli("volume", "rm", "cache").returncode == 0
    assert run(toolbox, "-v", "cache:/data", busybox, "cat", "/data/f").returncode == 1  # a new, empty volume
    assert toolbox.cli("volume", "rm", "cache").returncode == 0
    missing = toolbox.cli("volume", "rm", "cache")
    assert missing.returncode == 125 and "no volume named 'cache'" in missing.stderr


@pytest.mark.needs_userns_overlay
def test_host_binds_and_tmpfs(toolbox, busybox, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("host data\n")
    result = run(toolbox, "--no-cwd", "-v", f"{shared}:/mnt/shared", "-v", f"{shared}:/mnt/ro:ro", "--tmpfs",
                 "/scratch", busybox, "sh", "-c",
                 "cat /mnt/shared/in.txt && echo out > /mnt/shared/out.txt && ! touch /mnt/ro/x 2>/dev/null "
                 "&& touch /scratch/t && echo ok")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"host data\nok\n"
    assert (shared / "out.txt").read_text() == "out\n" and not (shared / "x").exists()
    relative = run(toolbox, "-v", "./missing:/m", busybox, "true", cwd=tmp_path)
    assert relative.returncode == 125 and b"does not exist" in relative.stderr
    for bad in ("nocolon", "a:relative", "a:/x:rw:extra", "bad/name:/x"):
        assert run(toolbox, "-v", bad, busybox, "true").returncode == 125, bad


@pytest.mark.needs_userns_overlay
def test_network_none_cannot_reach_a_local_server(toolbox, busybox):
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), type("Hello", (http.server.BaseHTTPRequestHandler,), {
        "do_GET": lambda self: (self.send_response(200), self.send_header("Content-Length", "6"),
                                self.end_headers(), self.wfile.write(b"hello\n")),
        "log_message": lambda self, *a: None,
    }))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        reached = run(toolbox, busybox, "busybox", "wget", "-q", "-O", "-", url)
        assert reached.returncode == 0 and reached.stdout == b"hello\n", reached.stderr
        isolated = run(toolbox, "--network", "none", busybox, "busybox", "wget", "-q", "-T", "3", "-O", "-",
                       url)
        assert isolated.returncode != 0 and isolated.stdout == b""
        loopback = run(toolbox, "--network", "none", busybox, "cat", "/sys/class/net/lo/operstate")
        assert loopback.returncode == 0
        assert run(toolbox, "--network", "bridge", busybox, "true").returncode == 125
    finally:
        server.shutdown()


@pytest.mark.needs_userns_overlay
def test_a_terminal_inside_when_run_under_a_pty(toolbox, busybox):
    import pty

    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "toolbox", "run", "-it", busybox, "sh", "-c",
         "test -t 0 && test -t 1 && busybox tty"],
        stdin=secondary, stdout=secondary, stderr=secondary, env=toolbox.env, cwd=toolbox.root,
        start_new_session=True,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 1024)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert process.wait(timeout=30) == 0, output
    assert output.strip().startswith(b"/dev/pts/"), output


@pytest.mark.needs_userns_overlay
@pytest.mark.parametrize("flags", [["--memory", "64m"], ["--cpus", "0.5"], ["--pids-limit", "50"]])
def test_limits_are_refused_without_delegation_never_dropped(toolbox, busybox, flags):
    from toolbox.runtime.cgroups import delegation_problem

    key = {"--memory": "memory", "--cpus": "cpus", "--pids-limit": "pids"}[flags[0]]
    if delegation_problem([key]) is None:  # the other side of the next test's host feature
        lacks_host_feature("a cgroup v2 without delegation: this host delegates, so the enforcement test "
                           "applies instead")
    result = run(toolbox, *flags, busybox, "echo", "must not run")
    assert result.returncode == 125
    assert b"must not run" not in result.stdout
    assert (b"cannot apply " + flags[0].encode() in result.stderr and b"hint:" in result.stderr
            and b"cgroup v2" in result.stderr)


@pytest.mark.needs_userns_overlay
@pytest.mark.needs_cgroup2("pids", "memory")
def test_limits_are_enforced_with_delegation(toolbox, busybox):
    result = run(toolbox, "--pids-limit", "20", "--memory", "64m", busybox, "sh", "-c",
                 "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max 2>/dev/null || cat /proc/self/cgroup")
    assert result.returncode == 0, result.stderr
    assert b"20" in result.stdout


def test_limit_values_are_checked():
    from toolbox.errors import LimitError
    from toolbox.runtime.cgroups import parse_cpus, parse_memory, parse_pids

    assert (parse_memory("512m") == 512 * 1024**2 and parse_memory("2G") == 2 * 1024**3
            and parse_memory("1gb") == 1024**3)
    assert parse_cpus("1.5") == "150000 100000" and parse_pids("100") == 100
    for parse, bad in ((parse_memory, "lots"), (parse_memory, "1"), (parse_cpus, "0"), (parse_cpus, "x"),
                       (parse_pids, "-1")):
        with pytest.raises(LimitError):
            parse(bad)


@pytest.mark.needs_userns_overlay
def test_pull_policies_and_platform(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    image = pushed_images["busybox"].reference
    first = run(toolbox, image, "echo", "pulled on first use")
    assert first.returncode == 0, first.stderr
    assert first.stdout == b"pulled on first use\n"  # progress goes to stderr, never into the tool's output
    assert b"Pulling" in first.stderr
    again = run(toolbox, image, "true")
    assert again.returncode == 0 and b"Pulling" not in again.stderr
    always = run(toolbox, "--pull=always", image, "true")
    assert always.returncode == 0 and b"Pulling" in always.stderr
    assert run(toolbox, "--pull", "sometimes", image, "true").returncode == 125
    other = run(toolbox, "--pull", "never", "--platform", "linux/s390x", image, "true")
    assert other.returncode == 125 and b"not stored for linux/s390x" in other.stderr
    assert run(toolbox, "--platform", "linux/amd64" if os.uname().machine == "x86_64" else "linux/arm64",
               image, "true").returncode == 0


@pytest.mark.needs_userns_overlay
def test_argument_paths_outside_the_cwd_are_mounted(toolbox, busybox, tmp_path):
    project = tmp_path / "work" / "project"
    project.mkdir(parents=True)
    sibling = tmp_path / "work" / "data"
    sibling.mkdir()
    (sibling / "in.json").write_text('{"a": 1}\n')
    (sibling / "not-named.txt").write_text("sibling\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A relative path through .., an absolute directory, an output file that does not exist
    # yet, and an --option=VALUE form.
    script = 'cat "$1" && ls "$2" && echo made > "$3" && echo "$4"'
    result = run(toolbox, busybox, "sh", "-c", script, "sh", "../data/in.json", str(elsewhere),
                 str(elsewhere / "out.txt"), f"--output={sibling}/opt.txt", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith('{"a": 1}\n')
    assert (elsewhere / "out.txt").read_text() == "made\n"
    assert (elsewhere / "out.txt").stat().st_uid == os.getuid()
    # A file is reached through its directory (tools that rename a temp file beside it work).
    renamed = run(toolbox, busybox, "sh", "-c", 'echo new > "$1.tmp" && mv "$1.tmp" "$1"', "sh",
                  f"{sibling}/in.json", cwd=project)
    assert renamed.returncode == 0, renamed.stderr
    assert (sibling / "in.json").read_text() == "new\n"
    # Nothing beyond what the arguments name (a path in the environment is not mounted), and
    # the flag turns it off.
    unnamed = run(toolbox, "-e", f"DATA={sibling}", busybox, "sh", "-c", 'ls "$DATA"', cwd=project)
    assert unnamed.returncode != 0 and b"No such file" in unnamed.stderr
    off = run(toolbox, "--no-mount-args", busybox, "cat", "../data/in.json", cwd=project)
    assert off.returncode == 1 and b"No such file" in off.stderr


def test_which_argument_paths_are_mounted(tmp_path):
    from toolbox.hot.argpaths import argument_binds

    home = tmp_path / "home"
    (home / "proj").mkdir(parents=True)
    (home / "notes.txt").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")

    def mounted(*args, visible=(), relative_ok=True):
        binds = argument_binds(list(args), str(home / "proj"), str(home), list(visible), relative_ok)
        for judged in binds:  # the object judged, by device and inode
            assert judged.identity == (os.stat(judged.host).st_dev, os.stat(judged.host).st_ino)
        return [judged.inside for judged in binds]

    assert mounted("/", "/etc/passwd", "/usr/share/x", "/proc/self") == []  # the image's own areas
    assert mounted(str(home), str(tmp_path)) == []  # the home directory or above it
    assert mounted(str(home / "notes.txt")) == [str(home / "notes.txt")]  # alone: home is broad
    assert mounted(str(home / "missing.txt")) == []  # not creatable without exposing home
    assert mounted(str(tmp_path / "d" / "f"), str(tmp_path / "d" / "new")) == [str(tmp_path / "d")]
    assert mounted("../notes.txt", "sub/x", "plain.json", "-o", "--flag") == [str(home / "notes.txt")]
    assert mounted("../notes.txt", relative_ok=False) == []
    assert mounted(f"--out={tmp_path}/d/f") == [str(tmp_path / "d")]
    assert mounted("https://example.com/a/b", "s3://bucket/key") == []
    assert mounted(str(tmp_path / "d" / "f"), visible=[str(tmp_path)]) == []
    # no nested mounts
    assert mounted(str(tmp_path / "d"), str(tmp_path / "d" / "f")) == [str(tmp_path / "d")]
    assert mounted("/var/tmp/x-missing-dir/y") == []
    # Symlinks count by where they lead: a link to /, to the home directory or into /etc (say,
    # planted in a shared /tmp) never gets what it points at mounted.
    (tmp_path / "d" / "to-root").symlink_to("/")
    (tmp_path / "d" / "to-home").symlink_to(home)
    (tmp_path / "d" / "to-etc").symlink_to("/etc")
    for link in ("to-root", "to-home", "to-etc"):
        assert mounted(str(tmp_path / "d" / link / "x"), str(tmp_path / "d" / link)) == [], link
    (tmp_path / "d" / "to-d").symlink_to(tmp_path / "d")
    # an ordinary one still works
    assert mounted(str(tmp_path / "d" / "to-d" / "f")) == [str(tmp_path / "d" / "to-d")]
    # What the runtime mounts must still be the object judged: a link swapped in meanwhile is refused.
    from toolbox.runtime.mounts import bind

    swapped, = argument_binds([str(tmp_path / "d" / "to-d" / "f")], str(home / "proj"), str(home), [])
    (tmp_path / "d" / "to-d").unlink()
    (tmp_path / "d" / "to-d").symlink_to(home)
    with pytest.raises(OSError, match="changed since it was checked"):
        bind(str(tmp_path / "root"), swapped)


@pytest.mark.needs_userns_overlay
def test_a_named_container_keeps_its_writable_layer(toolbox, busybox):
    assert run(toolbox, "--name", "keep", busybox, "sh", "-c", "echo kept > /etc/state").returncode == 0
    assert run(toolbox, "--name", "keep", busybox, "cat", "/etc/state").stdout == b"kept\n"
    assert run(toolbox, busybox, "cat", "/etc/state").returncode == 1  # a plain run starts from the image
    listed = json.loads(toolbox.cli("ps", "-a", "--json").stdout)
    assert [(c["name"], c["running"]) for c in listed] == [("keep", False)] and listed[0]["size"] > 0
    # One run at a time: a second one is refused while the first runs.
    process = subprocess.Popen([sys.executable, "-m", "toolbox", "run", "--name", "keep", busybox, "sh", "-c",
                                "echo up; sleep 30"],
                               env=toolbox.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=toolbox.root)
    try:
        assert process.stdout.readline() == b"up\n"
        busy = run(toolbox, "--name", "keep", busybox, "true")
        assert busy.returncode == 125 and b"is running" in busy.stderr
        refused = toolbox.cli("rm", "keep")
        assert refused.returncode == 125 and "is running" in refused.stderr
        assert json.loads(toolbox.cli("ps", "--json").stdout)[0]["running"] is True
    finally:
        process.kill()
        process.wait()
    # Its layers survive a prune even when the image is gone; another image cannot take the name.
    assert toolbox.cli("rmi", busybox).returncode == 0
    assert toolbox.cli("prune").returncode == 0
    # the image itself is gone
    assert run(toolbox, "--pull", "never", "--name", "keep", busybox, "cat", "/etc/state").returncode == 125
    toolbox.pull(busybox)
    assert run(toolbox, "--name", "keep", busybox, "cat", "/etc/state").stdout == b"kept\n"
    assert toolbox.cli("rm", "keep").returncode == 0
    assert json.loads(toolbox.cli("ps", "-a", "--json").stdout) == []
    assert not os.path.exists(os.path.join(toolbox.layout.containers_dir, "keep"))
    assert run(toolbox, "--name", "keep", busybox, "cat", "/etc/state").returncode == 1  # fresh again
    assert toolbox.cli("rm", "keep", "missing").returncode == 125
    assert run(toolbox, "--name", "../x", busybox, "true").returncode == 125


@pytest.mark.needs_userns_overlay
def test_user_root_inside_is_the_user_outside(toolbox, busybox, tmp_path):
    result = run(toolbox, "--user", "root", busybox, "sh", "-c",
                 "id -u; id -g; whoami; echo $HOME; touch made-by-root", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b"0", b"0", b"root", b"/root"]
    assert (tmp_path / "made-by-root").stat().st_uid == os.getuid()
    numeric = run(toolbox, "-u", "1234:2345", busybox, "sh", "-c",
                  "id -u; id -g; echo $HOME; touch made-by-1234", cwd=tmp_path)
    assert numeric.stdout.split()[:2] == [b"1234", b"2345"], numeric.stderr
    assert (tmp_path / "made-by-1234").stat().st_uid == os.getuid()
    named = run(toolbox, "--user", "nobody", busybox, "id", "-un")
    assert named.returncode == 0 and named.stdout == b"nobody\n", named.stderr
    unknown = run(toolbox, "--user", "no-such-user", busybox, "true")
    assert unknown.returncode == 125 and b"no user named" in unknown.stderr


@pytest.mark.needs_userns_overlay
def test_env_file(toolbox, busybox, tmp_path):
    env_file = tmp_path / "vars.env"
    env_file.write_text("# a comment\n\nFROM_FILE=file value\nOVERRIDDEN=file\nPASSED\n")
    result = run(toolbox, "--env-file", str(env_file), "-e", "OVERRIDDEN=flag", busybox, "env",
                 env={"PASSED": "from host"})
    lines = set(result.stdout.decode().splitlines())
    assert {"FROM_FILE=file value", "OVERRIDDEN=flag", "PASSED=from host"} <= lines, result.stderr
    missing = run(toolbox, "--env-file", str(tmp_path / "missing.env"), busybox, "true")
    assert missing.returncode == 125 and b"--env-file" in missing.stderr


ROOTFS_CHECK = ("id -un; echo scratch > /tmp/t && cat /tmp/t; echo home > ~/h && cat ~/h; "
                "touch made-here; touch /etc/x 2>&1; exit 0")


@pytest.mark.needs_userns_overlay
def test_read_only_root_mode_without_overlayfs(toolbox, busybox, tmp_path):
    # What a kernel without unprivileged overlayfs gets: the image flattened once, read-only.
    env = {"TOOLBOX_ROOTFS": "read-only"}
    result = run(toolbox, busybox, "sh", "-c", ROOTFS_CHECK, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[1:3] == ["scratch", "home"] and "Read-only file system" in lines[3], lines
    assert (tmp_path / "made-here").stat().st_uid == os.getuid()
    assert run(toolbox, "--user", "root", busybox, "whoami", env=env).stdout == b"root\n"
    # The user's /etc/passwd entry was bound over a copy, never written into the layer trees.
    passwd_files = [os.path.join(root, "passwd") for root, _,
                    files in os.walk(toolbox.layout.layers_dir) if "passwd" in files]
    assert passwd_files
    for path in passwd_files:
        assert ":x:%d:" % os.getuid() not in open(path).read()
    refused = run(toolbox, "--name", "kept", busybox, "true", env=env)
    assert refused.returncode == 125 and b"--name needs a writable layer" in refused.stderr
    assert os.listdir(toolbox.layout.flat_dir) and toolbox.leftovers() == []
    assert toolbox.cli("rm", "kept").returncode == 0  # made before the refusal, as docker does
    assert toolbox.cli("rmi", busybox).returncode == 0 and toolbox.cli("prune").returncode == 0
    assert os.listdir(toolbox.layout.flat_dir) == []  # prune removes flattened images whose layers are gone
    assert run(toolbox, busybox, "true", env={"TOOLBOX_ROOTFS": "sideways"}).returncode == 125


@pytest.mark.needs_userns_overlay
def test_a_flattening_that_fails_leaves_nothing_half_made(toolbox, registry, tmp_path):
    """Read-only mode flattens the image into the store the first time; here the store is a
    tmpfs (mounted in a user namespace of the test's own) with too few inodes left for it, so
    the flattening fails midway. The run says why, and the half-made tree goes (a killed one
    waits for `toolbox prune`); once there is room the run works."""
    from tests.support import images
    from tests.support.push import push_raw

    toolbox.trust(registry)
    many = images.Layer(tuple(images.file(f"many/{i}/f", f"{i}\n") for i in range(200)))
    built = images.build_image(images.busybox_spec(layers=(images.busybox_layer(), many),
                                                   labels={"org.example.scenario": "flat-enospc"}))
    push_raw(registry, "flat-enospc", "1", built)
    reference = f"{registry.host}/flat-enospc:1"
    cache, flat, outside = toolbox.layout.cache_dir, toolbox.layout.flat_dir, tmp_path
    os.makedirs(cache, exist_ok=True)
    toolbox_cmd = f"{sys.executable} -m toolbox"
    # Files until the inodes run out, then 40 given back: enough for the run plan, not for the
    # 200-odd directories and 30 symlinks of the flattened image.
    fill = (f"{sys.executable} -c 'import os\nos.mkdir(\"{cache}/ballast\")\ni = 0\n"
            f"while True:\n try: open(f\"{cache}/ballast/{{i}}\", \"w\").close()\n except OSError: break\n i "
            "+= 1\n"
            f"for j in range(40): os.unlink(f\"{cache}/ballast/{{j}}\")'")
    script = (f"{toolbox_cmd} pull --quiet {reference}; echo pulled=$?\n"
              f"{fill}\n"
              f"TOOLBOX_ROOTFS=read-only {toolbox_cmd} run {reference} cat /many/7/f; echo first=$?\n"
              f"ls -A {flat} > {outside}/flat.txt\n"
              f"rm -r {cache}/ballast\n"
              f"TOOLBOX_ROOTFS=read-only {toolbox_cmd} run {reference} cat /many/7/f; echo second=$?\n"
              f"ls -A {flat} > {outside}/flat-after.txt\n")
    result = run_on_a_small_store(toolbox, script, "size=64m,nr_inodes=2000")
    assert ("pulled=0" in result.stdout and "first=125" in result.stdout
            and "7\nsecond=0" in result.stdout), (result.stdout, result.stderr)
    assert "assemble the root filesystem (read-only): No space left on device" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert (outside / "flat.txt").read_text() == ""  # no KEY.tmp-PID left behind
    assert (len((outside / "flat-after.txt").read_text().split()) == 1
            and ".tmp-" not in (outside / "flat-after.txt").read_text())


@pytest.mark.needs_userns_overlay
def test_prune_never_deletes_the_layers_of_a_running_tool(toolbox, registry, tmp_path):
    from tests.support import images
    from tests.support.push import push_raw

    toolbox.trust(registry)
    built = images.build_image(images.busybox_spec(labels={"org.example.scenario": "in-use"}))
    reference = f"{registry.host}/in-use/{tmp_path.name}:1"
    push_raw(registry, reference.split("/", 1)[1].rsplit(":", 1)[0], "1", built)
    toolbox.pull(reference)
    tool = subprocess.Popen([sys.executable, "-m", "toolbox", "run", reference, "sh", "-c",
                             "read line; cat /etc/group"],
                            env=toolbox.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=toolbox.root)
    try:
        deadline = time.monotonic() + 30
        # its in-use record
        while not (os.path.isdir(toolbox.layout.runs_dir) and os.listdir(toolbox.layout.runs_dir)):
            assert time.monotonic() < deadline and tool.poll() is None, tool.stderr.read()
            time.sleep(0.02)
        time.sleep(0.2)  # exec'd by now
        layers = toolbox.layer_dirs()
        assert toolbox.cli("rmi", reference).returncode == 0
        assert toolbox.cli("prune").returncode == 0
        assert toolbox.layer_dirs() == layers  # kept: the running tool stands on them
        out, err = tool.communicate(b"go\n", timeout=30)
        assert tool.returncode == 0 and out.startswith(b"root:x:0:"), err
    finally:
        if tool.poll() is None:
            tool.kill()
    assert toolbox.cli("prune").returncode == 0
    # the finished run's record went too
    assert toolbox.layer_dirs() == [] and os.listdir(toolbox.layout.runs_dir) == []


def _inject_into_own_terminal(filtered):
    """In a child with a pty as its controlling terminal: whether ioctl(TIOCSTI) pushed a byte
    into it (what a hostile tool would do to the user's shell)."""
    import fcntl
    import pty
    import termios

    from toolbox.runtime import syscalls as sc

    master, slave = pty.openpty()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            if filtered:
                sc.set_no_new_privs()
                sc.block_terminal_injection()
            fcntl.ioctl(slave, termios.TIOCGWINSZ, b"\0" * 8)  # other ioctls still work
            try:
                fcntl.ioctl(slave, termios.TIOCSTI, b"!")
                code = 0
            except PermissionError:
                code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    os.close(master)
    os.close(slave)
    return {0: True, 3: False}[os.waitstatus_to_exitcode(status)]


def test_the_seccomp_filter_refuses_terminal_injection():
    assert (_inject_into_own_terminal(filtered=False)
            or open("/proc/sys/dev/tty/legacy_tiocsti").read().strip() == "0")
    assert not _inject_into_own_terminal(filtered=True)


@pytest.mark.needs_userns_overlay
def test_the_tool_runs_filtered_and_without_new_privileges(toolbox, busybox):
    status = run(toolbox, busybox, "cat", "/proc/self/status").stdout.decode()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2", status


FUSE = {"TOOLBOX_ROOTFS": "fuse-overlayfs"}


def _fuse_servers(toolbox):
    """fuse-overlayfs processes serving this toolbox's scratch mount point."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                argv = file.read().split(b"\0")
        except OSError:
            continue
        if (argv[0] == b"fuse-overlayfs"
            and any(toolbox.layout.scratch_mountpoint.encode() in arg for arg in argv)):
            found.append(int(pid))
    return found


def _wait_until_gone(toolbox, seconds=15):
    """The fuse-overlayfs servers still there after `seconds`, each with its state and parent
    (for the failure message), or []."""
    deadline = time.monotonic() + seconds
    while _fuse_servers(toolbox) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = []
    for pid in _fuse_servers(toolbox):
        try:
            with open(f"/proc/{pid}/status") as status:
                left.append((pid, [line.strip() for line in status if line.startswith(("State:", "PPid:",
                                                                                       "SigCgt:",
                                                                                       "SigBlk:"))]))
        except OSError:
            continue
    return left


@pytest.mark.needs_userns_overlay
@pytest.mark.needs_fuse
def test_fuse_overlayfs_root_mode(toolbox, busybox, tmp_path):
    # What a kernel without unprivileged overlayfs gets where /dev/fuse is usable: a writable layer.
    script = ("grep -c ' / / .* - fuse.fuse-overlayfs ' /proc/self/mountinfo; "
              "echo written > /etc/x && cat /etc/x; rm /bin/true; touch made-here")
    result = run(toolbox, busybox, "sh", "-c", script, cwd=tmp_path, env=FUSE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[:2] == ["1", "written"], result.stdout
    assert (tmp_path / "made-here").stat().st_uid == os.getuid()
    # the scratch layer went with the run
    assert run(toolbox, busybox, "cat", "/etc/x", env=FUSE).returncode == 1
    assert run(toolbox, busybox, "ls", "/bin/true", env=FUSE).returncode == 0
    piped = run(toolbox, busybox, "sh", "-c", "cat; exit 3", input=b"through\n", env=FUSE)
    assert (piped.returncode, piped.stdout) == (3, b"through\n")
    refused = run(toolbox, "--read-only", busybox, "touch", "/etc/y", env=FUSE)
    assert refused.returncode == 1 and b"Read-only file system" in refused.stderr
    assert _wait_until_gone(toolbox) == []  # each server ended with its tool
    assert toolbox.leftovers() == []


@pytest.mark.needs_userns_overlay
@pytest.mark.needs_fuse
def test_fuse_overlayfs_shows_whiteouts_and_keeps_named_layers(toolbox, registry, pushed_images):
    toolbox.trust(registry)
    image = pushed_images["whiteout"].reference
    toolbox.pull(image)
    seen = run(toolbox, image, "sh", "-c", "ls /a /d", env=FUSE)
    assert seen.returncode == 0 and seen.stdout.split() == [b"/a:", b"y", b"/d:", b"new"], seen
    first = run(toolbox, "--name", "fused", image, "sh", "-c", "echo kept > /a/z && rm /a/y && rm -r /d",
                env=FUSE)
    assert first.returncode == 0, first.stderr
    # A layer fuse-overlayfs wrote stays with fuse-overlayfs, whatever the run asks for.
    again = run(toolbox, "--name", "fused", image, "sh", "-c",
                "ls /a; ls -d /d; grep -c ' / / .* - fuse.fuse-overlayfs ' /proc/self/mountinfo")
    assert again.stdout.split() == [b"z", b"1"] and b"No such file" in again.stderr, again
    assert toolbox.cli("rm", "fused").returncode == 0
    assert _wait_until_gone(toolbox) == []


@pytest.mark.needs_userns_overlay
@pytest.mark.needs_fuse
def test_the_fuse_server_ends_with_the_tool_whatever_the_caller_ignores_or_blocks(toolbox, busybox):
    """The server starts with its caller's signal dispositions and mask (tests/runtime/
    test_signals.py); the signal that ends it with the tool must get through all the same."""
    boxed = shlex.join([sys.executable, "-m", "toolbox", "run", busybox, "true"])
    callers = {
        "trap '' TERM HUP INT": ["bash", "-c", f"trap '' TERM HUP INT; {boxed}; :"],
        "TERM blocked": [sys.executable, "-c", "import shlex, signal, subprocess\n"
                         "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})\n"
                         f"raise SystemExit(subprocess.run(shlex.split({boxed!r})).returncode)\n"],
    }
    left = {}
    for name, command in callers.items():
        ran = subprocess.run(command, env=dict(toolbox.env, **FUSE), cwd=toolbox.root, capture_output=True,
                             timeout=60)
        assert ran.returncode == 0, (name, ran.stderr)
        if (servers := _wait_until_gone(toolbox, seconds=5)):
            left[name] = servers
            for pid, _status in servers:
                os.kill(pid, signal.SIGKILL)  # not left behind for the next test
    assert left == {}


@pytest.mark.needs_userns_overlay
@pytest.mark.needs_fuse
def test_the_fuse_server_is_out_of_the_tools_way(toolbox, busybox, tmp_path):
    # Ctrl-C goes to the tool's process group; a tool that survives it keeps its filesystem.
    script = "trap 'echo caught' INT; kill -INT 0; sleep 0.3; cat /etc/passwd >/dev/null && echo readable"
    # SIGINT at its default, as a terminal's shell starts programs: a suite started in the
    # background (`./scripts/test &`) ignores it, the tool inherits that, and sh cannot trap it.
    result = subprocess.run(["env", "--default-signal=INT", sys.executable, "-m", "toolbox", "run", busybox,
                             "sh", "-c", script],
                            env=dict(toolbox.env, **FUSE), capture_output=True, timeout=60,
                            start_new_session=True)
    assert result.stdout.split() == [b"caught", b"readable"], result
    # It holds none of the tool's descriptors: a pipe reader sees the end when the tool ends.
    fds = (r'''for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = fuse-overlayfs ] && '''
           r'''grep -qs "^PPid:[[:space:]]*$$\$" $p/status && ls -l $p/fd/0 $p/fd/1; done; true''')
    listed = run(toolbox, "--user", "root", busybox, "sh", "-c", fds, env=FUSE)
    assert listed.stdout.count(b"/dev/null") == 2, listed
    assert _wait_until_gone(toolbox) == []


@pytest.mark.needs_userns_overlay
def test_rootfs_modes_fall_back_in_order(toolbox, busybox):
    without_fuse = dict(FUSE, PATH="/nonexistent")
    missing = run(toolbox, busybox, "true", env=without_fuse)
    assert missing.returncode == 125 and b"assemble the root filesystem (fuse-overlayfs)" in missing.stderr
    assert b"fuse-overlayfs is not installed" in missing.stderr
    fallback = run(toolbox, busybox, "touch", "/etc/x",
                   env=dict(without_fuse, TOOLBOX_ROOTFS="fuse-overlayfs,read-only"))
    assert fallback.returncode == 1 and b"Read-only file system" in fallback.stderr


def test_rootfs_mode_lists():
    from toolbox.runtime.rootfs import MODES, parse_modes

    assert parse_modes(None) == parse_modes("auto") == MODES == ("overlay", "fuse-overlayfs", "read-only")
    assert parse_modes("read-only") == ("read-only",)
    assert parse_modes("fuse-overlayfs, read-only") == ("fuse-overlayfs", "read-only")
    with pytest.raises(ValueError, match="'sideways' is not a root filesystem mode"):
        parse_modes("overlay,sideways")


@pytest.mark.needs_userns_overlay
@pytest.mark.needs_subids
def test_subids_map_a_full_range_for_tools_that_chown(toolbox, busybox, tmp_path):
    script = ("touch /tmp/x && chown 1234:2345 /tmp/x && stat -c '%u %g' /tmp/x && "
              "wc -l < /proc/self/uid_map && touch mine")
    single = run(toolbox, "--user", "root", busybox, "sh", "-c", script, cwd=tmp_path)
    # one id mapped: chown to another fails
    assert single.returncode != 0 and b"Invalid argument" in single.stderr
    full = run(toolbox, "--user", "root", "--subids", busybox, "sh", "-c", script, cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    owner, lines = full.stdout.decode().split("\n")[:2]
    assert owner == "1234 2345" and int(lines) >= 2
    assert (tmp_path / "mine").stat().st_uid == os.getuid()  # root inside is still the user outside
    if fuse_usable():  # fuse-overlayfs serves the other ids too (it keeps the namespace's capabilities)
        fused = run(toolbox, "--user", "root", "--subids", busybox, "sh", "-c", script, cwd=tmp_path,
                    env=FUSE)
        assert fused.returncode == 0 and fused.stdout.startswith(b"1234 2345\n"), fused.stderr
        as_other = run(toolbox, "--user", "1234", "--subids", busybox, "sh", "-c",
                       "touch /tmp/o && stat -c %u /tmp/o", env=FUSE)
        assert as_other.stdout == b"1234\n", as_other.stderr
    as_user = run(toolbox, "--subids", busybox, "id", "-u")
    assert as_user.returncode == 0 and as_user.stdout == str(os.getuid()).encode() + b"\n", as_user.stderr
    # A kept layer with files of subordinate ids (mode 700: not even listable outside) is
    # removed in a user namespace that maps them.
    kept = run(toolbox, "--user", "root", "--subids", "--name", "x", busybox, "sh", "-c",
               "mkdir -m 700 /data && touch /data/f && chown -R 1234:2345 /data")
    assert kept.returncode == 0, kept.stderr
    assert os.stat(os.path.join(toolbox.layout.containers_dir, "x", "upper", "data")).st_uid != os.getuid()
    removed = toolbox.cli("rm", "x")
    assert removed.returncode == 0, removed.stderr
    assert not os.path.exists(os.path.join(toolbox.layout.containers_dir, "x"))


def test_subordinate_id_maps(tmp_path):
    from toolbox.runtime.subids import id_map, subordinate_range

    subuid = tmp_path / "subuid"
    subuid.write_text("other:100000:65536\n1001:200000:0\nalice:300000:65536\n")
    assert subordinate_range(str(subuid), "alice", 1001) == (300000, 65536)
    assert subordinate_range(str(subuid), "bob", 1002) is None
    assert id_map(0, 1001, 300000, 65536) == [(0, 1001, 1), (1, 300000, 65536)]
    assert id_map(1001, 1001, 300000, 65536) == [(1001, 1001, 1), (0, 300000, 1001), (1002, 301001, 64535)]
    assert id_map(70000, 1001, 300000, 65536) == [(70000, 1001, 1), (0, 300000, 65536)]


def test_the_subids_hint_proposes_a_range_no_other_user_holds(tmp_path):
    """The hint suggested `usermod --add-subuids 100000-165535` even where another user held that
    range: it proposes the lowest free 65536 ids from 100000 up, free in both files, and only
    what is missing."""
    import pwd

    from toolbox.errors import ToolboxError
    from toolbox.runtime.subids import plan_maps

    me = pwd.getpwuid(os.getuid()).pw_name
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("alice:100000:65536\n# a comment\ncarol:300000:65536\n")
    subgid.write_text("alice:100000:65536\nbob:165536:65536\n")
    with pytest.raises(ToolboxError) as refused:
        plan_maps(me, 0, 0, files=(str(subuid), str(subgid)))
    assert f"--subids needs an {subuid} entry, an {subgid} entry" in refused.value.message
    assert (f"sudo usermod --add-subuids 231072-296607 --add-subgids 231072-296607 {me}"
            in refused.value.hint), refused.value.hint
    assert "100000-165535" not in refused.value.hint
    # uids given; the gap below carol is too small
    subuid.write_text(f"alice:100000:65536\n{me}:165536:65536\ncarol:231072:100000\n")
    with pytest.raises(ToolboxError) as refused:
        plan_maps(me, 0, 0, files=(str(subuid), str(subgid)))
    assert (f"sudo usermod --add-subgids 331072-396607 {me}" in refused.value.hint
            and "--add-subuids" not in refused.value.hint)


@pytest.mark.needs_userns_overlay
def test_eight_pulls_and_eight_runs_of_one_image_at_once(toolbox, registry, tmp_path):
    import hashlib
    import random

    from toolbox.store.check import check_store

    from tests.support import images
    from tests.support.push import push_raw

    toolbox.trust(registry)
    data = random.Random(8).randbytes(4 * 1024 * 1024)
    layers = (images.busybox_layer(), images.Layer((images.directory("data"), images.file("data/x", data)),))
    built = images.build_image(images.busybox_spec(layers=layers,
                                                   labels={"org.example.scenario": f"race-{tmp_path.name}"}))
    repository = f"race/{tmp_path.name.lower()}"
    push_raw(registry, repository, "1", built)
    reference = f"{registry.host}/{repository}:1"
    command = [sys.executable, "-m", "toolbox"]
    processes = [subprocess.Popen(command + ["pull", "--quiet", reference], env=toolbox.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(8)]
    processes += [subprocess.Popen(command + ["run", reference, "sha256sum", "/data/x"], env=toolbox.env,
                                   cwd=toolbox.root, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE) for _ in range(8)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]
    assert all(code == 0 for code, _out, _err in results), [err for code, _out, err in results if code]
    digest = hashlib.sha256(data).hexdigest().encode()
    assert all(out.startswith(digest) for _code, out, _err in results[8:])
    report = check_store(toolbox.store)
    assert report.clean and report.layers_checked == 2, report.to_json()
    assert toolbox.leftovers() == []


def test_the_runtime_waits_for_leaving_threads_before_it_unshares():
    """unshare(CLONE_NEWUSER) fails with EINVAL while another thread exists, even one Python
    has joined and the kernel has not removed yet: a pull just before a launch leaves such
    threads (one run in a few hundred, under load). exec_container waits for them first."""
    code = (
        "import os, threading, time\n"
        "from toolbox.runtime.container import wait_until_single_threaded\n"
        "threading.Thread(target=time.sleep, args=(0.3,)).start()\n"
        "assert len(os.listdir('/proc/self/task')) == 2\n"
        "wait_until_single_threaded()\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout == "1\n", result.stderr


@pytest.mark.needs_userns_overlay
def test_docker_habits_work_or_say_what_toolbox_does_instead(toolbox, busybox, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("bound\n")
    mounted = run(toolbox, "--mount", f"type=bind,source={tmp_path}/data,target=/data,readonly", "--mount",
                  "type=volume,src=kept,dst=/kept", "--mount", "type=tmpfs,destination=/scratch", busybox,
                  "sh", "-c",
                  "cat /data/in.txt; touch /data/x 2>/dev/null || echo ro; echo v > /kept/f; touch "
                  "/scratch/t && echo tmpfs",
                  cwd=tmp_path)
    assert mounted.stdout == b"bound\nro\ntmpfs\n", mounted.stderr
    # a named volume, as -v makes it
    assert run(toolbox, "-v", "kept:/k", busybox, "cat", "/k/f").stdout == b"v\n"
    bad = run(toolbox, "--mount", "type=bind,target=/x", busybox, "true")
    assert bad.returncode == 125 and b"--mount" in bad.stderr
    created = toolbox.cli("volume", "create", "made")
    assert created.returncode == 0 and created.stdout == "made\n"
    assert toolbox.cli("volume", "inspect", "made").returncode == 0
    assert toolbox.cli("volume", "create", "made").stdout == "made (exists already)\n"
    assert toolbox.cli("volume", "create", "../x").returncode == 125
    for option, words in (("-p", b"host's network"), ("--publish=8080:80", b"host's network")):
        refused = run(toolbox, option, *(["8080:80"] if option == "-p" else []), busybox, "true")
        assert (refused.returncode == 125 and words in refused.stderr
                and b"unknown option" not in refused.stderr), (option, refused.stderr)
    # -d, -dit, exec, logs, stop, start: services (tests/runtime/test_services.py)
    detached = run(toolbox, "-dit", "--rm", busybox, "true")
    assert detached.returncode == 0 and detached.stdout.startswith(b"busybox-"), detached.stderr
    said = toolbox.cli("exec", "-it", "some-container", "ls", "-l")
    assert said.returncode == 125 and "no service named 'some-container'" in said.stderr
    for command in ("logs", "stop", "start"):
        said = toolbox.cli(command, "some-container")
        assert said.returncode == 125 and "no container named 'some-container'" in said.stderr, said.stderr
