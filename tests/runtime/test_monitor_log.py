"""The monitor's log (runtime/monitor.py) on a disk that refuses writes: lines are dropped, the
monitor (and so the service) goes on, and the log says what was lost once it can."""

import os

from toolbox.ops.services import _log_lines
from toolbox.runtime.monitor import Log


def test_a_full_disk_drops_lines_and_says_so_afterwards(tmp_path):
    path = tmp_path / "log"
    log = Log(str(path), 1 << 20)
    log.write("stdout", "F", b"first")
    real_fd = log.fd
    log.fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
    log.write("stdout", "F", b"lost one")
    log.write("stderr", "F", b"lost two")
    os.close(log.fd)
    log.fd = real_fd  # room again
    log.write("stdout", "F", b"after")
    log.close()
    lines = [(line.stream, line.text) for line in _log_lines(path.read_bytes())]
    assert lines == [("stdout", b"first"),
                     ("stderr", b"toolbox: 2 lines of output lost: No space left on device"),
                     ("stdout", b"after")]


def test_a_log_that_cannot_be_opened_is_no_error(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    log = Log(str(blocked / "missing-dir" / "log"), 1 << 20)
    log.write("stdout", "F", b"nowhere to go")
    log.close()
    assert log.dropped == 1
