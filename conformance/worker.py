"""Running cases in worker processes, so that an adapter cannot take the suite down.

``python -m optcheck.conformance.worker`` reads requests from stdin and writes
replies to stdout, one JSON object per line:

* ``{"op": "plan", "context": {...}}`` → ``{"ok": true, "plan": {...}}``: load the
  adapter and list its cases (:func:`optcheck.conformance.suite.plan`);
* ``{"op": "run", "context": {...}, "case": {...}}`` → ``{"ok": true, "result": {...}}``;
* a failure of the request itself → ``{"ok": false, "error": "...", "traceback": "..."}``.

The protocol uses a private copy of the original stdout; file descriptor 1 is pointed
at stderr, so whatever an adapter prints cannot corrupt it.

:class:`WorkerPool` (the parent side) runs cases on ``jobs`` workers and enforces:

* a per-case timeout: the worker is killed (its whole process group) and restarted,
  and the case is an ``error`` "timeout after Ns";
* crash isolation: a worker that dies (segfault, ``os._exit``, out of memory) loses
  only the case it was running, reported as ``error`` with its exit status and the
  tail of its stderr; the next case gets a fresh worker;
* no orphans: when the pool stops on an exception (an :class:`Interrupted` run), every
  worker's process group is killed with SIGKILL (a hung worker, or one ignoring
  SIGTERM, included); and a worker dies with its parent even when the parent is killed
  outright (:func:`die_with_parent`: ``PR_SET_PDEATHSIG`` on Linux, and a thread that
  watches the parent's pid everywhere).

:class:`SignalGuard` turns the first SIGINT or SIGTERM into :class:`Interrupted` in the
main thread; :func:`critical` defers it past sections it must not cut (starting a
worker, recording a result).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

from .suite import Case, Context, Plan, error_result

#: Seconds a worker may take to start and load its adapter before its first case.
LOAD_TIMEOUT = 300.0


# -- the worker process ------------------------------------------------------------------
def _serve(inp, out) -> None:
    from . import suite

    for line in inp:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            ctx = Context.from_dict(request["context"])
            if request["op"] == "plan":
                reply = {"ok": True, "plan": _plan_dict(suite.plan(ctx))}
            elif request["op"] == "load":
                adapter = suite.get_adapter(ctx.adapter)
                reply = {"ok": True, "name": getattr(adapter, "name", "")}
            elif request["op"] == "run":
                reply = {"ok": True, "result": suite.run_case(Case.from_dict(request["case"]), ctx)}
            else:
                reply = {"ok": False, "error": f"unknown op {request['op']!r}", "traceback": ""}
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:  # reported to the parent
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()}  # fmt: skip
        reply["maps"] = memory_maps()
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _plan_dict(plan: Plan) -> dict:
    return {**{k: getattr(plan, k) for k in ("name", "target", "version", "available", "reason")},
            "cases": [c.to_dict() for c in plan.cases]}  # fmt: skip


def plan_from_dict(data: dict) -> Plan:
    return Plan(data["name"], data["target"], data["version"], data["available"],
                data["reason"], [Case.from_dict(c) for c in data["cases"]])  # fmt: skip


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` dies, even by SIGKILL (its workers are in their
    own sessions: nothing else would reach them). Linux: the kernel sends SIGKILL
    (``PR_SET_PDEATHSIG``, which works while the adapter hangs in C code); everywhere:
    a daemon thread checks the parent's pid every second."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    original = os.getppid()  # not ``parent`` when sys.executable is a wrapper script
    if original != parent and not _alive(parent):  # it died before prctl took effect
        os._exit(70)

    def watch() -> None:
        while os.getppid() == original:
            time.sleep(1.0)
        os._exit(70)

    threading.Thread(target=watch, name="optcheck-parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _boot(argv: list[str]) -> None:
    """``python -c BOOT MODULE PARENT_PID``: guard, then run MODULE as ``python -m``."""
    import runpy

    die_with_parent(int(argv[2]))
    if argv[1] == __name__:
        main()  # runpy would import this module twice (and warn)
    else:
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


_BOOT = "import sys; from optcheck.conformance.worker import _boot; _boot(sys.argv)"


def main() -> None:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # stray prints of adapters go to stderr, never into the protocol
    _serve(sys.stdin, out)


# -- the parent side ---------------------------------------------------------------------
class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (``signal``: "SIGINT" or "SIGTERM"). A run that
    catches it may attach its partial ``report`` before raising it on."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal = signal_name
        self.report: dict | None = None

    def __str__(self) -> str:
        return f"interrupted by {self.signal}"


class SignalGuard:
    """While entered in the main thread, the first SIGINT or SIGTERM raises
    :class:`Interrupted` there (at the end of a :func:`critical` section if one is
    running); later ones are ignored, so that stopping the workers and writing the
    report are not cut short. :meth:`settle` ignores every signal from then on (the run
    is finished). Elsewhere than the main thread it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    active: SignalGuard | None = None

    def __init__(self):
        self.received: str | None = None
        self.raised = False
        self.depth = 0
        self.settled = False
        self._old: dict = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread() and SignalGuard.active is None:
            for s in self.SIGNALS:
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
            SignalGuard.active = self
        return self

    def __exit__(self, *exc) -> None:
        if SignalGuard.active is self:
            SignalGuard.active = None
            for s, old in self._old.items():
                signal.signal(s, signal.SIG_DFL if old is None else old)

    def _handle(self, signum, frame) -> None:
        if self.received is not None or self.settled:
            return
        self.received = signal.Signals(signum).name
        if not self.depth:
            self.raised = True
            raise Interrupted(self.received)

    def settle(self) -> None:
        self.settled = True


