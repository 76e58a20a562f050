"""Several worker processes (`serve --workers N`) and their supervising parent.

Several workers: the parent binds the listening sockets, then forks the workers before any event
loop, store connection or HTTP client exists; each worker builds its own context (keys, store
connection, AsyncHTTPClient) and accepts on the shared sockets (the kernel gives each new
connection to one of them). The parent only supervises (`run_workers`):

- SIGTERM or SIGINT to the parent is passed on to every worker, which stops accepting, drains
  its in-flight requests and exits 0; the parent exits 0 once all of them have.
- A worker that dies (killed by a signal, or a non-zero exit) while the gateway is not stopping
  is restarted with the same index, unless RESTART_LIMIT restarts happened within the last
  RESTART_WINDOW seconds: such a crash loop stops every worker and the parent exits 1, so that
  the service manager sees it. A worker that ends with a configuration error (exit 2) is not
  restarted either (a restart would fail the same way): everything stops, exit 2.
- A worker that exits 0 by itself (someone sent it SIGTERM) is not restarted, as in Tornado.
- A worker whose parent is gone (killed with SIGKILL) stops by itself: no orphan keeps the port.

This is the model of `tornado.process.fork_processes`, which cannot stop cleanly: its parent
keeps the workers' pids to itself, so it cannot pass SIGTERM on (the workers would be left
running, holding the port); it restarts a worker that fails while stopping; and it restarts a
misconfigured worker 100 times before ending with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from gateway.errors import EXIT_CONFIG_ERROR

log = logging.getLogger("gateway.workers")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTART_LIMIT = 5  # restarts of crashed workers ...
RESTART_WINDOW = 60.0  # ... within this many seconds: a crash loop, the parent gives up
ORPHAN_CHECK_SECONDS = 1.0  # how often a worker checks that its parent is still there


async def stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    """A worker whose supervising parent died (SIGKILL, a crash) stops: nobody else would."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("the parent process %d is gone: stopping", parent)
            stop.set()
            return
        await asyncio.sleep(ORPHAN_CHECK_SECONDS)



@contextmanager
def blocked_stop_signals() -> Iterator[None]:
    """SIGTERM and SIGINT held back (they stay pending) for the duration."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass
class Workers:
    """The supervising parent's view of its workers; the policy is in the module docstring.

    `run` is a worker's whole life, called in the forked child with the worker's index; its
    return value is the child's exit status."""

    run: Callable[[int], int]
    pids: dict[int, int] = field(default_factory=dict)  # live (unreaped) worker pid -> index
    stopping: bool = False
    status: int = 0  # the parent's exit status
    restarts: list[float] = field(default_factory=list)  # when crashed workers were restarted

    def start(self, index: int) -> None:
        for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
            with suppress(Exception):
                stream.flush()
        # Blocked across the fork: a stop signal arriving in between must neither miss the new
        # worker (the parent forwards it once the pid is recorded) nor reach the child before
        # its event loop handles it (`stop_event` unblocks them there).
        with blocked_stop_signals():
            pid = os.fork()
            if pid == 0:  # the worker: it never returns into the parent's code
                os._exit(self._worker_life(index))
            self.pids[pid] = index
        log.info("worker %d started, pid %d", index, pid)

    def _worker_life(self, index: int) -> int:
        for sig in STOP_SIGNALS:  # the parent's forwarding handler is not the worker's
            signal.signal(sig, signal.SIG_DFL)
        try:
            return self.run(index)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 1
        except BaseException:
            log.exception("worker %d failed", index)
            return 1
        finally:
            # Stopped: a late stop signal must not turn a clean exit into a killed one.
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            for stream in (sys.stdout, sys.stderr):
                with suppress(Exception):
                    stream.flush()

    def stop(self, status: int = 0) -> None:
        """Ask every worker to drain and exit; the parent exits with the worst status seen."""
        self.stopping = True
        self.status = max(self.status, status)
        for pid in self.pids:  # unreaped children only: their pids cannot have been reused
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def on_stop_signal(self, signum: int, frame: object) -> None:
        if not self.stopping:
            log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.pids))
            self.stop()

    def ended(self, pid: int, wait_status: int) -> None:
        """A worker ended (reaped by `os.wait`): decide whether to start it again."""
        index = self.pids.pop(pid, None)
        if index is None:
            return
        code = os.waitstatus_to_exitcode(wait_status)
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        if self.stopping:
            log.log(logging.INFO if code == 0 else logging.WARNING,
                    "worker %d (pid %d) stopped: %s", index, pid, how)
            self.status = max(self.status, 0 if code == 0 else 1)
        elif code == 0:
            log.info("worker %d (pid %d) %s by itself; not restarted", index, pid, how)
        elif code == EXIT_CONFIG_ERROR:
            log.error("worker %d (pid %d) %s: configuration error, stopping", index, pid, how)
            self.stop(EXIT_CONFIG_ERROR)
        elif not self._may_restart():
            log.error("worker %d (pid %d) %s: %d restarts within %.0fs, giving up", index, pid,
                      how, RESTART_LIMIT, RESTART_WINDOW)
            self.stop(1)
        else:
            log.warning("worker %d (pid %d) %s; restarting it", index, pid, how)
            self.start(index)

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW]
        if len(self.restarts) >= RESTART_LIMIT:
            return False
        self.restarts.append(now)
        return True


def run_workers(count: int, run: Callable[[int], int]) -> int:
    """Fork `count` workers, each running `run(index)`, and supervise them until they have all
    ended (call before any event loop exists). Returns the parent's exit status."""
    workers = Workers(run)
    previous = {sig: signal.signal(sig, workers.on_stop_signal) for sig in STOP_SIGNALS}
    try:
        for index in range(count):
            if workers.stopping:
                break
            workers.start(index)
        while workers.pids:
            pid, wait_status = os.wait()
            workers.ended(pid, wait_status)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return workers.status
