"""What of your machine a tool sees through the current directory and the paths in its
arguments (argpaths.py): never toolbox's own directories writable, never your credentials, and
only the object that was judged — also when another local user swaps a directory for a symlink
while toolbox starts."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.rootfs_modes import rootfs_mode_params


def run(toolbox, *args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "toolbox", "run", *map(str, args)],
                          env=dict(toolbox.env, **(env or {})), capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def secrets(home):
    (home / ".ssh").mkdir(exist_ok=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
    (home / ".netrc").write_text("machine x password SECRET\n")
    (home / ".config").mkdir(exist_ok=True)
    (home / ".config" / "app.conf").write_text("setting\n")


def test_protected_places_are_judged_by_their_real_paths(toolbox, tmp_path):
    from toolbox.hot.argpaths import HIDDEN, READ_ONLY, protected_places, protection

    home = Path(toolbox.home)
    secrets(home)
    (tmp_path / "keys").mkdir()
    (home / ".aws").symlink_to(tmp_path / "keys")  # a credential kept elsewhere, linked in
    places = dict(protected_places(toolbox.layout, str(home), {}))
    assert places[str(home / ".ssh")] == HIDDEN and places[str(home / ".netrc")] == HIDDEN
    assert places[str(tmp_path / "keys")] == HIDDEN and str(home / ".aws") not in places
    os.makedirs(toolbox.layout.data_dir, exist_ok=True)
    assert dict(protected_places(toolbox.layout, str(home), {}))[toolbox.layout.data_dir] == READ_ONLY
    places = protected_places(toolbox.layout, str(home), {})
    assert protection(str(home / ".ssh" / "sub"), places) is None
    assert protection(str(tmp_path / "keys"), places) is None
    read_only, masks = protection(str(tmp_path), places)
    assert (not read_only and ("keys", HIDDEN) in masks and ("home/.ssh", HIDDEN) in masks
            and ("home/.netrc", HIDDEN) in masks)
    assert protection(str(tmp_path / "elsewhere"), places) == (False, ())


@pytest.mark.needs_userns_overlay
def test_toolbox_directories_never_become_writable_through_an_argument(toolbox, busybox, tmp_path):
    """Round 1: naming config.toml mounted its directory read-write, and the tool planted a
    recipe that every later `jq` ran, with ~/.ssh mounted."""
    config = Path(toolbox.layout.config_file)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(config.read_text() if config.exists() else "")
    recipes = Path(toolbox.layout.user_recipes_dir)
    plant = (f'mkdir -p {recipes} && echo \'image = "evil/jq"\' > {recipes}/jq.toml; '
             f"cat {config} >/dev/null && echo read")
    work = tmp_path / "work"
    work.mkdir()
    result = run(toolbox, busybox, "sh", "-c", plant, config, cwd=work)
    assert not (recipes / "jq.toml").exists(), result.stderr
    assert "read" in result.stdout  # the file named is there, to read
    appended = run(toolbox, busybox, "sh", "-c", f"echo x >> {config}", config, cwd=work)
    assert appended.returncode != 0 and "x" not in config.read_text()


@pytest.mark.needs_userns_overlay
def test_the_current_directory_never_exposes_credentials_or_toolbox_state(toolbox, busybox, tmp_path):
    home = Path(toolbox.home)
    secrets(home)
    # tmp_path holds the home directory and toolbox's directories: working there shows neither.
    script = (f"ls -A {home}/.ssh | wc -l; cat {home}/.netrc; echo ok > {tmp_path}/written;"
              f"touch {toolbox.layout.data_dir}/planted 2>/dev/null || echo refused; cat "
              f"{home}/.config/app.conf")
    result = run(toolbox, busybox, "sh", "-c", script, cwd=tmp_path)
    assert result.stdout.split() == ["0", "refused", "setting"], result.stderr
    assert ((tmp_path / "written").read_text() == "ok\n"
            and not os.path.exists(os.path.join(toolbox.layout.data_dir, "planted")))
    assert (home / ".ssh" / "id_ed25519").read_text() == "PRIVATE KEY\n"  # covered, not touched
    # Working in a credentials directory: it is not mounted, and toolbox says so.
    inside = run(toolbox, busybox, "sh", "-c", f"cat {home}/.ssh/id_ed25519; pwd", cwd=home / ".ssh")
    assert "PRIVATE KEY" not in inside.stdout and "not mounting the current directory" in inside.stderr
    # Arguments naming credentials: not mounted; a file of a broad directory (~/.config) alone.
    named = run(toolbox, busybox, "sh", "-c", f'cat "$1" "$2"; ls {home}/.config', "sh",
                home / ".ssh" / "id_ed25519", home / ".config" / "app.conf", cwd=tmp_path / "toolbox")
    assert ("PRIVATE KEY" not in named.stdout and "setting" in named.stdout
            and f"not mounting {home}/.ssh" in named.stderr)
    assert named.stdout.split().count("app.conf") == 1  # ~/.config itself is not listed beyond the file


@pytest.mark.needs_userns_overlay
def test_a_current_directory_swapped_for_a_symlink_is_never_mounted(toolbox, busybox, other_user):
    """Another user renames your working directory away in a shared directory and puts a symlink
    to one of yours in its place, again and again, while `toolbox run` starts; the tool must see
    your working directory or nothing, never the link's target."""
    shared = Path(tempfile.mkdtemp(prefix="toolbox-shared-", dir="/tmp"))
    try:
        shared.chmod(0o777)
        work, private = shared / "work", Path(toolbox.home) / "private"
        work.mkdir()
        (work / "WORKDIR").write_text("")
        private.mkdir()
        (private / "SECRET").write_text("")
        # The tool's process is in the directory itself, as a shell that cd'ed there earlier is.
        work_fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        swapper = other_user.spawn(["/usr/bin/python3", "-I", "-c", SWAP_CWD, work, private])
        outcomes = {"workdir": 0, "secret": 0, "refused": 0}
        try:
            deadline = time.monotonic() + 90
            while sum(outcomes.values()) < 150 and time.monotonic() < deadline:
                result = subprocess.run([sys.executable, "-m", "toolbox", "run", busybox, "ls"],
                                        env=toolbox.env, pass_fds=(work_fd,),
                                        preexec_fn=lambda: os.fchdir(work_fd), capture_output=True, text=True,
                                        timeout=60)
                outcomes["secret" if "SECRET" in result.stdout
                         else "workdir" if "WORKDIR" in result.stdout else "refused"] += 1
        finally:
            swaps = int(other_user.stop(swapper) or 0)
            os.close(work_fd)
        print(f"swaps {swaps}, outcomes {outcomes}")
        assert swaps > 100 and outcomes["secret"] == 0 and outcomes["workdir"] > 0, (swaps, outcomes)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