@contextlib.contextmanager
def critical():
    """A section a signal must not cut (between starting a worker and recording it, the
    worker would be orphaned): the :class:`SignalGuard`'s exception waits for its end."""
    guard = SignalGuard.active
    if guard is None:
        yield
        return
    guard.depth += 1
    try:
        yield
    finally:
        guard.depth -= 1
    if not guard.depth and guard.received and not guard.raised and not guard.settled:
        guard.raised = True
        raise Interrupted(guard.received)


class WorkerDied(RuntimeError):
    """A worker process exited or hung while planning."""


class WorkerError(RuntimeError):
    """A request failed inside the worker; ``remote_traceback`` is the worker's."""

    def __init__(self, message: str, remote_traceback: str = ""):
        super().__init__(message)
        self.remote_traceback = remote_traceback


class Worker:
    """One worker process (``module`` run as ``python -m module`` after
    :func:`die_with_parent`: this module's server, or another that speaks the same
    load/run protocol); a reader thread forwards its reply lines to a shared queue."""

    def __init__(self, replies: queue.Queue, env: dict | None, module: str = __name__):
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, module, str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
            encoding="utf-8",
            start_new_session=True,  # kill the adapter's children with it
        )
        self.case = None  # the job it is running (a Case here)
        self.deadline: float | None = None
        self.started = 0.0
        self.loaded = False
        self.served = 0
        self.maps: int | None = None  # memory maps after its last job (Linux)
        self.thread = threading.Thread(target=self._read, args=(replies,), daemon=True)
        self.thread.start()

    def _read(self, replies: queue.Queue) -> None:
        try:
            for line in self.proc.stdout:
                replies.put((self, line))
        except (OSError, ValueError):  # closed by the parent after a kill
            pass
        replies.put((self, None))

    def send(self, request: dict) -> None:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def stderr_tail(self, limit: int = 4000) -> str:
        try:
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(0, size - limit))
            return self.log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.close()

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        self.close()

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        self.log.close()


