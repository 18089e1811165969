"""pytest fixture `fake_llm`: the fake server on a free loopback port, reset before each test.

The server runs in a background thread of the test process; tests and the subprocesses they
start reach it over real HTTP at `fake_llm.base_url` (…/v1) with LiteLLM model "openai/fake-model".
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.request

import pytest
from aiohttp import web

from tests.fake_llm.server import BACKLOG, FakeLLM, make_app


class FakeLLMServer:
    """Handle on a running fake server: settings, counters, and the URL to call."""

    def __init__(self, host: str = "127.0.0.1"):
        self.state = FakeLLM()
        self.host = host
        self.port = _free_port(host)
        self.root = f"http://{host}:{self.port}"
        self.base_url = f"{self.root}/v1"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-llm", daemon=True)

    def start(self) -> "FakeLLMServer":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake LLM server did not start")
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(make_app(self.state), access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, self.host, self.port, backlog=BACKLOG).start())
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def set(self, **settings) -> dict:
        """Change behaviour over HTTP, e.g. set(latency=0.2, faults=[["429", 2]], retry_after="1")."""
        return self._post("/control", settings)

    def reset(self) -> dict:
        return self._post("/control", {"reset": True})

    def stats(self, log: bool = False) -> dict:
        with urllib.request.urlopen(f"{self.root}/stats" + ("?log=1" if log else ""), timeout=10) as reply:
            return json.loads(reply.read())

    @property
    def requests(self) -> int:
        return self.stats()["requests"]

    def _post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.root + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def _fake_llm_server():
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(_fake_llm_server):
    """The shared fake server, with default behaviour and zeroed counters."""
    _fake_llm_server.reset()
    yield _fake_llm_server
    _fake_llm_server.reset()
