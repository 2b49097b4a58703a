"""Many toolbox commands in one environment, fast: `python -m tests.support.forkrun SPEC` imports
toolbox's CLI once, then forks a child per command line, each ending as `python -m toolbox`
would (the exit status of `entry.main`, or a traceback and 1 for an exception that escapes it).

Starting the interpreter and importing typer costs ~0.25 s a command, which a walk of every
command under every hostile environment pays hundreds of times; a fork costs milliseconds. What
the commands themselves import, they import in the child, under the hostile environment. A line
whose first word is a path (a shim) is exec'd as it is.

SPEC is a JSON file: {"lines": [[word, ...], ...], "delete_cwd": bool, "scratch": dir,
"parallel": n}. With delete_cwd, each child makes a directory in `scratch`, enters it and
removes it before the command starts. Prints a JSON list of [status, stdout, stderr].
"""

import json
import os
import sys
import tempfile
import traceback


def _child(line, delete_cwd, scratch, out_path, err_path):
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, out_path), (2, err_path)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    if delete_cwd:
        gone = tempfile.mkdtemp(dir=scratch)
        os.chdir(gone)
        os.rmdir(gone)
    if line[0].startswith("/"):
        os.execv(line[0], line)
    from toolbox import entry

    try:
        code = entry.main(line)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 — what the interpreter would print
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code if isinstance(code, int) else 1)


def main(spec_path):
    with open(spec_path) as file:
        spec = json.load(file)
    import toolbox.cli.app  # noqa: F401  (warm: every `toolbox` command but run loads it)

    scratch = spec["scratch"]
    results = [None] * len(spec["lines"])
    running = {}
    pending = list(enumerate(spec["lines"]))
    while pending or running:
        while pending and len(running) < spec.get("parallel", 4):
            index, line = pending.pop(0)
            out_path, err_path = (os.path.join(scratch, f"{index}.{name}") for name in ("out", "err"))
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                try:
                    _child(line, spec["delete_cwd"], scratch, out_path, err_path)
                finally:
                    os._exit(99)
            running[pid] = (index, out_path, err_path)
        pid, status = os.wait()
        index, out_path, err_path = running.pop(pid)
        outputs = []
        for path in (out_path, err_path):
            with open(path, encoding="utf-8", errors="replace") as file:
                outputs.append(file.read())
        results[index] = [os.waitstatus_to_exitcode(status), *outputs]
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
