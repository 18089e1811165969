"""Worker processes that send the LLM requests, so LiteLLM's CPU per call spreads over cores.

LiteLLM spends milliseconds of CPU on every call (docs/benchmarks.md) and a Python process runs
that on one core, so one process tops out at a few hundred calls a second whatever the
concurrency. With `workers=N`, the generating process keeps the plan, the journal, the rate
limits, the cost cap and the progress bar (llm.LLMClient, generate.py); it hands each request to
the least busy of N worker processes and gets back a `Reply` or a `CallError` (llm_call.py).
Each worker is one event loop that keeps LiteLLM's HTTP connections open for the whole run.

The link to a worker is a socket pair carrying length-prefixed pickles:
    parent -> worker: ("settings", CallSettings) once, ("call", id, messages) ..., ("stop",)
    worker -> parent: ("ready", pid, cpu_s) once LiteLLM is loaded, ("done", id, Reply | CallError) ...,
                      ("bye", cpu_s) when stopped (CPU seconds so far: the run's CPU without start-up)
A worker that dies is noticed when its link closes: each request it held is answered with
CallError("worker_died"), which the client retries like any failed attempt (a record is written
once, by the parent, or counted as failed after its attempts), and a new worker takes its place.
A worker exits when its link closes, so none outlives the run, even after `kill -9` of the parent.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from vdata_hub.errors import LLMError
from vdata_hub.generation.llm_call import CallError, CallSettings, Reply, pool_limits

FRAME = struct.Struct(">I")
# Requests in flight that one worker is given by default: at 0.2 s per reply that is ~160 calls/s,
# about what LiteLLM's CPU per call allows one process on a quiet core.
CALLS_PER_WORKER = 32
READY_TIMEOUT_S = 180.0  # importing LiteLLM takes 2-7 s on a busy 2-core machine
ANSWER_GRACE_S = 30.0  # beyond the request timeout, before a silent worker's request counts as timed out
MAX_RESTARTS = 10


def default_workers(concurrency: int) -> int:
    """One worker per CALLS_PER_WORKER requests in flight, at most one per CPU."""
    from vdata_hub.generation.local_model import cpu_threads

    return max(1, min(cpu_threads(), math.ceil(concurrency / CALLS_PER_WORKER)))


async def read_message(reader: asyncio.StreamReader):
    header = await reader.readexactly(FRAME.size)
    return pickle.loads(await reader.readexactly(FRAME.unpack(header)[0]))


def write_message(writer: asyncio.StreamWriter, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(FRAME.pack(len(data)) + data)


async def _exit_code(process: subprocess.Popen, timeout_s: float) -> Optional[int]:
    """The process's exit code once it has ended, or None if it runs on after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return process.returncode


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Worker:
    """The parent's end of one worker: its link, the requests it holds, its pid once ready."""

    def __init__(self, reader, writer, process: subprocess.Popen, forked: bool):
        self.reader = reader
        self.writer = writer
        self.process = process  # the process started for it, or (forked) the one that forked it
        self.forked = forked
        self.pid: Optional[int] = None
        self.pending: dict[int, asyncio.Future] = {}
        self.ready = False
        self.listener: Optional[asyncio.Task] = None
        self.cpu_at_ready = 0.0

    def kill(self) -> None:
        if not self.forked and self.process.poll() is None:
            self.process.kill()
        elif self.forked and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def exit_text(self) -> str:
        """How the worker ended, once its link has closed (a forked one's exit code is its parent's)."""
        if self.forked and self.ready:
            return f"pid {self.pid}"
        code = await _exit_code(self.process, 5)
        return "it exited" if code is None else _exit_text(code)


