"""The pytest ``hub`` fixture: a fresh emulator subprocess per test session on the port that
``tests/conftest.py`` put in ``HF_ENDPOINT`` before any Hub client was imported.

Running the server in its own process keeps the GIL free for the clients and lets tests use
``HF_HUB_OFFLINE`` without cutting the server off; faults are injected over HTTP for the same reason.
"""

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

    def fail_next(self, method, path_regex, status, count=1, code=None, message=None):
        """Answer the next ``count`` requests matching METHOD and regex (searched in path+query) with ``status``."""
        self.control("POST", "faults", {"method": method, "path_regex": path_regex, "status": status,
                                        "count": count, "code": code, "message": message})

    def clear_faults(self):
        self.control("DELETE", "faults")

    def settings(self, **values):
        """Change server settings, e.g. ``tree_page_size=2`` to exercise pagination."""
        return self.control("POST", "settings", values)

    def requests(self):
        """The server's log of handled requests: ``[{method, path, status}, ...]``."""
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
