"""A real TCP forwarder that can partition: between a gateway and its PostgreSQL, it forwards
bytes until ``cut()``, then swallows them and holds every connection open (new ones too), as a
network partition does: the store neither answers nor refuses. ``heal()`` closes what it held
and forwards again; ``heal(drop_held=False)`` forwards new connections only, and the held ones
stay silent for good, as behind a firewall or NAT that lost their state: their client learns
of it only by a deadline of its own. ``cut_before(b"COMMIT")`` cuts when a client next sends
those bytes, which then never arrive: a partition at a chosen step of a protocol.
``cut_after(b"COMMIT")`` forwards those bytes, then cuts: the server commits, and its answer
is lost. ``silence_before(b"...")`` silences only the connection that next sends those bytes, both ways
and held open, as a backend stopped mid-query (SIGSTOP) leaves it; the others go on."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _drop(s: socket.socket) -> None:
    # shutdown() first: a bare close() leaves a recv() in another thread blocked, and that
    # recv keeps the connection open, to both of its ends, for as long as the process lives.
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


class Partition:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._silent: set[socket.socket] = set()  # held through a heal(drop_held=False)
        self._trigger: bytes | None = None
        self._silence_trigger: bytes | None = None
        self._after_trigger: bytes | None = None
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()

    def cut_before(self, sent: bytes) -> None:
        self._trigger = sent

    def cut_after(self, sent: bytes) -> None:
        self._after_trigger = sent

    def silence_before(self, sent: bytes) -> None:
        self._silence_trigger = sent

    def heal(self, *, drop_held: bool = True) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            if not drop_held:
                self._silent.update(sockets)
            self._cut.clear()
        if drop_held:
            for s in sockets:
                _drop(s)

    def close(self) -> None:
        self._closed = True
        self.heal()
        with self._lock:
            silent, self._silent = self._silent, set()
        for s in silent:
            _drop(s)
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
            if self._cut.is_set():
                continue  # held open, never answered
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if to_server and self._trigger is not None and self._trigger in data:
                    self._trigger = None
                    self._cut.set()
                if to_server and self._silence_trigger is not None and self._silence_trigger in data:
                    self._silence_trigger = None
                    with self._lock:
                        self._silent.update((src, dst))
                if not self._cut.is_set() and src not in self._silent:
                    dst.sendall(data)
                if to_server and self._after_trigger is not None and self._after_trigger in data:
                    self._after_trigger = None
                    self._cut.set()
        for s in (src, dst):
            _drop(s)


@contextmanager
def partition(target: tuple[str, int]) -> Iterator[Partition]:
    p = Partition(target)
    try:
        yield p
    finally:
        p.close()
