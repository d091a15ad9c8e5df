"""The i-PI socket protocol, client side (atomic units: bohr, hartree).

Messages are 12-byte headers. i-PI asks STATUS (we answer NEEDINIT, READY or HAVEDATA), sends INIT (request
id, parameter string), POSDATA (cell h with lattice vectors as columns, its inverse, atom count, positions;
newer i-PI sends GETFORCE right behind it), and we answer GETFORCE with FORCEREADY, energy, atom count,
forces, virial and a JSON extras string. Answering NEEDINIT after every force makes i-PI send INIT, and with
it the request id, before every POSDATA: that is how the client learns which bead it is given.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

import numpy as np

HDRLEN = 12
SOCKET_PREFIX = "/tmp/ipi_"


def header(text: str) -> bytes:
    return text.upper().ljust(HDRLEN).encode()


@dataclass
class Request:
    """One force request: request id, cell (rows = lattice vectors, bohr), positions (N, 3) bohr."""

    rid: int
    cell: np.ndarray
    positions: np.ndarray


class ProtocolError(RuntimeError):
    pass


def parse_init(text: str) -> dict[str, str]:
    """The parameter string i-PI builds from ``<parameters>``: ``" key : value , key : value , "``."""
    out = {}
    for token in text.replace("{", "").replace("}", "").split(","):
        key, sep, value = token.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def connect(address: str, timeout: float = 60.0) -> socket.socket:
    """Connect to i-PI: ``host:port`` (inet) or a name (unix socket /tmp/ipi_<name>); retries until ``timeout``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if ":" in address:
                host, port = address.rsplit(":", 1)
                sock = socket.create_connection((host, int(port)))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(address if address.startswith("/") else SOCKET_PREFIX + address)
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise ProtocolError(f"no i-PI server at {address!r} after {timeout:.0f} s") from None
            time.sleep(0.2)


class Connection:
    """Blocking message I/O on a connected socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise ConnectionResetError("i-PI closed the connection")
            got += k
        return bytes(buf)

    def recv_header(self) -> str:
        return self.recv_exact(HDRLEN).decode(errors="replace").strip()

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