def worker_env() -> dict:
    env = dict(os.environ)
    # One BLAS thread per worker: the workers are the parallelism.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def run_plan_isolated(ctx: Context, timeout: float = LOAD_TIMEOUT) -> Plan:
    """:func:`suite.plan` in a worker (a crash while importing an adapter is contained).

    Raises :class:`WorkerDied` or :class:`WorkerError` on failure.
    """
    replies: queue.Queue = queue.Queue()
    with critical():
        worker = Worker(replies, worker_env())
    try:
        worker.send({"op": "plan", "context": ctx.to_dict()})
        try:
            _, line = replies.get(timeout=timeout)
        except queue.Empty:
            worker.kill()
            raise WorkerDied(f"planning timed out after {timeout:g}s") from None
        if line is None:
            worker.proc.wait(timeout=10)
            raise WorkerDied(f"worker exited with status {worker.proc.returncode} while "
                             f"loading the adapter\n{worker.stderr_tail()}")  # fmt: skip
        reply = json.loads(line)
        if not reply["ok"]:
            raise WorkerError(reply["error"], reply["traceback"])
        return plan_from_dict(reply["plan"])
    except BaseException:
        worker.kill()  # interrupted (or failed): it may be busy loading, do not wait
        raise
    finally:
        if worker.proc.poll() is None:
            worker.stop()
        else:
            worker.close()


#: Cases a worker runs before it is replaced: JIT libraries keep every compiled program
#: for the life of the process (TensorFlow's XLA cache is never evicted).
MAX_CASES_PER_WORKER = 100


def memory_maps() -> int | None:
    """This process's memory mappings (Linux; None elsewhere). Each program XLA compiles
    maps memory that is never unmapped: a TensorFlow worker gains about 700 maps per
    clipping case with replicas, and at ``vm.max_map_count`` (65530 by default) LLVM
    fails with "Cannot allocate memory" and the process dies by SIGSEGV."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def map_limit() -> int:
    """Half the kernel's per-process limit of memory maps: a worker past it is replaced
    (the other half is headroom for the case that crosses it)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read()) // 2
    except (OSError, ValueError):
        return 32765


