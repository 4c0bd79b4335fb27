"""The ``capigate serve`` process: its one listening socket, and the life of its workers.

granian binds a socket with SO_REUSEPORT in each worker, so a second server on the same port
binds beside the first and the kernel splits the traffic between them. Here the main process
binds the port once, without SO_REUSEPORT, before anything is printed: a port in use stops the
start with one line. The workers inherit that socket, die with the main process (Linux's
parent-death signal, else a watchdog thread), and one that dies is started again and counted.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any, Final

import granian._signals
from granian._granian import SocketHolder, WorkerSignal
from granian.constants import Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import MPServer

import capigate.worker_env as worker_env
from capigate.config import Config, ServerSettings, load_config
from capigate.errors import CapigateError, ConfigError
from capigate.http.idle import LISTEN_PORT_ENV
from capigate.metrics import METRICS_DIR_ENV, RESPAWNS_FILE, remove_stale_shared_dirs, shared_dir
from capigate.personal import shown_value

__all__ = [
    "GatewayServer",
    "ListenError",
    "die_with_parent",
    "on_worker_stop",
    "open_listener",
    "port_owner",
    "serve_gateway",
    "worker_signals",
]

log = logging.getLogger("capigate")
granian_log = logging.getLogger("_granian")  # granian's own lines, as its stop logs them

PARENT_ENV = "CAPIGATE_SERVER_PID"
BACKLOG = 2048
STOP_TIMEOUT_S = 30  # a worker that has not stopped by then (its drain takes 10 s) is killed
_PR_SET_PDEATHSIG = 1
_WATCHDOG_INTERVAL_S = 0.5


class ListenError(CapigateError):
    """The address cannot be listened on; the message is the one line to print."""


def open_listener(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening socket of our own: SO_REUSEADDR (a restart need not wait out TIME_WAIT) but
    never SO_REUSEPORT, so nobody else can bind the port while we hold it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(_listen_failure(host, port, exc)) from None
    sock.set_inheritable(True)
    return sock


def listen_problem(host: str) -> str | None:
    """Why serve could not listen on ``host``, for check-config: serve's own bind, on a port the
    system chooses (the configured one may be a running gateway's), so that the rule is one."""
    try:
        open_listener(host, 0, backlog=1).close()
    except ListenError as exc:
        return str(exc)
    return None


def _listen_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use{_owner_note(port)}"
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges on this machine (ports below 1024 usually do); choose another"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: no network interface has that address"
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {shown_value(host)}: not an address or a known host name"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _owner_note(port: int) -> str:
    owner = port_owner(port)
    if owner is None:
        return " (by a process this user cannot see; another capigate?)"
    pid, command = owner
    if "capigate" in command and "serve" in command:
        return f" (another capigate? pid {pid})"
    return f" (pid {pid}: {command[:80]})"


def port_owner(port: int) -> tuple[int, str] | None:
    """The pid and command line of a process listening on ``port``, where /proc tells."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    for proc in (Path("/proc") / str(pid) for pid in pids):  # a parent before its workers
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    raw = (proc / "cmdline").read_bytes()
                    return int(proc.name), raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(inode)
    return inodes


def serve_gateway(
    listener: socket.socket, settings: ServerSettings, *, workers: int, log_dictconfig: dict[str, Any] | None = None
) -> None:
    """Run the workers on ``listener`` until SIGINT or SIGTERM (the app comes from the
    environment the CLI prepared: see ``capigate.gateway.app_from_env``)."""
    os.environ[PARENT_ENV] = str(os.getpid())
    _allow_open_files(settings.max_connections + 256)
    host, port = listener.getsockname()[:2]
    os.environ[LISTEN_PORT_ENV] = str(port)
    remove_stale_shared_dirs(os.getpid())
    shared = shared_dir(os.getpid())
    try:
        GatewayServer(
            "capigate.gateway:app_from_env",
            factory=True,
            address=host,  # for granian's own log lines: the socket is ``listener``
            port=port,
            interface=Interfaces.RSGI,
            loop=Loops.auto,  # uvloop where installed (a dependency off Windows), else asyncio
            workers=workers,
            log_access=False,
            log_dictconfig=log_dictconfig,
            backlog=BACKLOG,
            backpressure=settings.max_connections,
            http1_settings=HTTP1Settings(header_read_timeout=int(settings.header_timeout_s * 1000)),
            respawn_failed_workers=True,
            workers_kill_timeout=STOP_TIMEOUT_S,
            listener=listener,
            respawns_file=shared / RESPAWNS_FILE,
        ).serve()
    finally:
        if not os.environ.get(METRICS_DIR_ENV):  # a directory the operator chose is not ours to remove
            shutil.rmtree(shared, ignore_errors=True)  # one was left in /tmp by every stop


def _allow_open_files(wanted: int) -> None:
    """Raise the soft limit on open files (often 1024) toward ``wanted``, within the hard limit:
    past it a worker cannot accept the connections ``max_connections`` allows."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < wanted:
        sys.stderr.write(f"capigate: open files are limited to {target}: fewer than [server] max_connections allows\n")


class GatewayServer(MPServer):
    """granian's process manager, serving the socket ``open_listener`` made, and counting the
    workers it starts again after they die (``respawns_file``, read by ``/metrics``)."""

    def __init__(self, *args: Any, listener: socket.socket, respawns_file: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server_pid = os.getpid()  # granian sets self.pid only in startup()
        _hold_stop_signals_across_forks()
        self._listener = listener
        self._respawns_file = respawns_file
        self.respawns = 0
        self._reloading = False

    def _init_shared_socket(self) -> None:
        self._ssp = None
        self._sso = self._listener
        self._sfd = self._listener.fileno()  # type: ignore[assignment]  # granian's attributes are untyped
        self._shd = SocketHolder(self._sfd, False, self.backlog)  # type: ignore[call-arg,assignment]

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        """SIGINT or SIGTERM stops the server, in its own process only: a worker is forked
        with this handler and runs it until ``worker_signals`` sets its own, and there it
        would only have stopped the worker's copy of the server (the signal lost)."""
        if os.getpid() == self._server_pid:
            super().signal_handler_interrupt(*args, **kwargs)  # type: ignore[no-untyped-call]
        elif args and args[0] == signal.SIGTERM:
            _worker_stop.request()

    def _stop_workers(self) -> None:
        """granian's stop, without its race: each worker's watcher thread waits on it with
        ``waitpid``, and granian's own check after ``join`` asks ``waitpid`` again; when the
        watcher reaps first, the check gets ECHILD, reads "alive", and a worker that stopped
        at once was logged as killed ("refused to gracefully stop") ~20 ms after the signal.
        A worker is gone when its sentinel pipe closes, whoever reaps it."""
        for worker in self.wrks:
            worker.terminate()  # type: ignore[no-untyped-call]
        deadline = self._kill_deadline()
        for worker in self.wrks:
            self._await_stop(worker, deadline, f"worker-{worker.idx + 1}")
            granian_log.info("Stopped worker-%d", worker.idx + 1)
        self.wrks.clear()

    def _kill_deadline(self) -> float:
        """When a worker told to stop now is killed if it has not."""
        return time.monotonic() + (self.workers_kill_timeout or STOP_TIMEOUT_S)

    def _await_stop(self, worker: Any, deadline: float, name: str) -> None:
        """Waits for ``worker``, told to stop, until ``deadline``; kills it then."""
        if not mp_wait([worker.inner.sentinel], max(deadline - time.monotonic(), 0.0)):
            granian_log.warning("Killing %s after it refused to gracefully stop", name)
            worker.kill()
        worker.join()  # at once: it is gone (whoever reaps it)

    def _reload(self, spawn_target: Any, target_loader: Any) -> None:
        """SIGHUP: the workers replaced one by one, each new one reading capigate.toml again;
        not when the file has a mistake, which every new worker died on as it started (and the
        server with them, a crash loop), while the old ones were stopped all the same."""
        problem = _config_problem()
        if problem is not None:
            self.reload_signal = False
            self.main_loop_interrupt.clear()
            log.error("SIGHUP ignored, the workers keep the configuration they run: %s", problem)
            return
        self._reloading = True  # SIGHUP restarts every worker: not respawns
        try:
            super()._reload(spawn_target, target_loader)  # type: ignore[no-untyped-call]
        finally:
            self._reloading = False

    def _respawn_workers(self, workers: Any, spawn_target: Any, target_loader: Any, delay: float = 0) -> None:
        """granian's, with the old worker awaited as ``_stop_workers`` awaits one (its own check
        logged a reload's old worker as killed when its watcher thread had reaped it)."""
        for idx in workers:
            self.respawned_wrks[idx] = time.monotonic()
            granian_log.info("Respawning worker-%d", idx + 1)
            old = self.wrks.pop(idx)
            fresh = self._spawn_worker(idx=idx, target=spawn_target, callback_loader=target_loader)
            fresh.start()  # type: ignore[no-untyped-call]
            self.wrks.insert(idx, fresh)
            time.sleep(delay)
            granian_log.info("Stopping old worker-%d", idx + 1)
            old.terminate()  # type: ignore[no-untyped-call]
            self._await_stop(old, self._kill_deadline(), f"old worker-{idx + 1}")
            granian_log.info("Stopped old worker-%d", idx + 1)
        self._metrics.incr_spawn(len(workers))
        if self._reloading:
            return
        self.respawns += len(workers)
        with contextlib.suppress(OSError):
            self._respawns_file.parent.mkdir(parents=True, exist_ok=True)
            temp = self._respawns_file.with_suffix(".tmp")
            temp.write_text(str(self.respawns))
            temp.replace(self._respawns_file)


def _config_problem() -> str | None:
    """What a worker started now would find wrong in capigate.toml (None: nothing). A right
    file becomes the text every worker started from now on reads (worker_env.CONFIG_TEXT), and
    the settings of its own that a reload cannot apply are logged."""
    path = os.environ.get(worker_env.CONFIG)
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
        new = load_config(Path(path), os.environ if worker_env.relaying() else None, text=text)
    except OSError as exc:
        return f"bad configuration: {path}: cannot read the file ({exc.strerror})"
    except UnicodeDecodeError as exc:
        return f"bad configuration: {path}: not UTF-8 text (byte {exc.start}), as TOML must be"
    except ConfigError as exc:  # ConfigErrors too: a line for each mistake
        return f"bad configuration: {exc}".replace("\n", "; ")
    previous = os.environ.get(worker_env.CONFIG_TEXT)
    if previous is not None:
        with contextlib.suppress(ConfigError, ValueError):
            overrides = json.loads(os.environ.get(worker_env.OVERRIDES) or "{}")
            _say_restart_only(load_config(Path(path), text=previous), new, overrides)
    os.environ[worker_env.CONFIG_TEXT] = text
    return None


# What the server process took at its start: a SIGHUP does not apply them (README, Reloading).
_RESTART_ONLY: Final = (
    ("server", "host"), ("server", "port"), ("server", "workers"), ("server", "max_connections"),
    ("server", "header_timeout_s"), ("server", "log_format"), ("store", "url"),
)  # fmt: skip


def _say_restart_only(running: Config, new: Config, overrides: dict[str, Any]) -> None:
    """A warning for each changed setting a reload leaves as it was (a trial changed the port:
    the log said nothing, and `capigate env` then pointed at a port nothing listened on); for
    one serve took from an option, that the option rules it."""
    for section, key in _RESTART_ONLY:
        before, after = getattr(getattr(running, section), key), getattr(getattr(new, section), key)
        given = overrides.get(f"{section}.{key}")
        if before == after or (given is not None and given == after):
            continue
        if given is not None:
            log.warning(
                "SIGHUP: [%s] %s changed in %s (%r to %r), but capigate serve was started with %s %r, "
                "which rules it, at a restart with the same options too",
                section, key, Path(os.environ.get(worker_env.CONFIG, "")).name, before, after, _OPTIONS[key], given,
            )  # fmt: skip
            continue
        log.warning(
            "SIGHUP: [%s] %s changed (%r to %r): it takes a restart of capigate serve, whose process "
            "keeps what it started with",
            section, key, before, after,
        )  # fmt: skip


_OPTIONS: Final = {
    "host": "--host/CAPIGATE_HOST", "port": "--port/CAPIGATE_PORT", "workers": "--workers/CAPIGATE_WORKERS",
    "url": "--db/CAPIGATE_DB",
}  # fmt: skip


_STOP_SIGNALS: Final = {signal.SIGINT, signal.SIGTERM}
_mask_before_fork = threading.local()  # each forking thread's own mask
_holding_across_forks = False


def _hold_stop_signals_across_forks() -> None:
    """A worker sent SIGTERM in its first microseconds lost it: CPython forgets the signals
    that arrived before the child's after-fork step. With SIGINT and SIGTERM blocked while
    the server forks, such a signal waits in the kernel until the child's after-fork hooks
    (which run after that step) unblock it, and the inherited handler stops the worker."""
    global _holding_across_forks
    if _holding_across_forks or not hasattr(signal, "pthread_sigmask"):
        return
    _holding_across_forks = True
    os.register_at_fork(before=_block_stop_signals, after_in_parent=_restore_mask, after_in_child=_restore_mask)


def _block_stop_signals() -> None:
    _mask_before_fork.mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


def _restore_mask() -> None:
    mask = getattr(_mask_before_fork, "mask", None)
    if mask is not None:
        _mask_before_fork.mask = None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


class _WorkerStop:
    """A worker's one stop. granian's handler called its shutdown signal's ``set()`` once per
    signal, and a ``set()`` while the last one is not yet taken blocks for ever, holding the
    GIL: a worker sent Ctrl-C's SIGINT and its server's SIGTERM hung until it was killed 30 s
    later, its journal entries lost. Here ``set()`` is called once, whatever comes.

    A SIGTERM that finds the ``capigate serve`` process gone (the parent-death signal, or the
    watchdog's) makes the worker an orphan: the listeners hear it, at once or after a stop
    already begun, and stop it at once (after a ``kill -9`` of the server a new one may start
    now; the orphan's relay went on sending for seconds beside it, a trial)."""

    def __init__(self) -> None:
        self.requested = False
        self.orphaned = False
        self._shutdown: WorkerSignal | None = None
        self._once = threading.Lock()  # its non-blocking acquire is atomic, even against a handler
        self.listeners: list[Callable[[bool], None]] = []

    def request(self, *_: object) -> None:
        """SIGTERM's handler (Python's, not the loop's: uvloop runs a loop handler only while
        the loop runs, and a worker's loop stops between its start-up and its serving)."""
        first = not self.requested
        orphaned = not self.orphaned and _parent_gone()
        self.requested = True
        self.orphaned = self.orphaned or orphaned
        self._fire()
        if first or orphaned:
            for listener in self.listeners:
                listener(self.orphaned)

    def attach(self, shutdown: WorkerSignal) -> None:
        self._shutdown = shutdown
        self._fire()  # for a SIGTERM that came as the worker started

    def _fire(self) -> None:
        shutdown = self._shutdown
        if self.requested and shutdown is not None and self._once.acquire(blocking=False):
            shutdown.set()


_worker_stop = _WorkerStop()


def on_worker_stop(listener: Callable[[bool], None]) -> None:
    """``listener(orphaned)`` when this worker is told to stop, from its SIGTERM handler, and
    again with True if it finds the ``capigate serve`` process gone after a stop began: it must
    only hand the news to its event loop (``call_soon_threadsafe``)."""
    _worker_stop.listeners.append(listener)


def worker_signals() -> None:
    """In a worker, as its app is built: SIGINT is ignored (Ctrl-C reaches the server process,
    which stops its workers with SIGTERM) and SIGTERM stops the worker once. granian's worker
    sets its own handlers after this app is built (``set_loop_signals``): ours take its place."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop.request)
    granian._signals.set_loop_signals = _set_loop_signals


def _set_loop_signals(loop: Any) -> WorkerSignal:
    """granian's ``set_loop_signals`` for our workers: the shutdown signal its worker waits on,
    set by ``_worker_stop``, with no handler of its own."""
    shutdown = WorkerSignal()
    _worker_stop.attach(shutdown)
    return shutdown


_parent = 0  # the worker's ``capigate serve`` process (die_with_parent), 0 until known


def _parent_gone() -> bool:
    """Whether this worker's ``capigate serve`` process is gone: the kernel has given the worker
    to another parent (it does so before it sends the parent-death signal)."""
    return _parent != 0 and os.getppid() != _parent


def die_with_parent() -> None:
    """In a worker: end (SIGTERM, a stop at once: see ``_WorkerStop``) when the ``capigate
    serve`` process is gone, even if it was killed with SIGKILL and could not stop its workers."""
    global _parent
    expected = _parent = int(os.environ.get(PARENT_ENV, "0")) or os.getppid()
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            _start_watchdog(expected)
            return
    else:
        _start_watchdog(expected)
        return
    if os.getppid() != expected:  # the parent died before prctl: nobody will signal
        os.kill(os.getpid(), signal.SIGTERM)


def _start_watchdog(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCHDOG_INTERVAL_S)
        os.kill(os.getpid(), signal.SIGTERM)  # the stop says the server process is gone

    threading.Thread(target=watch, name="capigate-parent-watchdog", daemon=True).start()
