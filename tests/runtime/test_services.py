"""Background services as an ordinary user: `toolbox run -d` under a monitor (runtime/monitor.py),
`ps`, `logs`, `stop`, `start`, `restart`, `rm`, on busybox images built here; real namespaces,
real processes, real signals."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import images
from tests.support.push import push_raw

pytestmark = pytest.mark.needs_userns_overlay

# A service that counts its starts in its writable layer, says so, and stops on SIGTERM saying bye.
COUNTING = ('trap "echo bye; exit 3" TERM; n=$(( $(cat /etc/starts 2>/dev/null || echo 0) + 1 )); '
            'echo $n > /etc/starts; echo "start $n"; echo "to stderr" >&2; '
            'while true; do sleep 0.05; done')


def toolbox_command(toolbox, *args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "toolbox", *args], env=dict(toolbox.env, **(env or {})),
                          capture_output=True, text=True, cwd=toolbox.root, timeout=timeout)


def start_service(toolbox, *args, env=None):
    started = toolbox_command(toolbox, "run", "-d", *args, env=env)
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def listed(toolbox, name):
    everything = json.loads(toolbox_command(toolbox, "ps", "-a", "--json").stdout)
    return next(c for c in everything if c["name"] == name)


def state_of(toolbox, name):
    path = os.path.join(toolbox.layout.containers_dir, name, "state")
    with open(path) as file:
        return dict(line.split("=", 1) for line in file.read().splitlines())


def gone(pid):
    """The process has ended (a zombie not yet reaped by whoever adopted it counts)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_for(predicate, timeout=20.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def echoes(port, data=b"ping\n"):
    """Whether an echo server answers `data` on 127.0.0.1:`port` (it sees the client's EOF)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
            return client.recv(len(data) + 1) == data
    except OSError:
        return False


def logged(toolbox, name, *args):
    return toolbox_command(toolbox, "logs", *args, name)


def test_a_service_runs_in_the_background_in_its_own_session_and_pid_namespace(toolbox, busybox):
    name = start_service(toolbox, "--name", "counter", busybox, "sh", "-c", COUNTING + "& ps; wait")
    assert name == "counter"
    service = listed(toolbox, "counter")
    assert service["status"] == "running" and service["kind"] == "service" and service["pid"]
    pid = service["pid"]
    with open(f"/proc/{pid}/status") as status:
        nspids = next(line for line in status if line.startswith("NSpid:")).split()[1:]
    assert len(nspids) == 2 and nspids[1] == "1"  # pid 1 of a pid namespace of its own
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    assert fields[4] == "0"  # no controlling terminal (tty_nr): a hangup cannot reach it
    assert os.getsid(pid) != os.getsid(0)
    monitor = int(state_of(toolbox, "counter")["monitor"])
    assert os.getsid(monitor) == os.getsid(pid) and os.getppid() != monitor
    wait_for(lambda: "PID" in logged(toolbox, "counter").stdout, what="ps in the log")
    out = logged(toolbox, "counter")
    assert "start 1" in out.stdout and "to stderr" not in out.stdout.splitlines()
    assert out.stderr == "to stderr\n"
    processes = [int(line.split()[0]) for line in out.stdout.splitlines() if line.split()[:1] != []
                 and line.split()[0].isdigit()]
    assert 1 in processes and max(processes) < 100  # its own pids only
    assert toolbox_command(toolbox, "ps").stdout.splitlines()[1].split()[0] == "counter"
    stopped = toolbox_command(toolbox, "stop", "counter")
    assert stopped.returncode == 0 and stopped.stdout.strip() == "counter"
    assert listed(toolbox, "counter")["status"] == "exited (3)"
    assert gone(pid) and gone(monitor)
    assert "bye" in logged(toolbox, "counter").stdout
    assert "counter" not in toolbox_command(toolbox, "ps").stdout  # ps: running ones only


def test_start_keeps_the_writable_layer_and_the_log_and_restart_stops_first(toolbox, busybox):
    start_service(toolbox, "--name", "keep", busybox, "sh", "-c", COUNTING)
    wait_for(lambda: "start 1" in logged(toolbox, "keep").stdout)
    assert toolbox_command(toolbox, "stop", "keep").returncode == 0
    again = toolbox_command(toolbox, "start", "keep")
    assert again.returncode == 0 and again.stdout.strip() == "keep"
    wait_for(lambda: "start 2" in logged(toolbox, "keep").stdout)
    running = toolbox_command(toolbox, "start", "keep")
    assert running.returncode == 125 and "already running" in running.stderr
    assert toolbox_command(toolbox, "restart", "keep").returncode == 0
    wait_for(lambda: "start 3" in logged(toolbox, "keep").stdout)
    assert logged(toolbox, "keep").stdout.split("\n").count("bye") == 2
    assert toolbox_command(toolbox, "stop", "keep").returncode == 0
    assert toolbox_command(toolbox, "stop", "keep").returncode == 0  # stopping a stopped one: nothing to do


def test_stop_sends_the_image_stop_signal_and_kills_after_the_grace_time(toolbox, registry, busybox,
                                                                         tmp_path):
    built = images.build_image(images.busybox_spec(extra_config={"StopSignal": "SIGINT"},
                                                   labels={"org.example.scenario": "stop-int"}))
    reference = f"{registry.host}/stop-int/{tmp_path.name}:1"
    push_raw(registry, reference.split("/", 1)[1].rsplit(":", 1)[0], "1", built)
    start_service(toolbox, "--name", "int", reference, "sh", "-c",
                  'trap "echo got INT; exit 0" INT; trap "echo got TERM; exit 1" TERM; '
                  'while true; do sleep 0.05; done')
    wait_for(lambda: listed(toolbox, "int")["running"])
    assert toolbox_command(toolbox, "stop", "int").returncode == 0
    assert listed(toolbox, "int")["status"] == "exited (0)" and "got INT" in logged(toolbox, "int").stdout
    # pid 1 without a handler ignores SIGTERM: SIGKILL after -t seconds
    start_service(toolbox, "--name", "stubborn", busybox, "sh", "-c", "while true; do sleep 0.05; done")
    began = time.monotonic()
    assert toolbox_command(toolbox, "stop", "-t", "1", "stubborn").returncode == 0
    assert time.monotonic() - began >= 1
    assert listed(toolbox, "stubborn")["status"] == "exited (137)"


def test_a_service_that_cannot_start_says_why_with_the_tool_exit_status(toolbox, busybox):
    missing = toolbox_command(toolbox, "run", "-d", "--name", "missing", "--entrypoint", "no-such-command",
                              busybox)
    assert missing.returncode == 127 and "command not found in the image: no-such-command" in missing.stderr
    assert listed(toolbox, "missing")["status"] == "exited (127)"
    not_a_dir = toolbox_command(toolbox, "run", "-d", "--no-cwd", "-w", "/etc/passwd", busybox, "true")
    assert not_a_dir.returncode == 125 and "chdir /etc/passwd" in not_a_dir.stderr
    assert "Traceback" not in missing.stderr + not_a_dir.stderr


def test_rm_refuses_a_running_service_and_rm_f_kills_it(toolbox, busybox):
    volume = toolbox_command(toolbox, "volume", "create", "kept")
    assert volume.returncode == 0, volume.stderr
    start_service(toolbox, "--name", "doomed", "-v", "kept:/data", busybox, "sh", "-c",
                  "echo data > /data/f; while true; do sleep 0.05; done")
    assert listed(toolbox, "doomed")["volumes"] == ["kept:/data"]
    refused = toolbox_command(toolbox, "rm", "doomed")
    assert refused.returncode == 125 and "rm -f doomed" in refused.stderr
    pid = listed(toolbox, "doomed")["pid"]
    assert toolbox_command(toolbox, "rm", "-f", "doomed").returncode == 0
    assert gone(pid)
    assert not os.path.exists(os.path.join(toolbox.layout.containers_dir, "doomed"))
    with open(os.path.join(toolbox.layout.volume_data("kept"), "f")) as file:  # volumes outlive rm
        assert file.read() == "data\n"


def test_rm_with_d_removes_the_container_when_the_service_ends(toolbox, busybox):
    name = start_service(toolbox, "--rm", busybox, "sh", "-c", "echo done")
    assert name.startswith("busybox-") and len(name) == len("busybox-") + 4
    wait_for(lambda: not os.path.exists(os.path.join(toolbox.layout.containers_dir, name)),
             what="the --rm container to go")


def test_names_are_unique_and_generated_ones_differ(toolbox, busybox):
    first = start_service(toolbox, "--name", "one", busybox, "sh", "-c", "while true; do sleep 0.05; done")
    taken = toolbox_command(toolbox, "run", "-d", "--name", "one", busybox, "true")
    assert taken.returncode == 125 and "'one' is running" in taken.stderr
    foreground = toolbox_command(toolbox, "run", "--name", "one", busybox, "true")
    assert foreground.returncode == 125
    generated = {start_service(toolbox, busybox, "true") for _ in range(3)}
    assert len(generated) == 3
    assert toolbox_command(toolbox, "rm", "-f", first).returncode == 0


def test_ps_stays_truthful_when_the_monitor_or_everything_is_killed(toolbox, busybox):
    start_service(toolbox, "--name", "db", busybox, "sh", "-c", COUNTING)
    wait_for(lambda: "start 1" in logged(toolbox, "db").stdout)
    state = state_of(toolbox, "db")
    os.kill(int(state["monitor"]), signal.SIGKILL)  # the monitor alone: the tool still runs
    time.sleep(0.2)
    assert listed(toolbox, "db")["status"] == "running"
    assert toolbox_command(toolbox, "stop", "db").returncode == 0
    assert listed(toolbox, "db")["status"] == "exited" and not listed(toolbox, "db")["running"]
    assert toolbox_command(toolbox, "start", "db").returncode == 0
    wait_for(lambda: "start 2" in logged(toolbox, "db").stdout)
    # a "reboot": everything killed at once, the runtime directory wiped
    state = state_of(toolbox, "db")
    for pid in (state["monitor"], state["pid"]):
        os.kill(int(pid), signal.SIGKILL)
    wait_for(lambda: not listed(toolbox, "db")["running"], what="ps to see it gone")
    assert listed(toolbox, "db")["pid"] is None
    assert toolbox_command(toolbox, "start", "db").returncode == 0
    wait_for(lambda: "start 3" in logged(toolbox, "db").stdout)  # its writable layer intact
    assert toolbox_command(toolbox, "rm", "-f", "db").returncode == 0


def concurrently(toolbox, *commands):
    """Run the toolbox `commands` at once; [(exit status, stderr)] in their order."""
    running = [subprocess.Popen([sys.executable, "-m", "toolbox", *command], env=toolbox.env,
                                cwd=toolbox.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for command in commands]
    return [(process.wait(timeout=60), process.stderr.read()) for process in running]


def test_concurrent_starts_stops_and_removals_of_one_name_one_wins(toolbox, busybox):
    start_service(toolbox, "--name", "race", busybox, "sh", "-c", "while true; do sleep 0.05; done")
    assert toolbox_command(toolbox, "stop", "-t", "0", "race").returncode == 0
    results = concurrently(toolbox, *[["start", "race"]] * 3)
    assert sorted(code for code, _ in results) == [0, 125, 125], results
    assert all("already running" in err for code, err in results if code)
    stops = concurrently(toolbox, *[["stop", "-t", "0", "race"]] * 3)  # each waits until it is gone
    assert [code for code, _ in stops] == [0, 0, 0] and not listed(toolbox, "race")["running"], stops
    removals = concurrently(toolbox, *[["rm", "race"]] * 3)
    assert sorted(code for code, _ in removals) == [0, 125, 125], removals
    assert all("no container named 'race'" in err or "is running" in err for code, err in removals if code)
    assert not os.path.exists(os.path.join(toolbox.layout.containers_dir, "race"))


def test_logs_tail_since_timestamps_follow_and_rotation(toolbox, busybox):
    start_service(toolbox, "--name", "talk", busybox, "sh", "-c",
                  'i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo "line $i"; done; printf "no newline"',
                  env={"TOOLBOX_LOG_MAX_BYTES": "4000"})
    wait_for(lambda: listed(toolbox, "talk")["status"] == "exited (0)")
    log_dir = os.path.join(toolbox.layout.containers_dir, "talk")
    assert os.path.getsize(os.path.join(log_dir, "log")) <= 4000
    assert os.path.exists(os.path.join(log_dir, "log.1"))
    tail = logged(toolbox, "talk", "--tail", "3").stdout
    assert tail == "line 299\nline 300\nno newline"
    stamped = logged(toolbox, "talk", "-t", "--tail", "1").stdout
    assert stamped.startswith("20") and stamped[:30].endswith("Z")
    assert stamped.split(" ", 1)[1] == "no newline"
    assert logged(toolbox, "talk", "--since", "1h", "--tail", "1").stdout == "no newline"
    assert logged(toolbox, "talk", "--since", str(time.time() + 60)).stdout == ""
    bad = logged(toolbox, "talk", "--since", "yesterday")
    assert bad.returncode == 125 and "--since" in bad.stderr
    assert toolbox_command(toolbox, "run", "--name", "fg", busybox, "true").returncode == 0
    foreground = logged(toolbox, "fg")
    assert foreground.returncode == 125 and "runs in the foreground" in foreground.stderr
    follow = toolbox_command(toolbox, "logs", "-f", "--tail", "2", "talk")  # not running: -f ends at once
    assert follow.returncode == 0 and follow.stdout == "line 300\nno newline"
    head = subprocess.run(f'"{sys.executable}" -m toolbox logs talk | head -1', shell=True, env=toolbox.env,
                          cwd=toolbox.root, capture_output=True, text=True, timeout=60)
    assert head.stdout.startswith("line ") and "Traceback" not in head.stderr


def test_logs_follow_prints_lines_as_they_come(toolbox, busybox):
    start_service(toolbox, "--name", "slow", busybox, "sh", "-c",
                  "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; "
                  "echo second; sleep 0.3; echo third")
    follower = subprocess.Popen([sys.executable, "-m", "toolbox", "logs", "-f", "slow"], env=toolbox.env,
                                cwd=toolbox.root, stdout=subprocess.PIPE, text=True)
    assert follower.stdout.readline() == "first\n"
    pid = listed(toolbox, "slow")["pid"]
    with open(f"/proc/{pid}/root/tmp/go", "w"):
        pass
    assert follower.stdout.readline() == "second\n"
    assert follower.stdout.readline() == "third\n"
    assert follower.wait(timeout=30) == 0
    assert listed(toolbox, "slow")["status"] == "exited (0)"


def test_exec_joins_the_running_service(toolbox, busybox):
    start_service(toolbox, "--name", "box", "-e", "FROM_RUN=service", "--user", "root", "--no-cwd",
                  "-w", "/srv", busybox, "sh", "-c",
                  "echo kept > /tmp/state; while true; do sleep 0.05; done")
    wait_for(lambda: "kept" in toolbox_command(toolbox, "exec", "box", "cat", "/tmp/state").stdout)
    seen = toolbox_command(toolbox, "exec", "-e", "EXTRA=1", "box", "sh", "-c",
                           'echo "$FROM_RUN $EXTRA $(pwd) $(id -u)"; ps -o pid,args')
    assert seen.returncode == 0, seen.stderr
    first, *processes = seen.stdout.splitlines()
    assert first == "service 1 /srv 0"
    assert any(line.split()[:4] == ["1", "sh", "-c", "echo"] for line in processes[1:])  # the service: pid 1
    piped = subprocess.run([sys.executable, "-m", "toolbox", "exec", "-i", "box", "sh", "-c", "cat; exit 5"],
                           input=b"through stdin\n", env=toolbox.env, capture_output=True, cwd=toolbox.root,
                           timeout=60)
    assert piped.returncode == 5 and piped.stdout == b"through stdin\n"
    assert toolbox_command(toolbox, "exec", "-w", "/", "-u", "0:0", "box", "pwd").stdout == "/\n"
    unmapped = toolbox_command(toolbox, "exec", "-u", "nobody", "box", "true")
    assert unmapped.returncode == 125 and "not mapped in this service" in unmapped.stderr
    missing = toolbox_command(toolbox, "exec", "box", "no-such-command")
    assert missing.returncode == 127 and "command not found" in missing.stderr
    killed = subprocess.run(f'"{sys.executable}" -m toolbox exec box sh -c "kill -TERM \\$\\$"; echo $?',
                            shell=True, env=toolbox.env, capture_output=True, text=True, cwd=toolbox.root,
                            timeout=60)
    assert killed.stdout.strip() == "143"
    assert toolbox_command(toolbox, "stop", "-t", "0", "box").returncode == 0
    stopped = toolbox_command(toolbox, "exec", "box", "true")
    assert stopped.returncode == 125 and "box is not running" in stopped.stderr
    unknown = toolbox_command(toolbox, "exec", "nobody-here", "true")
    assert unknown.returncode == 125 and "no service named" in unknown.stderr
    assert toolbox_command(toolbox, "exec", "--help").stdout.startswith("usage: toolbox exec")


@pytest.mark.needs_subids
def test_a_service_runs_as_the_image_user_with_subordinate_ids_and_its_files_are_removable(toolbox,
                                                                                             busybox):
    """As the official database images do: start as root, chown the data to 999, switch to it."""
    try:
        start_service(toolbox, "--name", "db", "-v", "dbdata:/data", busybox, "sh", "-c",
                      "mkdir -p /data/pg /var/lib/db && chown -R 999:999 /data /var/lib/db && "
                      "chmod 700 /data /data/pg /var/lib/db && touch /var/lib/db/f && id -u && "
                      "while true; do sleep 0.05; done")
        wait_for(lambda: logged(toolbox, "db").stdout == "0\n", what="the service to run as root")
        # the current directory it was started in is yours: not 999's to enter
        refused = toolbox_command(toolbox, "exec", "-u", "999", "db", "id")
        assert refused.returncode == 125 and "cannot run id in the service: chdir" in refused.stderr
        as_999 = toolbox_command(toolbox, "exec", "-u", "999", "-w", "/", "db", "id")
        assert as_999.stdout.startswith("uid=999 gid=999 groups=999"), as_999.stderr
        outside = os.stat(toolbox.layout.volume_data("dbdata"))  # the volume itself, as postgres's PGDATA
        assert outside.st_uid not in (os.getuid(), 999)  # one of the user's subordinate ids
        listed_volumes = toolbox_command(toolbox, "volume", "ls")
        assert listed_volumes.returncode == 0 and "dbdata" in listed_volumes.stdout, listed_volumes.stderr
        assert toolbox_command(toolbox, "rm", "-f", "db").returncode == 0
        assert not os.path.exists(os.path.join(toolbox.layout.containers_dir, "db"))
        removed = toolbox_command(toolbox, "volume", "rm", "dbdata")
        assert removed.returncode == 0, removed.stderr
        assert not os.path.exists(os.path.dirname(toolbox.layout.volume_data("dbdata")))
    finally:  # files of subordinate ids in a failed test's tmp_path: pytest could not remove them
        toolbox_command(toolbox, "rm", "-f", "db")
        toolbox_command(toolbox, "volume", "rm", "dbdata")


def test_published_ports_reach_the_service_in_its_own_network(toolbox, busybox):
    import socket

    from tests.runtime.test_forward import free_port

    ports = [free_port(), free_port()]
    for name, port in zip(("echo1", "echo2"), ports):  # both listen on 7000 inside
        start_service(toolbox, "--name", name, "-p", f"{port}:7000", busybox, "busybox", "nc", "-ll", "-p",
                      "7000", "-e", "/bin/cat")
    assert listed(toolbox, "echo1")["ports"] == [f"127.0.0.1:{ports[0]}->7000/tcp"]
    for port in ports:
        payload = f"through {port}\n".encode() * 1000

        def connected():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                    client.sendall(payload)
                    client.shutdown(socket.SHUT_WR)
                    received = b""
                    while data := client.recv(65536):
                        received += data
                    return received == payload
            except OSError:
                return False

        wait_for(connected, what=f"an echo through port {port}")
    taken = toolbox_command(toolbox, "run", "-d", "-p", f"{ports[0]}:7000", busybox, "true")
    assert taken.returncode == 125 and f"port 127.0.0.1:{ports[0]}/tcp is already in use" in taken.stderr
    foreground = toolbox_command(toolbox, "run", "-p", "8080:80", busybox, "true")
    assert foreground.returncode == 125 and "-p publishes the ports of a service (-d)" in foreground.stderr
    no_way_out = toolbox_command(toolbox, "exec", "echo1", "cat", "/proc/net/dev")
    assert [line.split(":")[0].strip() for line in no_way_out.stdout.splitlines()[2:]] == ["lo"]
    for name in ("echo1", "echo2"):
        assert toolbox_command(toolbox, "rm", "-f", name).returncode == 0


def test_shm_size_and_inspect(toolbox, busybox):
    start_service(toolbox, "--name", "shm", busybox, "sh", "-c", "while true; do sleep 0.05; done")
    size = toolbox_command(toolbox, "exec", "shm", "sh", "-c", "df -k /dev/shm | tail -1")
    assert size.stdout.split()[1] == str(64 * 1024), size.stdout  # Docker's 64 MiB
    foreground = subprocess.run([sys.executable, "-m", "toolbox", "run", "--shm-size", "1m", busybox, "sh",
                                 "-c", "df -k /dev/shm | tail -1"], env=toolbox.env, cwd=toolbox.root,
                                capture_output=True, text=True, timeout=60)
    assert foreground.stdout.split()[1] == "1024", foreground.stderr
    bad = toolbox_command(toolbox, "run", "--shm-size", "lots", busybox, "true")
    assert bad.returncode == 125 and "invalid --shm-size 'lots'" in bad.stderr
    shown = json.loads(toolbox_command(toolbox, "inspect", "--json", "shm").stdout)
    assert shown["name"] == "shm" and shown["status"] == "running" and shown["network"] == "host"
    assert shown["stop_signal"] == "SIGTERM" and shown["log"].endswith("/containers/shm/log")
    text = toolbox_command(toolbox, "inspect", "shm").stdout
    assert "Status:      running" in text and "Command:" in text
    assert toolbox_command(toolbox, "rm", "-f", "shm").returncode == 0


def test_a_service_outlives_the_terminal_it_was_started_from(toolbox, busybox):
    """Started from a shell on a terminal that then hangs up (the terminal window closed)."""
    import pty

    pid, master = pty.fork()
    if pid == 0:  # a session leader on the new terminal, as a login shell is
        os.execve("/bin/sh", ["sh", "-c", f'"{sys.executable}" -m toolbox run -d --name hup {busybox} '
                                          'sh -c "while true; do sleep 0.05; done"; sleep 30'], toolbox.env)
    try:
        wait_for(lambda: os.path.exists(os.path.join(toolbox.layout.containers_dir, "hup", "state"))
                 and listed(toolbox, "hup")["running"], what="the service to start")
    finally:
        os.close(master)  # the hangup: SIGHUP to the terminal's session
        os.waitpid(pid, 0)
    time.sleep(0.3)
    assert listed(toolbox, "hup")["running"]
    assert toolbox_command(toolbox, "rm", "-f", "hup").returncode == 0


def test_a_service_that_closes_its_output_keeps_its_ports_and_its_status(toolbox, busybox):
    """Servers that log to files close stdout and stderr: the monitor goes on forwarding."""
    from tests.runtime.test_forward import free_port

    port = free_port()
    start_service(toolbox, "--name", "quiet", "-p", f"{port}:7000", busybox, "sh", "-c",
                  "echo before; exec >/dev/null 2>&1; busybox nc -ll -p 7000 -e /bin/cat")

    wait_for(lambda: "before" in logged(toolbox, "quiet").stdout)
    time.sleep(0.3)
    wait_for(lambda: echoes(port), what="an echo after the service closed its output")
    assert toolbox_command(toolbox, "stop", "-t", "1", "quiet").returncode == 0
    assert listed(toolbox, "quiet")["status"] == "exited (137)"