SWAP_CWD = """
import os, signal, sys, time
work, target = sys.argv[1], sys.argv[2]
away, count = work + ".away", 0
signal.signal(signal.SIGTERM, lambda *_: (print(count), sys.exit(0)))
while True:
    try:
        os.rename(work, away)
        os.symlink(target, work)
        time.sleep(0.001)
        os.unlink(work)
        os.rename(away, work)
        count += 1
    except OSError:
        pass
    time.sleep(0.002)
"""


# -- what an image says is never followed on the host side -------------------------------------------
def _hostile_config_image(registry, toolbox, canary):
    from tests.support import images
    from tests.support.push import push_raw

    entries = list(images.busybox_entries()) + [images.symlink("work", str(canary)),
                                                images.symlink("hostbin", "/usr/bin"),
                                                images.symlink("keep", str(canary))]
    spec = images.ImageSpec(layers=(images.Layer(tuple(entries)),), working_dir="/work/sub/dir",
                            env=("PATH=/hostbin:/bin",),
                            extra_config={"Volumes": {f"{canary}/vol": {}, "/work/vol": {}},
                                          "ExposedPorts": {"22/tcp": {}}})
    push_raw(registry, "hostile/config", "1", images.build_image(spec))
    toolbox.trust(registry)
    reference = f"{registry.host}/hostile/config:1"
    toolbox.pull(reference)
    return reference


@pytest.mark.parametrize("mode", rootfs_mode_params())
def test_an_image_config_is_never_followed_on_the_host(toolbox, registry, tmp_path, mode):
    """WorkingDir through a symlink to a host directory, Volumes naming host paths, a PATH
    through a link to the host's /usr/bin: all resolved inside the image, or ignored."""
    canary = tmp_path / "canary"
    canary.mkdir()
    reference = _hostile_config_image(registry, toolbox, canary)
    env = {"TOOLBOX_ROOTFS": mode}
    result = run(toolbox, "--no-cwd", reference, "sh", "-c", "pwd; touch made-here 2>/dev/null; echo done",
                 cwd=tmp_path, env=env)
    if mode == "read-only":  # nothing can be created in a read-only image: the working directory is refused
        assert result.returncode == 125 and "/work/sub/dir" in result.stderr, result.stderr
    else:
        cwd, done = result.stdout.split()
        # through the image's link, inside the image
        assert cwd.endswith("/sub/dir") and done == "done", result.stderr
    # python3 is in the host's /usr/bin, which the image's PATH names through a link: inside,
    # the link leads to the image's own /usr/bin, where there is no python3.
    missing = run(toolbox, reference, "python3", "-c", "print(1)", cwd=tmp_path, env=env)
    assert missing.returncode == 127 and "command not found in the image" in missing.stderr
    inspected = toolbox.cli("inspect", reference)
    assert inspected.returncode == 0
    assert sorted(p.name for p in canary.iterdir()) == []  # no sub/dir, no vol, no made-here


