"""Directory trees as hostile layers or killed unpacks leave them."""

import os
import subprocess

DEPTH = 1200  # deeper than sys.getrecursionlimit(), and 2400 bytes of path: within PATH_MAX


# Levels that lose owner bits, as a layer or a killed unpack can leave directories.
STRIPPED_MODES = {1100: 0o000, 900: 0o500, 700: 0o300, 500: 0o100, 300: 0o600}


def make_deep_tree(top, depth=DEPTH, outside=None, strip=False):
    """top/d/d/.../d (`depth` directories) with a file in every 100th; with `outside`, a symlink
    to it; with `strip`, STRIPPED_MODES applied. Made one level at a time (the whole path may be
    too long for open(2)); only the directories to strip stay open, as one fd per level would
    pass the fd limit."""
    os.mkdir(top)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    kept = {}
    try:
        for level in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            if level % 100 == 0:
                file_fd = os.open("f", os.O_WRONLY | os.O_CREAT, 0o400, dir_fd=fd)
                os.write(file_fd, b"x" * 5000)
                os.close(file_fd)
            if level == 600 and outside is not None:
                os.symlink(outside, "escape", dir_fd=fd)
            if strip and level in STRIPPED_MODES:
                kept[level] = os.dup(fd)
        for level, fd_to_strip in kept.items():
            os.chmod(fd_to_strip, STRIPPED_MODES[level])
    finally:
        os.close(fd)
        for kept_fd in kept.values():
            os.close(kept_fd)


def remove_with_coreutils(path):
    """Remove what the code under test may have failed to: pytest's own clean-up of its temp
    directories recurses, and a deep tree left there would break it for every later run."""
    subprocess.run(["chmod", "-R", "u+rwx", str(path)], capture_output=True)
    subprocess.run(["rm", "-rf", str(path)], capture_output=True)
