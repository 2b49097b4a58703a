"""Stamps: what identifies one version of a file, so that a plan made from a file can tell
later whether it is still that file. Standard library only: the launch path compares them."""

import os


def stamp_of(st):
    """What identifies one version of a file: a rename over it changes the inode, a write the
    size, mtime or ctime, a chown or chmod the ctime."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stamp(path):
    """The stamp of the file at `path` (links followed), None when there is none."""
    try:
        return stamp_of(os.stat(path))
    except OSError:
        return None
