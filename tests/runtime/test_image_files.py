"""Files of an image that toolbox reads on the host side, before pivot_root: /etc/passwd and
/etc/group for `--user NAME` (imagefs, over the layer trees) and for the user's entry
(runtime.add_user, over the assembled root). They are resolved as the container will see them,
never through the host's filesystem, and read only when they are regular files of bounded size.

Layer trees are made by unpacking tars with toolbox.store.unpack, so whiteouts and opaque directories
are in the store's own format; FIFOs and sparse giants, which no layer can carry, are made in
the trees directly (a kept writable layer can hold them: the end-to-end tests make them so)."""

import io
import itertools
import os
import pwd
import random
import resource
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from contextlib import contextmanager

import pytest

from toolbox.errors import ImageFileError, LayerError, ToolboxError
from toolbox.hot.options import image_lookup_in, user_inside
from toolbox.runtime.imagefs import (
    ACCOUNTS_LIMIT,
    FileTooBig,
    NotRegularFile,
    locate,
    read_image_file,
    read_regular,
)
from toolbox.runtime.mounts import mountpoint
from toolbox.store.unpack import unpack_layer

from tests.support import images
from tests.support.images import directory, file, opaque, symlink, whiteout
from tests.support.push import push_raw

GIB = 1024**3


def layer_trees(top_dir, *layers):
    """Unpack `layers` (lists of tests.support.images entries, lowest first) into trees under
    `top_dir`: their paths, topmost first, as the runtime stacks them."""
    roots = []
    for index, entries in enumerate(layers):
        root = top_dir / f"layer{index}"
        root.mkdir(parents=True)
        unpack_layer(io.BytesIO(images.layer_tar(entries)), str(root))
        roots.append(str(root))
    return roots[::-1]


def read(roots, path, limit=ACCOUNTS_LIMIT):
    return read_image_file(roots, path, limit, "test/image:1")