class WorkerPool:
    """Runs jobs on up to ``jobs`` worker processes with a per-job timeout; each worker is
    replaced after ``max_cases`` jobs, or once it holds more than ``max_maps`` memory
    maps. :meth:`run` runs suite cases; :meth:`run_jobs` any jobs of a server speaking
    the same protocol (``optcheck vectors check``)."""

    def __init__(self, jobs: int = 1, timeout: float = 120.0, load_timeout=LOAD_TIMEOUT,
                 max_cases: int = MAX_CASES_PER_WORKER, module: str = __name__,
                 max_maps: int | None = None):  # fmt: skip
        self.jobs = max(1, int(jobs))
        self.max_cases = max(1, int(max_cases))
        #: A worker reporting more memory maps than this is replaced (see memory_maps).
        self.max_maps = map_limit() if max_maps is None else int(max_maps)
        self.timeout = float(timeout)
        self.load_timeout = float(load_timeout)
        self.module = module
        self.restarts = 0
        self.started = 0

    def run(self, cases: list[Case], ctx: Context, on_result: Callable[[dict], None]) -> None:
        """Run ``cases``; ``on_result(result)`` as each one finishes (any order)."""
        context = ctx.to_dict()
        self.run_jobs(
            cases, {"op": "load", "context": context},
            lambda case: {"op": "run", "context": context, "case": case.to_dict()},
            lambda case, message, tb="", seconds=0.0: error_result(case, ctx, message, tb,
                                                                   seconds),
            on_result,
        )  # fmt: skip

    def run_jobs(self, jobs: list, load: dict, request: Callable[[object], dict],
                 error: Callable[..., dict], on_result: Callable[[dict], None],
                 on_load: Callable[[dict], None] | None = None) -> None:  # fmt: skip
        """Run ``jobs``: each worker is sent ``load`` once, then ``request(job)`` per job;
        a reply ``{"ok": true, "result": ...}`` is passed to ``on_result``, and a failure
        (error reply, crash, timeout) as ``error(job, message, traceback, seconds)``.
        ``on_load(reply)`` sees each successful load reply."""
        pending = deque(jobs)
        replies: queue.Queue = queue.Queue()
        workers: list[Worker] = []
        env = worker_env()

        def assign(w: Worker, job) -> None:
            w.case = job
            w.started = time.monotonic()
            w.deadline = w.started + self.timeout
            w.send(request(job))

        try:
            while pending or any(w.case is not None for w in workers):
                # Retire worn workers, then start or feed workers.
                for w in [w for w in workers if w.case is None and self._worn(w)]:
                    workers.remove(w)
                    w.stop()
                for w in workers:
                    if w.case is None and w.loaded and pending:
                        assign(w, pending.popleft())
                while pending and len(workers) < self.jobs:
                    with critical():  # a worker not yet in `workers` would be orphaned
                        w = Worker(replies, env, self.module)
                        workers.append(w)
                    self.started += 1
                    w.send(load)
                    w.case, w.deadline = pending.popleft(), time.monotonic() + self.load_timeout
                    w.started = time.monotonic()
                now = time.monotonic()
                deadlines = [w.deadline for w in workers if w.deadline is not None]
                wait = max(0.0, min(deadlines) - now) if deadlines else 1.0
                try:
                    w, line = replies.get(timeout=wait)
                except queue.Empty:
                    self._expire(workers, error, on_result)
                    continue
                if w not in workers:
                    continue  # a reply from a worker already killed
                job = w.case
                if line is None:  # the worker died
                    status = w.proc.wait(timeout=10)
                    tail = w.stderr_tail()
                    workers.remove(w)
                    w.close()
                    self.restarts += 1
                    if job is not None:
                        what = "loading the adapter" if not w.loaded else "running this case"
                        on_result(error(job, f"worker process died ({exit_text(status)}) "
                                        f"while {what}", tail, time.monotonic() - w.started))
                    continue
                reply = json.loads(line)
                if not w.loaded:  # the reply to "load"
                    w.loaded = True
                    if not reply["ok"]:  # loading is deterministic: every job fails alike
                        message = f"cannot load adapter: {reply['error']}"
                        for j in [job, *pending]:
                            on_result(error(j, message, reply["traceback"]))
                        pending.clear()
                        w.case, w.deadline = None, None
                        continue
                    if on_load is not None:
                        on_load(reply)
                    assign(w, job)
                    continue
                w.case, w.deadline = None, None
                w.served += 1
                w.maps = reply.get("maps")
                if reply["ok"]:
                    on_result(reply["result"])
                else:
                    on_result(error(job, reply["error"], reply["traceback"]))
        except BaseException:
            # Interrupted (or failing): kill at once, a busy or hung worker included.
            for w in workers:
                w.kill()
            workers.clear()
            raise
        finally:
            for w in workers:
                if w.case is None:
                    w.stop()
                else:
                    w.kill()

    def _worn(self, w: Worker) -> bool:
        return w.served >= self.max_cases or (w.maps or 0) > self.max_maps

    def _expire(self, workers, error, on_result) -> None:
        now = time.monotonic()
        for w in list(workers):
            if w.deadline is not None and w.deadline <= now and w.case is not None:
                job, loading = w.case, not w.loaded
                limit = self.load_timeout if loading else self.timeout
                tail = w.stderr_tail()
                w.kill()
                workers.remove(w)
                self.restarts += 1
                what = "loading the adapter" if loading else "the case"
                on_result(error(job, f"timeout after {limit:g}s ({what}); the worker was "
                                "killed", tail, now - w.started))


def exit_text(status: int | None) -> str:
    if status is None:
        return "still running"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


if __name__ == "__main__":
    main()
