"""Published ports (`toolbox run -d -p [IP:]HOST:CONTAINER[/tcp|/udp]`) without a network helper:
the service gets a network namespace of its own (only loopback, so no outbound network), and
its monitor (monitor.py) forwards what arrives on the host's port to the service's port.

The monitor binds the host's sockets before it leaves the host's network namespace, and
opens each connection to the service after: a socket stays in the namespace it was made in,
so one process holds both ends. TCP connections are copied both ways with backpressure (a side
that cannot take more stops the other being read); UDP datagrams go through one socket per
client address, and replies come back from the host's port. Standard library only.
"""

import errno
import select
import socket

from toolbox.errors import ServiceError

DEFAULT_HOST_IP = "127.0.0.1"  # not Docker's 0.0.0.0: a dev database should not face the LAN
PROTOCOLS = ("tcp", "udp")
CHUNK = 65536
UDP_PEERS = 256  # clients remembered per UDP port; the oldest is dropped past this


class Port:
    """One published port: HOST_IP:HOST_PORT on the host to CONTAINER_PORT in the service."""

    __slots__ = ("host_ip", "host_port", "container_port", "protocol")

    def __init__(self, host_ip: str, host_port: int, container_port: int, protocol: str = "tcp") -> None:
        self.host_ip = host_ip
        self.host_port = host_port
        self.container_port = container_port
        self.protocol = protocol

    def values(self) -> tuple[str, int, int, str]:
        return self.host_ip, self.host_port, self.container_port, self.protocol

    def __str__(self) -> str:
        host = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{host}:{self.host_port}->{self.container_port}/{self.protocol}"


def parse_port(text: str) -> Port:
    """-p's value: [IP:]HOST:CONTAINER[/tcp|/udp]; an IPv6 address in brackets. ValueError
    saying what is wrong."""
    spec, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{protocol!r} is not tcp or udp")
    host_ip = DEFAULT_HOST_IP
    if spec.startswith("["):
        address, bracket, spec = spec[1:].partition("]")
        if not bracket or not spec.startswith(":"):
            raise ValueError("write an IPv6 address as [ADDRESS]:HOST:CONTAINER")
        host_ip, spec = address, spec[1:]
    parts = spec.split(":")
    if len(parts) == 3 and not spec.startswith("["):
        host_ip = parts.pop(0)
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise ValueError("use HOST:CONTAINER or IP:HOST:CONTAINER, ports as numbers (5433:5432)")
    host_port, container_port = int(parts[0]), int(parts[1])
    if not (0 < host_port < 65536 and 0 < container_port < 65536):
        raise ValueError("ports go from 1 to 65535")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host_ip else socket.AF_INET, host_ip)
    except OSError:
        raise ValueError(f"{host_ip!r} is not an IP address") from None
    return Port(host_ip, host_port, container_port, protocol)