@contextmanager
def deadline(seconds):
    """Fail instead of hanging: the code under test must not block (a FIFO)."""

    def expired(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------
# The resolver over layer trees


def test_the_topmost_layer_wins_and_whiteouts_and_opaque_directories_hide_lower_layers(tmp_path):
    roots = layer_trees(
        tmp_path,
        [directory("etc"), file("etc/passwd", "base\n"), file("etc/group", "base group\n"), directory("a"),
         file("a/x", "x\n"), file("a/y", "y\n"), directory("d"), file("d/old", "old\n"), directory("d/sub"),
         file("d/sub/deep", "deep\n")],
        [directory("etc"), file("etc/passwd", "top\n"), directory("a"), whiteout("a/x"), directory("d"),
         opaque("d"), file("d/new", "new\n")],
        [directory("etc"), whiteout("etc/group")],
    )
    assert read(roots, "/etc/passwd") == b"top\n"
    assert read(roots, "/etc/group") is None
    assert read(roots, "/a/x") is None and read(roots, "/a/y") == b"y\n"
    assert (read(roots, "/d/old") is None and read(roots, "/d/sub/deep") is None
            and read(roots, "/d/new") == b"new\n")
    assert read(roots, "/etc/shadow") is None
    with pytest.raises(ImageFileError, match="/etc in test/image:1 is a directory"):
        read(roots, "/etc")


def test_a_non_directory_hides_the_directories_below_it_and_a_directory_the_files(tmp_path):
    roots = layer_trees(
        tmp_path,
        [directory("etc"), file("etc/passwd", "hidden\n"), file("x", "file\n"), directory("m"),
         file("m/low", "low\n")],
        [file("etc", "a file now\n"), directory("x"), file("x/inner", "inner\n"), file("m", "a file\n")],
        [directory("m"), file("m/top", "top\n")],
    )
    assert read(roots, "/etc/passwd") is None  # below a file: ENOTDIR, nothing there
    assert read(roots, "/x/inner") == b"inner\n"
    assert read(roots, "/m/top") == b"top\n" and read(roots, "/m/low") is None


def test_symlinks_resolve_against_the_image_root_never_the_host(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("host file\n")
    inside = str(host / "passwd").lstrip("/")  # the same path, inside the image
    climb = "../" * (str(tmp_path).count("/") + 8)
    roots = layer_trees(
        tmp_path / "layers",
        [directory("etc"), file("etc/real", "image\n"), file(inside, "image's own copy\n"), directory("a/b"),
         file("a/c", "physical\n"), file("c", "lexical\n")],
        [directory("etc"), symlink("etc/absolute", str(host / "passwd")),
         symlink("etc/relative", climb + inside), symlink("etc/to-real", "/etc/real"),
         symlink("etc/dotdot", climb + "etc/real"), symlink("etc/self", "/etc/self"),
         symlink("etc/zero", "/dev/zero"), symlink("l", "a/b"), symlink("etc/dir", "/etc")],
    )
    assert read(roots, "/etc/absolute") == b"image's own copy\n"
    assert read(roots, "/etc/relative") == b"image's own copy\n"
    assert read(roots, "/etc/to-real") == b"image\n" and read(roots, "/etc/dotdot") == b"image\n"
    assert read(roots, "/etc/dir/dir/dir/real") == b"image\n"
    # `..` after a link is taken from where it led, as the kernel does
    assert read(roots, "/l/../c") == b"physical\n"
    assert read(roots, "/etc/zero") is None  # the image has no /dev/zero: the host's is never opened
    assert read(roots, "/../../etc/real") == b"image\n"
    with pytest.raises(ImageFileError, match="/etc/self in test/image:1.*symbolic links"):
        read(roots, "/etc/self")


def test_forty_links_resolve_and_the_forty_first_is_a_loop(tmp_path):
    chain = [symlink(f"l{n}", f"/l{n + 1}") for n in range(41)]
    roots = layer_trees(tmp_path, [*chain, file("l41", "end\n")])
    assert read(roots, "/l1") == b"end\n"  # 40 links
    with pytest.raises(ImageFileError, match="symbolic links"):
        read(roots, "/l0")


def test_only_regular_files_are_read_and_never_blocked_on(tmp_path):
    roots = layer_trees(tmp_path, [directory("etc"), directory("etc/passwd"), file("etc/group", "g\n")])
    os.mkfifo(os.path.join(roots[0], "etc", "fifo"))
    with pytest.raises(ImageFileError, match="is a directory"):
        read(roots, "/etc/passwd")
    with deadline(10), pytest.raises(ImageFileError, match="/etc/fifo in test/image:1 is a FIFO"):
        read(roots, "/etc/fifo")


def test_a_file_past_the_bound_is_refused_unread(tmp_path):
    roots = layer_trees(tmp_path, [directory("etc"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n")])
    os.truncate(os.path.join(roots[0], "etc", "passwd"), 64 * GIB)  # sparse: costs no disk
    with pytest.raises(ImageFileError,
                       match=r"/etc/passwd in test/image:1 is 68719476736 bytes, more than the 4 MiB"):
        read(roots, "/etc/passwd")
    os.truncate(os.path.join(roots[0], "etc", "passwd"), ACCOUNTS_LIMIT)
    assert len(read(roots, "/etc/passwd")) == ACCOUNTS_LIMIT


def test_read_regular_follows_no_symlink_opens_no_fifo_and_stops_at_the_bound(tmp_path):
    (tmp_path / "file").write_text("content\n")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    os.mkfifo(tmp_path / "fifo")
    assert read_regular(str(tmp_path / "file"), 100) == b"content\n"
    assert read_regular(str(tmp_path / "missing"), 100) is None
    with pytest.raises(NotRegularFile, match="a symbolic link"):
        read_regular(str(tmp_path / "link"), 100)
    with deadline(10), pytest.raises(NotRegularFile, match="a FIFO"):
        read_regular(str(tmp_path / "fifo"), 100)
    with pytest.raises(NotRegularFile, match="a character device"):
        read_regular("/dev/zero", 100)
    with pytest.raises(FileTooBig, match="8 bytes"):
        read_regular(str(tmp_path / "file"), 7)
    with pytest.raises(FileTooBig, match="more than 100 bytes"):
        read_regular("/proc/self/maps", 100)  # its size says 0


def test_a_mount_point_never_lands_above_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert mountpoint(str(root), "..", directory=True) == str(root)
    assert mountpoint(str(root), "/home/../..", directory=True) == str(root)
    assert mountpoint(str(root), "/x/y/..", directory=True) == str(root / "x")
    assert sorted(os.listdir(tmp_path)) == ["root"]


# ---------------------------------------------------------------------------------------------
# --user lookups


def test_user_names_are_looked_up_in_the_image_never_in_host_files(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("hostuser:x:777:777::/home/hostuser:/bin/sh\n")
    (host / "group").write_text("hostgroup:x:778:\n")
    climb = "../" * (str(tmp_path).count("/") + 8)
    roots = layer_trees(
        tmp_path / "layers",
        [file(str(host / "passwd").lstrip("/"), "imageuser:x:4321:4322::/home/imageuser:/bin/sh\n"),
         file(str(host / "group").lstrip("/"), "imagegroup:x:4323:\n")],
        [directory("etc"), symlink("etc/passwd", str(host / "passwd")),
         symlink("etc/group", climb + str(host / "group").lstrip("/"))],
    )
    lookup = image_lookup_in(str(tmp_path / "layers"), [os.path.basename(root) for root in roots])
    assert lookup("passwd", "hostuser") is None and lookup("group", "hostgroup") is None
    user = user_inside("imageuser:imagegroup", lookup)
    assert (user.uid, user.gid, user.name, user.home) == (4321, 4323, "imageuser", "/home/imageuser")
    with pytest.raises(ToolboxError, match="no user named 'hostuser'"):
        user_inside("hostuser", lookup)


def test_a_passwd_toolbox_will_not_read_fails_a_name_and_is_no_entry_for_a_number(tmp_path):
    roots = layer_trees(tmp_path / "layers", [directory("etc"),
                                              file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
                                              file("etc/group", "root:x:0:\n")])
    os.truncate(os.path.join(roots[0], "etc", "passwd"), 64 * GIB)
    os.unlink(os.path.join(roots[0], "etc", "group"))
    os.mkfifo(os.path.join(roots[0], "etc", "group"))
    lookup = image_lookup_in(str(tmp_path / "layers"), ["layer0"], "test/image:1")
    with deadline(10):
        with pytest.raises(ToolboxError,
                           match=r"--user root: /etc/passwd in test/image:1 is 68719476736 bytes") as raised:
            user_inside("root", lookup)
        assert "numeric" in raised.value.hint
        with pytest.raises(ToolboxError, match="--user 0:wheel: /etc/group in test/image:1 is a FIFO"):
            user_inside("0:wheel", lookup)
        user = user_inside("0", lookup)  # the entry would only have named root and its home
        assert (user.uid, user.gid, user.name, user.home) == (0, 0, "root", "/root")
        assert user_inside("1000:1000", lookup).uid == 1000


# ---------------------------------------------------------------------------------------------
# End to end: hostile images from the loopback registry, `toolbox run` as an ordinary user


def publish(toolbox, registry, entries):
    built = images.build_image(images.ImageSpec(layers=(images.Layer(tuple(entries)),), cmd=("sh",)))
    repository = f"image-files/{uuid.uuid4().hex[:12]}"
    push_raw(registry, repository, "1", built)
    reference = f"{registry.host}/{repository}:1"
    toolbox.pull(reference)
    return reference


# The uid, without id(1): busybox's reads /etc/passwd, which in these images the tool itself
# must not read either (a FIFO, /dev/zero).
UID = "sed -n 's/^Uid:[[:space:]]*\\([0-9]*\\).*/\\1/p' /proc/self/status"


def busybox_without(*paths):
    return [entry for entry in images.busybox_entries() if entry.path not in paths]


def run(toolbox, *args, memory=None, timeout=60):
    """`toolbox run ARGS`; with `memory`, under that address-space limit, so that reading
    without a bound ends in MemoryError instead of taking the machine's memory."""

    def limit():
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-m", "toolbox", "run", *args], env=toolbox.env,
                          capture_output=True, cwd=toolbox.root, timeout=timeout, preexec_fn=limit)


@pytest.mark.needs_userns_overlay
def test_user_names_never_come_from_host_files(toolbox, registry, tmp_path):
    """/etc/passwd and /etc/group link to host files that name other users and groups; the
    image has files of its own at the same paths."""
    toolbox.trust(registry)
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("hostuser:x:777:777::/home/hostuser:/bin/sh\n")
    (host / "group").write_text("hostgroup:x:778:\n")
    climb = "../" * (str(toolbox.layout.layers_dir).count("/") + 8)
    linked = publish(toolbox, registry, busybox_without("etc/passwd", "etc/group") + [
        file(str(host / "passwd").lstrip("/"), "imageuser:x:4321:4322::/home/imageuser:/bin/sh\n"),
        file(str(host / "group").lstrip("/"), "imagegroup:x:4323:\n"),
        symlink("etc/passwd", str(host / "passwd")),  # absolute: the image's own file at that path
        # relative, climbing out of the layer tree on the host
        symlink("etc/group", climb + str(host / "group").lstrip("/")),
    ])
    refused = run(toolbox, "-u", "hostuser", linked, "id", "-u")
    assert refused.returncode == 125 and b"the image has no user named 'hostuser'" in refused.stderr, refused
    no_group = run(toolbox, "-u", "imageuser:hostgroup", linked, "true")
    assert no_group.returncode == 125 and b"no group named 'hostgroup'" in no_group.stderr, no_group
    image_user = run(toolbox, "-u", "imageuser:imagegroup", linked, "sh", "-c", "id -u; id -g; echo $HOME")
    assert (image_user.returncode == 0
            and image_user.stdout.split() == [b"4321", b"4323", b"/home/imageuser"]), image_user


@pytest.mark.needs_userns_overlay
def test_a_link_to_etc_passwd_never_reads_the_hosts_where_this_user_has_an_account(toolbox, registry):
    """Inside the image, /etc/passwd -> /etc/passwd is a loop; on the host it led to the host's
    file, and `-u` with the name of a host account took its uid and home."""
    toolbox.trust(registry)
    looped = publish(toolbox, registry,
                     busybox_without("etc/passwd") + [symlink("etc/passwd", "/etc/passwd")])
    own_name = pwd.getpwuid(os.getuid()).pw_name
    host_account = run(toolbox, "-u", own_name, looped, "id", "-u")
    assert host_account.returncode == 125 and host_account.stdout == b"", host_account
    assert (b"/etc/passwd in " in host_account.stderr and b"symbolic links" in host_account.stderr
            and b"Traceback" not in host_account.stderr)
    assert run(toolbox, "-u", "0", looped, "sh", "-c", UID).stdout == b"0\n"


@pytest.mark.needs_userns_overlay
def test_a_passwd_leading_to_dev_zero_is_no_passwd(toolbox, registry):
    """The host's /dev/zero was read until memory ran out, even for `-u 0`; the image's own
    /dev has no zero, so the image has no /etc/passwd."""
    toolbox.trust(registry)
    zero = publish(toolbox, registry, busybox_without("etc/passwd") + [symlink("etc/passwd", "/dev/zero")])
    as_root = run(toolbox, "-u", "0", zero, "sh", "-c", UID, memory=2 * GIB, timeout=30)
    assert as_root.returncode == 0 and as_root.stdout == b"0\n", as_root
    by_name = run(toolbox, "-u", "nobody", zero, "true", memory=2 * GIB, timeout=30)
    assert by_name.returncode == 125 and b"the image has no user named 'nobody'" in by_name.stderr, by_name


@pytest.mark.needs_userns_overlay
def test_a_passwd_past_the_bound_is_refused_for_a_name_and_left_alone_for_a_number(toolbox, registry):
    toolbox.trust(registry)
    passwd = "root:x:0:0:root:/root:/bin/sh\n" + "#" * ACCOUNTS_LIMIT + "\nnobody:x:65534:65534::/:/bin/sh\n"
    huge = publish(toolbox, registry, busybox_without("etc/passwd") + [file("etc/passwd", passwd)])
    refused = run(toolbox, "-u", "nobody", huge, "true", memory=2 * GIB, timeout=30)
    assert refused.returncode == 125 and b"Traceback" not in refused.stderr, refused
    assert (b"--user nobody: /etc/passwd in " in refused.stderr
            and b"bytes, more than the 4 MiB toolbox reads of it" in refused.stderr)
    numeric = run(toolbox, "-u", "0", huge, "sh", "-c", f"{UID}; wc -c < /etc/passwd", memory=2 * GIB,
                  timeout=30)
    assert numeric.returncode == 0 and numeric.stdout.split()[0] == b"0", numeric
    assert int(numeric.stdout.split()[1]) == len(passwd)  # left as the image has it: no entry appended


KEPT_LAYER_HOLDS = {
    "a FIFO": ("rm /etc/passwd && mkfifo /etc/passwd", b"fifo:0"),  # the open blocked forever
    "a directory": ("rm /etc/passwd && mkdir /etc/passwd", b"directory:"),  # the read failed the run (EISDIR)
    "a sparse giant": ("truncate -s 64G /etc/passwd", b"regular file:68719476736"),  # read into memory
}


@pytest.mark.needs_userns_overlay
@pytest.mark.parametrize("kind", sorted(KEPT_LAYER_HOLDS))
def test_the_users_entry_is_not_added_to_a_passwd_that_is(toolbox, registry, kind):
    """A kept writable layer (--name) holds what the tool made of /etc/passwd: the next run
    reads it on the host side to add the user's entry, and leaves it as it is."""
    toolbox.trust(registry)
    tools = publish(toolbox, registry, images.busybox_entries() + [symlink("bin/mkfifo", "busybox"),
                                                                   symlink("bin/truncate", "busybox")])
    script, seen = KEPT_LAYER_HOLDS[kind]
    assert run(toolbox, "--name", "kept", "-u", "0", tools, "sh", "-c", script).returncode == 0
    again = run(toolbox, "--name", "kept", tools, "sh", "-c", f"{UID}; stat -c %F:%s /etc/passwd",
                memory=2 * GIB, timeout=30)
    assert again.returncode == 0, again
    uid, passwd = again.stdout.splitlines()
    assert uid == str(os.getuid()).encode() and passwd.startswith(seen), again


@pytest.mark.needs_userns_overlay
def test_a_home_that_is_no_directory_is_left_alone(toolbox, registry):
    toolbox.trust(registry)
    passwd = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:2:2:daemon:/dev/null:/bin/sh\n"
    daemon = publish(toolbox, registry, busybox_without("etc/passwd") + [file("etc/passwd", passwd)])
    result = run(toolbox, "-u", "daemon", daemon, "sh", "-c", "echo $HOME; test -c /dev/null && echo device")
    assert result.returncode == 0 and result.stdout == b"/dev/null\ndevice\n", result


# ---------------------------------------------------------------------------------------------
# Compared with the kernel: overlayfs over the same trees, read after chroot(2)

NAMES = ("etc", "passwd", "a", "b")


def _random_path(rng, depth):
    return "/".join(rng.choice(NAMES) for _ in range(depth))


def _random_layer(rng):
    entries = []
    for _ in range(rng.randint(1, 7)):
        path = _random_path(rng, rng.randint(1, 3))
        kind = rng.choice(("dir", "file", "file", "link", "link", "whiteout", "opaque"))
        if kind == "dir":
            entries.append(directory(path))
        elif kind == "file":
            entries.append(file(path, f"{path} {rng.random()}\n"))
        elif kind == "link":
            target = rng.choice(("/", "", "../", "../../../", "./")) + _random_path(rng, rng.randint(0, 3))
            entries.append(symlink(path, target or "."))
        elif kind == "whiteout":
            entries.append(whiteout(path))
        else:
            entries.append(opaque(path))
    return entries


def _random_images(top_dir, count, seed):
    rng = random.Random(seed)
    made = []
    while len(made) < count:
        layers = [_random_layer(rng) for _ in range(rng.randint(1, 4))]
        image_dir = top_dir / f"image{len(made)}"
        try:
            roots = layer_trees(image_dir, *layers)
        except LayerError:  # e.g. a file below this layer's own symlink: the unpacker refuses the layer
            subprocess.run(["rm", "-rf", str(image_dir)], check=True)
            continue
        made.append(roots)
    return made


def _ours(roots, path):
    try:
        entry = locate(roots, path)
    except OSError as err:
        return f"errno {err.errno}"
    if entry is None:
        return "absent"
    if stat.S_ISDIR(entry[2].st_mode):
        return "directory"
    return read(roots, path)


def _naive(roots, path):
    for root in roots:
        try:
            with open(os.path.join(root, path.lstrip("/")), "rb") as opened:
                return opened.read()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except IsADirectoryError:
            return "directory"
        except OSError as err:
            return f"errno {err.errno}"
    return "absent"


KERNEL_SIDE = textwrap.dedent("""
    import errno, os, stat, subprocess, sys
    images, paths = eval(sys.stdin.read())
    empty = f"{sys.argv[1]}/empty"  # overlayfs wants two lower layers when it has no upper one
    os.mkdir(empty)
    for index, roots in enumerate(images):
        merged = f"{sys.argv[1]}/merged{index}"
        os.mkdir(merged)
        lowerdir = ":".join([*roots, empty])
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"userxattr,lowerdir={lowerdir}", merged],
                       check=True)
    results = []
    for index in range(len(images)):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            os.chroot(f"{sys.argv[1]}/merged{index}")
            seen = {}
            for path in paths:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                except (FileNotFoundError, NotADirectoryError):
                    seen[path] = "absent"
                    continue
                except OSError as err:
                    seen[path] = f"errno {err.errno}"
                    continue
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    seen[path] = "directory"
                else:
                    seen[path] = os.read(fd, 1 << 20)
                os.close(fd)
            os.write(write_end, repr(seen).encode())
            os._exit(0)
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 1 << 16):
            chunks.append(chunk)
        os.close(read_end)
        os.waitpid(pid, 0)
        results.append(eval(b"".join(chunks).decode()))
    print(repr(results))
""")


@pytest.mark.needs_userns_overlay
def test_the_resolver_sees_what_overlayfs_shows_after_chroot(tmp_path):
    made = _random_images(tmp_path / "images", 120, seed=11)
    every = ["/" + "/".join(parts) for depth in (1, 2, 3) for parts in itertools.product(NAMES, repeat=depth)]
    paths = every + ["/", "/a/../etc/passwd", "/../../b/./a", "/etc/passwd/.."]
    (tmp_path / "mnt").mkdir()
    kernel = subprocess.run(["unshare", "-Urm", sys.executable, "-c", KERNEL_SIDE, str(tmp_path / "mnt")],
                            input=repr((made, paths)), capture_output=True, text=True, timeout=300)
    assert kernel.returncode == 0, kernel.stderr
    seen_by_kernel = eval(kernel.stdout)
    differences = []
    for roots, seen in zip(made, seen_by_kernel):
        for path in paths:
            ours = _ours(roots, path)
            if ours != seen[path]:
                differences.append((roots[0].rsplit("/", 2)[1], path, ours, seen[path]))
    assert not differences, differences[:10]
    # The sample is worth something: files found, symlink loops, and many paths where a plain
    # open() in the topmost layer tree that has the path (what --user did before) is wrong.
    naive_wrong = sum(1 for roots, seen in zip(made, seen_by_kernel) for path in paths
                      if _naive(roots, path) != seen[path])
    found = sum(1 for seen in seen_by_kernel for value in seen.values() if isinstance(value, bytes))
    loops = sum(1 for seen in seen_by_kernel for value in seen.values() if value == "errno 40")
    assert naive_wrong > 200 and found > 100 and loops > 50, (naive_wrong, found, loops)

