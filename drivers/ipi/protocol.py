"""The i-PI socket protocol, client side (atomic units: bohr, hartree).

Messages are 12-byte headers. i-PI asks STATUS (we answer NEEDINIT, READY or HAVEDATA), sends INIT (request
id, parameter string), POSDATA (cell h with lattice vectors as columns, its inverse, atom count, positions;
newer i-PI sends GETFORCE right behind it), and we answer GETFORCE with FORCEREADY, energy, atom count,
forces, virial and a JSON extras string. Answering NEEDINIT after every force makes i-PI send INIT, and with
it the request id, before every POSDATA: that is how the client learns which bead it is given.
"""
from __future__ import annotations

import errno
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from aptnn.errors import ProtocolError  # noqa: F401 (defined in aptnn.errors, re-exported)

HDRLEN = 12
RETRY_ERRNO = (errno.ENOENT, errno.ECONNREFUSED, errno.EAGAIN, errno.ECONNRESET, errno.EHOSTUNREACH,
               errno.ENETUNREACH, errno.ETIMEDOUT)
SOCKET_PREFIX = "/tmp/ipi_"


def header(text: str) -> bytes:
    return text.upper().ljust(HDRLEN).encode()


@dataclass
class Request:
    """One force request: request id, cell (rows = lattice vectors, bohr), positions (N, 3) bohr."""

    rid: int
    cell: np.ndarray
    positions: np.ndarray




class Interrupted(Exception):
    """A wait for i-PI given up because ``give_up`` said so (a stop request): leave the socket loop."""


def parse_init(text: str) -> dict[str, str]:
    """The parameter string i-PI builds from ``<parameters>``: ``" key : value , key : value , "``."""
    out = {}
    for token in text.replace("{", "").replace("}", "").split(","):
        key, sep, value = token.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def connect(address: str, timeout: float = 60.0, give_up: Callable[[], bool] | None = None,
            poll_s: float = 0.2) -> socket.socket:
    """Connect to i-PI: ``host:port`` (inet) or a name (unix socket /tmp/ipi_<name>).

    Retries every ``poll_s`` seconds until ``timeout`` (s; a :class:`ProtocolError` naming the address), or
    until ``give_up()`` is true (:class:`Interrupted`: a signal asked the client to stop).
    """
    deadline = time.monotonic() + timeout
    while True:
        if give_up is not None and give_up():
            raise Interrupted()
        attempt = min(max(deadline - time.monotonic(), poll_s), 2.0)  # short: a signal is noticed soon
        sock = None
        try:
            if ":" in address:
                host, port = address.rsplit(":", 1)
                sock = socket.create_connection((host, int(port)), timeout=attempt)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(attempt)
                sock.connect(address if address.startswith("/") else SOCKET_PREFIX + address)
            sock.settimeout(None)
            return sock
        except OSError as err:  # no server (yet), or its backlog is full: retry
            if sock is not None:
                sock.close()
            if not isinstance(err, socket.timeout) and err.errno not in RETRY_ERRNO:
                raise ProtocolError(f"cannot connect to i-PI at {address} ({err})") from None
            if time.monotonic() >= deadline:
                raise ProtocolError(f"no i-PI server at {address} after {timeout:g} s") from None
            time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))


class Connection:
    """Blocking message I/O on a connected socket.

    ``give_up(at_message_start)`` is asked every ``poll_s`` seconds while no data arrives; when it returns
    True the wait ends with :class:`Interrupted` (a signal, or i-PI silent while the client wants to leave).
    """

    def __init__(self, sock: socket.socket, give_up: Callable[[bool], bool] | None = None, poll_s: float = 0.5):
        self.sock, self.give_up, self.poll_s = sock, give_up, poll_s

    def recv_exact(self, n: int, message_start: bool = False) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            if self.give_up is not None:
                while not select.select([self.sock], [], [], self.poll_s)[0]:
                    if self.give_up(message_start and got == 0):
                        raise Interrupted()
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise ConnectionResetError("i-PI closed the connection")
            got += k
        return bytes(buf)

    def recv_header(self) -> str:
        return self.recv_exact(HDRLEN, message_start=True).decode(errors="replace").strip()

    def recv_array(self, dtype, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        return np.frombuffer(self.recv_exact(dtype.itemsize * count), dtype=dtype).copy()

    def send(self, *parts) -> None:
        self.sock.sendall(b"".join(p if isinstance(p, bytes) else np.ascontiguousarray(p).tobytes()
                                   for p in parts))

    def recv_init(self) -> tuple[int, str]:
        rid = int(self.recv_array(np.int32, 1)[0])
        length = int(self.recv_array(np.int32, 1)[0])
        return rid, self.recv_exact(length).decode(errors="replace")

    def recv_posdata(self, rid: int) -> Request:
        h = self.recv_array(np.float64, 9).reshape(3, 3)
        self.recv_array(np.float64, 9)  # inverse cell, unused
        nat = int(self.recv_array(np.int32, 1)[0])
        pos = self.recv_array(np.float64, 3 * nat).reshape(nat, 3)
        return Request(rid, h.T.copy(), pos)

    def send_forces(self, energy: float, forces: np.ndarray, virial: np.ndarray, extras: str) -> None:
        extra = extras.encode()
        self.send(header("FORCEREADY"), np.float64(energy), np.int32(len(forces)),
                  np.asarray(forces, np.float64).ravel(), np.asarray(virial, np.float64).ravel(),
                  np.int32(len(extra)), extra)