@pytest.mark.needs_userns_overlay
def test_a_kept_layer_and_layer_trees_are_walked_without_following_links(toolbox, busybox, tmp_path):
    """What a tool leaves in a kept layer (--name) and what a layer holds are the image's:
    `ps`, `df`, `check` and `rm` count and remove them without following a link to your files."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_bytes(b"x" * (4 << 20))
    script = (f"ln -s {precious} /link; ln -s {precious}/data /datalink; "
              "mkdir -p /deep/a/b/c && ln -s / /deep/a/b/c/root")
    assert run(toolbox, "--name", "kept", busybox, "sh", "-c", script, cwd=tmp_path).returncode == 0
    listed = __import__("json").loads(toolbox.cli("ps", "-a", "--json").stdout)
    assert listed[0]["name"] == "kept" and listed[0]["size"] < (1 << 20)  # the link, not 4 MiB through it
    df = toolbox.cli("df", "--json")
    checked = toolbox.cli("check", "--json")
    assert df.returncode == 0 and checked.returncode == 0, checked.stdout + checked.stderr
    assert toolbox.cli("rm", "kept").returncode == 0
    assert ((precious / "data").stat().st_size == 4 << 20
            and sorted(p.name for p in precious.iterdir()) == ["data"])


# -- the current directory in the image's own places; outputs that would not land ----------------------
@pytest.mark.parametrize("mode", rootfs_mode_params())
def test_the_current_directory_never_replaces_the_images_system_directories(toolbox, busybox, mode):
    """In /usr or /etc the host's directory used to be mounted over the image's: its programs,
    libraries and configuration vanished. There the tool works in the image's directory of that
    path, and toolbox says so once."""
    env = {"TOOLBOX_ROOTFS": mode}
    probe = ("pwd; test -e debian_version && echo host-etc || echo image-etc; "
             "test -x /bin/busybox && echo image-bin")
    first = run(toolbox, busybox, "sh", "-c", probe, cwd="/etc", env=env)
    assert first.stdout.split() == ["/etc", "image-etc", "image-bin"], first.stderr
    assert ("not mounting the current directory: /etc is one of the image's own system directories"
            in first.stderr)
    again = run(toolbox, busybox, "sh", "-c", probe, cwd="/etc", env=env)
    assert again.stdout == first.stdout and "not mounting" not in again.stderr  # said once
    in_usr = run(toolbox, busybox, "sh", "-c", "pwd; ls /usr", cwd="/usr", env=env)
    # the image's /usr: only bin, none of the host's
    assert in_usr.stdout.split() == ["/usr", "bin"], in_usr.stderr
    at_root = run(toolbox, busybox, "sh", "-c", "pwd; test -e /etc/debian_version || echo image", cwd="/",
                  env=env)
    assert at_root.stdout.split() == ["/", "image"], at_root.stderr


@pytest.mark.needs_userns_overlay
def test_an_output_that_would_stay_inside_the_container_is_announced(toolbox, busybox, tmp_path):
    """A new file directly in a broad directory (your home, /tmp) is not mounted, so what the
    tool writes there is lost: toolbox says so before the tool runs, with the remedy, and the
    remedy works."""
    home = Path(toolbox.home)
    tmp_path = tmp_path / "work"  # the current directory, beside the home directory (not above it)
    tmp_path.mkdir()
    (tmp_path / "in.txt").write_text("b\na\n")
    scratch = Path(tempfile.mkdtemp(prefix="toolbox-out-", dir="/tmp"))
    try:
        out = scratch.parent / (scratch.name + ".txt")  # directly in /tmp, not there yet
        write = 'cat in.txt > "$1"'
        result = run(toolbox, busybox, "sh", "-c", write, "sh", out, cwd=tmp_path)
        assert (f"{out} does not exist yet, and /tmp is not mounted whole" in result.stderr
                and "create it first" in result.stderr)
        assert result.returncode == 0 and not out.exists()  # the tool wrote it, inside: said beforehand
        copied = run(toolbox, busybox, "cp", "in.txt", home / "copied.txt", cwd=tmp_path)
        # never: mount your home
        assert f"{home}/copied.txt does not exist yet" in copied.stderr and " -v " not in copied.stderr
        nested = run(toolbox, busybox, "sh", "-c", 'mkdir -p "$(dirname "$1")" && echo x > "$1"', "sh",
                     scratch / "new" / "deep" / "f", cwd=tmp_path)
        assert f"{scratch}/new/deep/f does not exist yet, and {scratch} is not mounted whole" in nested.stderr
        assert f"-v {scratch}:{scratch}" in nested.stderr
        # The remedy: created first, the file is mounted alone and the output lands.
        out.touch()
        written = run(toolbox, busybox, "sh", "-c", write, "sh", out, cwd=tmp_path)
        assert (written.returncode == 0 and out.read_text() == "b\na\n"
                and "does not exist" not in written.stderr)
        # Nothing to say for what exists, what the image owns, or a directory that is mounted.
        quiet = run(toolbox, busybox, "sh", "-c", "true", "/etc/new.conf", tmp_path / "new-in-cwd",
                    scratch / "new-in-a-mounted-dir", f"{scratch}/", cwd=tmp_path)
        assert "does not exist" not in quiet.stderr, quiet.stderr
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        (scratch.parent / (scratch.name + ".txt")).unlink(missing_ok=True)
