"""The pytest ``hub`` fixture: a fresh emulator subprocess per test session on the port that
``tests/conftest.py`` put in ``HF_ENDPOINT`` before any Hub client was imported.

Running the server in its own process keeps the GIL free for the clients and lets tests use
``HF_HUB_OFFLINE`` without cutting the server off; faults are injected over HTTP for the same reason.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ALICE_TOKEN = "hf_alice_write_token"
ALICE_READ_TOKEN = "hf_alice_read_token"
BOB_TOKEN = "hf_bob_write_token"


class HubEmulator:
    """Handle on a running emulator: endpoint, tokens, data folder and control calls."""

    def __init__(self, endpoint, data_dir, process):
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.process = process
        self.token = ALICE_TOKEN
        self.read_token = ALICE_READ_TOKEN
        self.bob_token = BOB_TOKEN
        self.user = "alice"
        self.org = "org"

    def control(self, method, what, payload=None):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.endpoint}/_emulator/{what}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def fail_next(self, method, path_regex, status=500, count=1, code=None, message=None, skip=0, when="before",
                  disconnect=False):
        """Fail the next ``count`` requests matching METHOD (``"*"``: any) and the regex (searched in path+query).

        ``skip`` lets that many matching requests through first (fail the 3rd LFS upload: ``skip=2``).
        ``when="before"`` answers ``status`` without doing anything; ``when="after"`` does the work (the
        commit lands, the PR merges) and then answers ``status``, as when a gateway times out on a request
        the Hub completed. ``disconnect=True`` closes the connection instead of answering at all."""
        self.control("POST", "faults", {"method": method, "path_regex": path_regex, "status": status,
                                        "count": count, "code": code, "message": message, "skip": skip,
                                        "when": when, "disconnect": disconnect})

    def clear_faults(self):
        self.control("DELETE", "faults")

    def settings(self, **values):
        """Change server settings (see README): page sizes such as ``tree_page_size=2``, or the Hub's
        limits such as ``max_entries_per_folder=3`` (``None`` turns a limit off). Returns them all."""
        return self.control("POST", "settings", values)

    def reset_settings(self):
        return self.control("DELETE", "settings")

    @contextlib.contextmanager
    def temporary_settings(self, **values):
        """``with hub.temporary_settings(max_files_per_commit=100): ...``, then back to the defaults."""
        self.settings(**values)
        try:
            yield self
        finally:
            self.reset_settings()

    def add_alias(self, alias, repo_id, repo_type="model"):
        """Make ``alias`` (a canonical id like ``gpt2``, or an old ``ns/name``) redirect (307) to ``repo_id``,
        as the Hub does for the canonical repos it moved under organisations and for renamed repos."""
        return self.control("POST", "aliases", {"alias": alias, "repo_id": repo_id, "type": repo_type})

    def requests(self):
        """The server's log of handled requests: ``[{method, path, status}, ...]`` (``"disconnected"``
        as the status of a request whose connection a fault dropped)."""
        return self.control("GET", "requests")

    def clear_requests(self):
        self.control("DELETE", "requests")


def start_emulator(port, data_dir, users, orgs, timeout=30, root=REPO_ROOT):
    """Start ``python -m tests.hub_emulator`` (from checkout ``root``) and wait until it answers."""
    args = [sys.executable, "-m", "tests.hub_emulator", "--port", str(port), "--data", str(data_dir)]
    for user in users:
        args += ["--user", user]
    for org in orgs:
        args += ["--org", org]
    log = open(Path(data_dir) / "server.log", "ab")
    process = subprocess.Popen(args, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Hub emulator exited with {process.returncode}; see {data_dir}/server.log")
        try:
            urllib.request.urlopen(f"{endpoint}/_emulator/health", timeout=1).close()
            return process
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"Hub emulator did not answer within {timeout}s; see {data_dir}/server.log")


@pytest.fixture(scope="session")
def hub():
    endpoint = os.environ["HF_ENDPOINT"].rstrip("/")
    port = urlparse(endpoint).port
    data_dir = tempfile.mkdtemp(prefix="hub-emulator-")
    users = [f"alice:{ALICE_TOKEN}", f"alice:{ALICE_READ_TOKEN}:read", f"bob:{BOB_TOKEN}"]
    process = start_emulator(port, data_dir, users, ["org:alice"])
    try:
        yield HubEmulator(endpoint, data_dir, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not os.environ.get("HUB_EMULATOR_KEEP"):
            shutil.rmtree(data_dir, ignore_errors=True)
