"""Who the tool runs as inside the container. Standard library only: the launch path."""

import os


class User:
    """Who the tool runs as inside. Outside it is always the invoking user: the single id map
    sends `uid`/`gid` to the user's own ids, so files written keep the user's ownership."""

    __slots__ = ("uid", "gid", "name", "home")

    def __init__(self, uid, gid, name, home):
        self.uid = uid
        self.gid = gid
        self.name = name
        self.home = home


def own_user():
    """Who runs inside without --user: you, by your own ids and name."""
    name = user_name()
    return User(os.getuid(), os.getgid(), name, f"/home/{name}")


def user_name():
    name = os.environ.get("USER") or os.environ.get("LOGNAME")
    if name and ":" not in name and "\n" not in name:
        return name
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "user"
