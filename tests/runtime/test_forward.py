"""The built-in port forwarder (runtime/forward.py) on its own: its loop runs here, in one network
namespace, against real sockets (the service's side is a server of this test's)."""

import select
import socket
import threading

import pytest

from toolbox.errors import ServiceError
from toolbox.runtime.forward import DEFAULT_HOST_IP, Forwarder, Port, parse_port


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Running:
    """A forwarder attached to a poller and served by a thread until stopped."""

    def __init__(self, ports):
        self.forwarder = Forwarder(ports)
        self.poller = select.poll()
        self.stop_read, self.stop_write = socket.socketpair()
        self.poller.register(self.stop_read.fileno(), select.POLLIN)
        self.forwarder.attach(self.poller)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            for fd, events in self.poller.poll():
                if fd == self.stop_read.fileno():
                    return
                self.forwarder.handle(fd, events)

    def stop(self):
        self.stop_write.send(b"x")
        self.thread.join(10)
        self.forwarder.close()


@pytest.fixture
def echo_server():
    """A TCP server on a free port that echoes each connection until the client shuts down."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn):
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


def test_ports_parse_as_docker_writes_them_with_a_loopback_default():
    assert str(parse_port("5433:5432")) == "127.0.0.1:5433->5432/tcp"
    assert DEFAULT_HOST_IP == "127.0.0.1"
    assert parse_port("0.0.0.0:80:8080/udp").values() == ("0.0.0.0", 80, 8080, "udp")
    assert parse_port("[::1]:8080:80").values() == ("::1", 8080, 80, "tcp")
    for bad in ("5432", "a:b", "1:2:3:4", "70000:1", "0:80", "8080:80/sctp", "999.1.1.1:80:80",
                "[::1]8080:80"):
        with pytest.raises(ValueError):
            parse_port(bad)


def test_tcp_is_copied_both_ways_with_backpressure_and_half_close(echo_server):
    host_port = free_port()
    running = Running([Port("127.0.0.1", host_port, echo_server)])
    try:
        data = bytes(range(256)) * 8192  # 2 MiB: more than any socket buffer holds
        with socket.create_connection(("127.0.0.1", host_port), timeout=10) as client:
            received = bytearray()
            reader = threading.Thread(target=lambda: _read_all(client, received))
            reader.start()
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)  # the server sees EOF, echoes the rest and closes
            reader.join(20)
            assert bytes(received) == data
        clients = [socket.create_connection(("127.0.0.1", host_port), timeout=10) for _ in range(5)]
        for index, client in enumerate(clients):
            client.sendall(f"client {index}\n".encode())
        assert [client.recv(100) for client in clients] == [f"client {i}\n".encode() for i in range(5)]
        for client in clients:
            client.close()
    finally:
        running.stop()


def _read_all(sock, into):
    while data := sock.recv(65536):
        into.extend(data)


def test_a_connection_to_a_port_nothing_listens_on_is_closed():
    host_port = free_port()
    running = Running([Port("127.0.0.1", host_port, free_port())])
    try:
        with socket.create_connection(("127.0.0.1", host_port), timeout=10) as client:
            assert client.recv(10) == b""
    finally:
        running.stop()


def test_udp_replies_go_back_to_each_client():
    service = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    service.bind(("127.0.0.1", 0))

    def echo():
        while True:
            try:
                data, address = service.recvfrom(65536)
            except OSError:
                return
            service.sendto(data.upper(), address)

    threading.Thread(target=echo, daemon=True).start()
    host_port = free_port(socket.SOCK_DGRAM)
    running = Running([Port("127.0.0.1", host_port, service.getsockname()[1], "udp")])
    try:
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        for index, client in enumerate(clients):
            client.settimeout(10)
            client.sendto(f"hello {index}".encode(), ("127.0.0.1", host_port))
        assert [client.recvfrom(100)[0] for client in clients] == [f"HELLO {i}".encode() for i in range(3)]
        for client in clients:
            client.close()
    finally:
        running.stop()
        service.close()


def test_a_port_in_use_is_an_error_naming_it():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ServiceError, match=f"port 127.0.0.1:{port}/tcp is already in use"):
            Forwarder([Port("127.0.0.1", free_port(), 1), Port("127.0.0.1", port, 2)])
        Forwarder([Port("127.0.0.1", free_port(), 1)]).close()  # the first was released