def bind_host_socket(port: Port) -> socket.socket:
    """The host's socket for `port`, bound (and listening, for TCP). OSError as bind(2) says:
    EADDRINUSE for a port taken, EACCES for one below the unprivileged range."""
    family = socket.AF_INET6 if ":" in port.host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if port.protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT, as servers do
        sock.bind((port.host_ip, port.host_port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def port_error(port: Port, err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return f"port {port.host_ip}:{port.host_port}/{port.protocol} is already in use"
    if err.errno == errno.EACCES:
        return f"port {port.host_port} is below {_unprivileged_start()}: only root may listen there"
    return f"port {port.host_ip}:{port.host_port}/{port.protocol}: {err.strerror}"


def _unprivileged_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as file:
            return int(file.read())
    except (OSError, ValueError):
        return 1024


class Forwarder:
    """The monitor's port forwarding: made (sockets bound) in the host's network namespace,
    then run from the monitor's poll loop in the service's."""

    def __init__(self, ports: list[Port]) -> None:
        self.poller = None
        self.handlers = {}  # fd -> callable(events)
        self.listeners = []
        for port in ports:
            try:
                self.listeners.append((bind_host_socket(port), port))
            except OSError as err:
                self.close()
                hint = f"publish it on another host port: -p OTHER:{port.container_port}"
                raise ServiceError(port_error(port, err), hint=hint) from None

    def attach(self, poller: "select.poll") -> None:
        """Serve the ports from `poller`'s loop (the monitor's): handle() each event it reports
        for an fd this forwarder registered."""
        self.poller = poller
        for sock, port in self.listeners:
            if port.protocol == "tcp":
                self._watch(sock.fileno(), select.POLLIN, lambda events, s=sock, p=port: self._accept(s, p))
            else:
                self._watch(sock.fileno(), select.POLLIN, _UdpPort(self, sock, port).on_datagram)

    def handle(self, fd: int, events: int) -> bool:
        handler = self.handlers.get(fd)
        if handler is None:
            return False
        handler(events)
        return True

    def close(self) -> None:
        for sock, _ in self.listeners:
            sock.close()
        for fd in list(self.handlers):
            self._forget(fd)

    def _watch(self, fd, events, handler):
        self.handlers[fd] = handler
        self.poller.register(fd, events)

    def _forget(self, fd):
        if self.handlers.pop(fd, None) is not None and self.poller is not None:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass

    def _accept(self, listener, port):
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        try:
            inner = _connect_inside(port.container_port, socket.SOCK_STREAM)
        except OSError:
            client.close()  # nothing listens there (yet): the client sees its connection closed
            return
        _TcpLink(self, client, inner)


def _connect_inside(container_port: int, kind: int) -> socket.socket:
    """A socket connected to the service's port on its loopback (this process is in its
    network namespace now); IPv6's when it listens only there."""
    refused = None
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, kind)
        try:
            sock.connect((address, container_port))
        except OSError as err:
            sock.close()
            refused = err
            continue
        sock.setblocking(False)
        return sock
    raise refused


class _TcpLink:
    """One forwarded connection: bytes copied each way; a side's EOF is passed on as a
    shutdown of the other's writing; both closed when both ways are done."""

    def __init__(self, forwarder: Forwarder, client: socket.socket, inner: socket.socket) -> None:
        self.forwarder = forwarder
        self.poll_in, self.poll_out = select.POLLIN, select.POLLOUT
        client.setblocking(False)
        self.sockets = (client, inner)
        self.pending = {client.fileno(): b"", inner.fileno(): b""}  # bytes waiting to be sent to that fd
        self.done = set()  # fds whose reading ended
        self.shut = set()  # fds shut down for writing
        for sock in self.sockets:
            forwarder._watch(sock.fileno(), self.poll_in, lambda events, s=sock: self._event(s, events))

    def _other(self, sock):
        return self.sockets[1] if sock is self.sockets[0] else self.sockets[0]

    def _event(self, sock, events):
        try:
            if events & self.poll_out:
                self._flush(sock)
            if events & ~self.poll_out:
                self._read(sock)
        except OSError:
            self._close()
            return
        if len(self.done) == 2 and not any(self.pending.values()):
            self._close()

    def _read(self, sock):
        other = self._other(sock)
        data = sock.recv(CHUNK)
        if not data:
            self.done.add(sock.fileno())
            self._interest(sock)
            if not self.pending[other.fileno()]:
                self._shut(other)
            return
        self.pending[other.fileno()] += data
        self._flush(other)

    def _flush(self, sock):
        fd = sock.fileno()
        data = self.pending[fd]
        if data:
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            self.pending[fd] = data[sent:]
        if not self.pending[fd] and self._other(sock).fileno() in self.done:
            self._shut(sock)
        self._interest(sock)
        self._interest(self._other(sock))

    def _shut(self, sock):
        if sock.fileno() not in self.shut:
            self.shut.add(sock.fileno())
            sock.shutdown(socket.SHUT_WR)

    def _interest(self, sock):
        """Read a side only while the other has nothing waiting; wait for room to write only
        while this side has something waiting."""
        fd = sock.fileno()
        events = 0 if fd in self.done or self.pending[self._other(sock).fileno()] else self.poll_in
        events |= self.poll_out if self.pending[fd] else 0
        self.forwarder.poller.modify(fd, events)

    def _close(self):
        for sock in self.sockets:
            self.forwarder._forget(sock.fileno())
            sock.close()


class _UdpPort:
    """A published UDP port: each client address gets its own socket to the service, whose
    replies go back to that address from the host's port."""

    def __init__(self, forwarder: Forwarder, host_socket: socket.socket, port: Port) -> None:
        self.forwarder = forwarder
        self.host_socket = host_socket
        self.port = port
        self.peers = {}  # client address -> socket to the service

    def on_datagram(self, events):
        try:
            data, address = self.host_socket.recvfrom(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        inner = self.peers.get(address)
        if inner is None:
            if len(self.peers) >= UDP_PEERS:
                oldest = next(iter(self.peers))
                self._drop(oldest)
            try:
                inner = _connect_inside(self.port.container_port, socket.SOCK_DGRAM)
            except OSError:
                return
            self.peers[address] = inner
            self.forwarder._watch(inner.fileno(), select.POLLIN, lambda ev, a=address: self._reply(a))
        try:
            inner.send(data)
        except OSError:
            self._drop(address)

    def _reply(self, address):
        inner = self.peers.get(address)
        if inner is None:
            return
        try:
            self.host_socket.sendto(inner.recv(CHUNK), address)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(address)  # ECONNREFUSED: nothing listens on the service's port

    def _drop(self, address):
        inner = self.peers.pop(address)
        self.forwarder._forget(inner.fileno())
        inner.close()

