"""Closing the connections a worker holds for nothing (Linux).

granian (hyper) times out a request head once its first byte has arrived, or once a kept-alive
connection waits for its next request: a client that connects and sends nothing holds one of
the worker's ``max_connections`` slots for as long as it likes, and that many of them stop the
worker (a keep-alive connection is closed by granian after ``header_timeout_s``, so only a
shorter ``idle_timeout_s`` closes it here first).
Once a second, a worker looks at its own TCP connections on the listening port (``TCP_INFO``
says when each last received data, and whether it ever did) and shuts down those silent past
``header_timeout_s`` or idle past ``idle_timeout_s``; the server sees the end of the stream
and frees the slot.

When the worker is told to stop (``stopping``), each pass runs every 0.2 s, on the loop, and
shuts down every connection that carries no request the app is answering and is quiet for a
second, or is still sending after the stop's grace: a client holding a half-sent request head,
or trickling one, kept a stopping worker until ``header_timeout_s``, past Docker's 10 s. (A
request whose head has just arrived is not the app's yet: the second lets it reach the app.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from capigate.http.asgi import peer_address

__all__ = ["LISTEN_PORT_ENV", "IdleReaper"]

log = logging.getLogger("capigate")

LISTEN_PORT_ENV = "CAPIGATE_LISTEN_PORT"  # set by `capigate serve` for its workers
_TCP_ESTABLISHED = 1
_LAST_DATA_RECV = struct.Struct("=I")  # tcpi_last_data_recv, milliseconds, at offset 52
_BYTES_RECEIVED = struct.Struct("=Q")  # tcpi_bytes_received, at offset 128 (Linux 4.1+)
_TCP_INFO_SIZE = 136
_STOPPING_INTERVAL_S = 0.2
_STOPPING_QUIET_MS = 1000


class IdleReaper:
    """Shuts down this process's connections to ``port`` that are silent or idle too long."""

    def __init__(self, port: int, *, silent_s: float, idle_s: float, interval_s: float = 1.0) -> None:
        self.port = port
        self.silent_ms = int(silent_s * 1000)
        self.idle_ms = int(idle_s * 1000)
        self.interval_s = interval_s
        self.closed = 0
        self._task: asyncio.Task[None] | None = None
        self._serving: Callable[[], Iterable[str]] | None = None
        # The peers of the requests the app is answering: never closed for being quiet (a
        # client waiting 10 s for a stalled store's 503 got an empty reply instead, a trial;
        # an ingest stored meanwhile lost its 200).
        self.in_flight: Callable[[], Iterable[str]] = tuple
        self._grace_ends = 0.0  # monotonic: a stopping worker's heads still arriving are cut then

    @staticmethod
    def supported() -> bool:
        return sys.platform == "linux" and Path("/proc/self/fd").is_dir()

    def start(self) -> None:
        if self.supported():
            self._task = asyncio.create_task(self._run(), name="capigate-idle-reaper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def stopping(self, serving: Callable[[], Iterable[str]], grace_s: float) -> None:
        """The worker stops: from now on only the connections of ``serving()`` (the peers,
        "ip:port", of the requests the app is answering), and for ``grace_s`` those that
        received data in the last second, are left open; one pass at once."""
        ends = time.monotonic() + grace_s
        self._grace_ends = ends if self._serving is None else min(self._grace_ends, ends)  # again: the sooner
        self._serving = serving
        self.interval_s = min(self.interval_s, _STOPPING_INTERVAL_S)
        if self.supported():
            with contextlib.suppress(OSError):
                self.closed += self.sweep(_peers(serving()))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                if self._serving is not None:  # on the loop: no request starts between the look and the cut
                    self.closed += self.sweep(_peers(self._serving()))
                else:  # ~10 µs a socket, off the loop; a request begun since has just sent data
                    self.closed += await asyncio.to_thread(self.sweep, None, _peers(self.in_flight()))
            except OSError as exc:  # /proc unreadable: nothing to do but say so once
                log.warning("idle connections cannot be checked: %s", exc)
                return

    def sweep(
        self, serving: frozenset[tuple[str, int]] | None = None, busy: frozenset[tuple[str, int]] = frozenset()
    ) -> int:
        """One pass over this process's sockets; how many it shut down. ``serving``: the worker
        stops, and every connection but those of these peers goes, however busy. ``busy``: the
        peers whose requests the app is answering, left open however quiet."""
        closed = 0
        for entry in os.scandir("/proc/self/fd"):
            with contextlib.suppress(OSError, ValueError):
                if os.readlink(entry.path).startswith("socket:") and self._reap(int(entry.name), serving, busy):
                    closed += 1
        return closed

    def _reap(self, fd: int, serving: frozenset[tuple[str, int]] | None, busy: frozenset[tuple[str, int]]) -> bool:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
                return False
            if sock.getsockname()[1] != self.port:
                return False
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
            if len(info) < _TCP_INFO_SIZE or info[0] != _TCP_ESTABLISHED:
                return False  # the listening socket, or one already closing
            (quiet_ms,) = _LAST_DATA_RECV.unpack_from(info, 52)
            if serving is not None:
                # A request whose head has arrived reaches the app within milliseconds: one
                # quiet for a second with no request in the app is a head that stopped coming,
                # and one still coming after the grace is trickled (a body gets as long).
                if sock.getpeername()[:2] in serving:
                    return False
                if quiet_ms < _STOPPING_QUIET_MS and time.monotonic() < self._grace_ends:
                    return False
            else:
                (received,) = _BYTES_RECEIVED.unpack_from(info, 128)
                if quiet_ms <= (self.silent_ms if received == 0 else self.idle_ms):
                    return False
                if sock.getpeername()[:2] in busy:
                    return False
            sock.shutdown(socket.SHUT_RDWR)  # the shared connection, not just this duplicate
            return True


def _peers(peers: Iterable[str]) -> frozenset[tuple[str, int]]:
    """("ip", port) of each "ip:port" or "[v6]:port", as ``getpeername`` gives them."""
    return frozenset(address for peer in peers if (address := peer_address(peer)) is not None)