class WorkerPool:
    """N worker processes behind one `call(messages)`, as llm_call.LiteLLMCaller offers in-process.

    One process is started; it loads LiteLLM once and forks the others, so they start at once and
    share its memory (LiteLLM leaves ~180 MB of objects, frozen for the garbage collector, so
    copy-on-write leaves them shared). A worker that dies is replaced by a fresh process.
    """

    def __init__(self, settings: CallSettings, count: int):
        self.settings = settings
        self.count = count
        self.workers: list[_Worker] = []
        self.restarts = 0
        self.cpu_s = 0.0  # CPU seconds the stopped workers spent after loading LiteLLM
        self.fatal: Optional[BaseException] = None
        self._ids = itertools.count()
        self._changed: Optional[asyncio.Event] = None  # a worker became ready or was lost
        self._closing = False
        self._processes: list[subprocess.Popen] = []

    async def start(self) -> None:
        """Start the workers and wait until they have loaded LiteLLM (raises if one cannot)."""
        self._changed = asyncio.Event()
        await self._spawn(self.count)
        while self.fatal is None and not all(worker.ready for worker in self.workers):
            self._changed.clear()
            await self._changed.wait()
        if self.fatal is not None:
            raise self.fatal

    async def _spawn(self, count: int) -> None:
        pairs = [socket.socketpair() for _ in range(count)]
        child_fds = [child_end.fileno() for _, child_end in pairs]
        package_root = str(Path(__file__).resolve().parents[2])  # the same vdata_hub as this process
        code = (f"import sys; sys.path.insert(0, {package_root!r}); "
                "from vdata_hub.generation.llm_workers import serve; serve()")
        try:  # (not asyncio's subprocesses: their clean-up may reap a worker before its exit code is read)
            process = subprocess.Popen([sys.executable, "-c", code, *map(str, child_fds)], pass_fds=child_fds,
                                       stdin=subprocess.DEVNULL,
                                       env={**os.environ, **pool_limits(self.settings.concurrency)})
        finally:
            for _, child_end in pairs:
                child_end.close()
        self._processes.append(process)
        for index, (parent_end, _) in enumerate(pairs):
            reader, writer = await asyncio.open_connection(sock=parent_end)
            worker = _Worker(reader, writer, process, forked=index > 0)
            write_message(writer, ("settings", self.settings))
            self.workers.append(worker)
            worker.listener = asyncio.create_task(self._listen(worker))

    async def _listen(self, worker: _Worker) -> None:
        try:
            kind, worker.pid, worker.cpu_at_ready = await asyncio.wait_for(read_message(worker.reader),
                                                                           READY_TIMEOUT_S)
            worker.ready = kind == "ready"
            self._changed.set()
            while True:
                message = await read_message(worker.reader)
                if message[0] == "bye":
                    self.cpu_s += message[1] - worker.cpu_at_ready
                    continue
                future = worker.pending.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message[2])
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError):
            pass
        await self._lost(worker)

    async def _lost(self, worker: _Worker) -> None:
        """The link closed: answer what the worker held, and start a replacement."""
        self.workers.remove(worker)
        worker.writer.close()
        if not self._closing:
            worker.kill()  # a link that broke on a live worker (or one that never got ready)
        how = await worker.exit_text()
        for future in worker.pending.values():
            if not future.done():
                future.set_result(CallError("worker_died", f"the LLM worker process sending it exited ({how})"))
        worker.pending.clear()
        if self._closing:
            return
        if not worker.ready:
            self.fatal = self.fatal or LLMError(f"an LLM worker process did not start ({how}); see the messages above")
        elif self.restarts >= MAX_RESTARTS:
            self.fatal = self.fatal or LLMError(f"LLM worker processes keep dying ({self.restarts + 1} so far, "
                                                f"last: {how})")
        else:
            self.restarts += 1
            await self._spawn(1)
        self._changed.set()

    async def _least_busy(self) -> _Worker:
        while True:
            if self.fatal is not None:
                raise self.fatal
            ready = [worker for worker in self.workers if worker.ready]
            if ready:
                return min(ready, key=lambda worker: len(worker.pending))
            self._changed.clear()
            await self._changed.wait()

    async def call(self, messages: list[dict]) -> Reply | CallError:
        worker = await self._least_busy()
        call_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        worker.pending[call_id] = future
        write_message(worker.writer, ("call", call_id, messages))
        try:
            return await asyncio.wait_for(future, self.settings.timeout_s + ANSWER_GRACE_S)
        except asyncio.TimeoutError:
            return CallError("timeout", "no answer from the LLM worker process")
        finally:
            worker.pending.pop(call_id, None)

    async def close(self) -> None:
        """Stop every worker (each says goodbye with its CPU time, then exits); kill any that lingers."""
        self._closing = True
        workers = list(self.workers)
        for worker in workers:
            write_message(worker.writer, ("stop",))
        listeners = [worker.listener for worker in workers if worker.listener is not None]
        done, lingering = await asyncio.wait(listeners, timeout=5) if listeners else (set(), set())
        for worker in workers:
            if worker.listener in lingering:
                worker.kill()
        await asyncio.gather(*listeners, return_exceptions=True)
        for process in self._processes:
            if await _exit_code(process, 5) is None:
                process.kill()
                process.wait()


def serve() -> None:
    """A worker's life: `python -c ... serve() FD...`, one FD per worker to run.

    LiteLLM is loaded once, before any thread or event loop exists, then the process forks one
    worker for each FD after the first and serves the first itself. Each exits when its link closes.
    """
    from vdata_hub.generation.llm_call import import_litellm

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the links
    links = [int(fd) for fd in sys.argv[1:]]
    import_litellm()
    mine, forked = links[0], []
    for fd in links[1:]:
        pid = os.fork()
        if pid == 0:
            mine, forked = fd, []
            break
        forked.append(pid)
    for fd in links:
        if fd != mine:
            os.close(fd)
    # Not asyncio.run: its clean-up would cancel the requests still in flight when the run stops,
    # and each cancelled LiteLLM call prints a warning; os._exit below drops them silently.
    asyncio.new_event_loop().run_until_complete(_serve(socket.socket(fileno=mine)))
    for pid in forked:  # they end with the run too; waiting adds their CPU time to this process's children
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # LiteLLM's cached clients need no goodbye: the parent has what it asked for


async def _serve(link: socket.socket) -> None:
    from vdata_hub.generation.llm_call import LiteLLMCaller

    reader, writer = await asyncio.open_connection(sock=link)
    try:
        _, settings = await read_message(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        return  # the run ended before this worker was needed
    caller = LiteLLMCaller(settings)
    write_message(writer, ("ready", os.getpid(), time.process_time()))
    tasks: set = set()

    async def answer(call_id: int, messages: list[dict]) -> None:
        write_message(writer, ("done", call_id, await caller.call(messages)))

    while True:
        try:
            message = await read_message(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            break  # the parent is gone
        if message[0] == "stop":
            write_message(writer, ("bye", time.process_time()))
            await writer.drain()
            break
        task = asyncio.create_task(answer(message[1], message[2]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
