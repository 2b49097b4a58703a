"""Another local user, for tests that attack toolbox the way a second account on the machine
would: owning files in a shared directory, renaming a file over one toolbox is reading.

scripts/test (as root) creates the account `toolbox-other`, and runs this file as that account:

    python3 -I tests/support/other_user.py SOCKET

It serves requests on a unix socket that only the test user's group may connect to: run a
command as the other user and wait for it, or start one in the background and stop it later.
The tests use `OtherUser(socket_path)`; the socket's path reaches them in
TOOLBOX_TEST_OTHER_SOCKET. Standard library only: it runs on the system's python3.
"""

import json
import os
import signal
import socket
import subprocess
import sys

SOCKET_ENV = "TOOLBOX_TEST_OTHER_SOCKET"


class OtherUser:
    """The test's handle on the other account."""

    def __init__(self, socket_path):
        self.socket_path = socket_path
        self.uid = self._ask({"op": "whoami"})["uid"]

    def _ask(self, request):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.socket_path)
            conn.sendall(json.dumps(request).encode() + b"\n")
            conn.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        answer = json.loads(data)
        if "error" in answer:
            raise RuntimeError(f"the other user could not do {request['op']}: {answer['error']}")
        return answer

    def run(self, argv, timeout=60, cwd="/", env=None):
        """Run `argv` as the other user, in `cwd`, with `env` as its whole environment (None:
        the server's own, which is nearly empty); (returncode, stdout, stderr)."""
        request = {"op": "run", "argv": list(map(str, argv)), "timeout": timeout, "cwd": str(cwd),
                   "env": {k: str(v) for k, v in env.items()} if env is not None else None}
        answer = self._ask(request)
        return answer["returncode"], answer["stdout"], answer["stderr"]

    def check(self, argv):
        code, out, err = self.run(argv)
        if code != 0:
            raise RuntimeError(f"{argv} as the other user exited {code}: {err}")
        return out

    def python(self, code, *args):
        """Run a Python snippet as the other user (sys.argv[1:] are `args`)."""
        return self.check(["/usr/bin/python3", "-I", "-c", code, *args])

    def spawn(self, argv):
        """Start `argv` in the background as the other user; returns its pid, for stop()."""
        return self._ask({"op": "spawn", "argv": list(map(str, argv))})["pid"]

    def stop(self, pid):
        """Stop a spawned process; returns what it wrote on stdout (e.g. how many swaps)."""
        return self._ask({"op": "stop", "pid": pid})["stdout"]


# -- the server, run as the other user ----------------------------------------------------------
def serve(path, watched=None):
    """Serve until the parent, or the process `watched` (scripts/test's pid: the parent is
    runuser, which outlives a killed scripts/test), is gone."""
    spawned = {}
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o007)  # the test user's group (the directory's, setgid) may connect
    server.bind(path)
    os.umask(old_umask)
    server.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    parent = os.getppid()
    server.settimeout(1.0)  # to notice that scripts/test is gone (killed, say), and leave too
    try:
        while os.getppid() == parent and (watched is None or _alive(watched)):
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            conn.settimeout(None)
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                try:
                    answer = _handle(json.loads(data), spawned)
                except Exception as err:  # reported to the test, which fails with it
                    answer = {"error": f"{type(err).__name__}: {err}"}
                conn.sendall(json.dumps(answer).encode())
    finally:
        for process in spawned.values():
            process.kill()
        os.unlink(path)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's (root's): it is there
        return True
    return True


def _handle(request, spawned):
    op = request["op"]
    if op == "whoami":
        return {"uid": os.getuid()}
    if op == "run":
        done = subprocess.run(request["argv"], capture_output=True, text=True,
                              timeout=request.get("timeout", 60), cwd=request.get("cwd") or "/",
                              env=request.get("env"), stdin=subprocess.DEVNULL)
        return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    if op == "spawn":
        process = subprocess.Popen(request["argv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd="/")
        spawned[process.pid] = process
        return {"pid": process.pid}
    if op == "stop":
        process = spawned.pop(request["pid"])
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        if process.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"{request['pid']} exited {process.returncode}: {err[-2000:]}")
        return {"stdout": out}
    raise ValueError(f"unknown op {op!r}")


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
