"""A Hub that cannot be reached (nothing listening, a host name that does not resolve, a server
that never answers): every command that talks to the Hub ends with one line naming the endpoint
and a non-zero exit, no traceback. Each test runs the real `vdata` in a subprocess."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.test_contribute import save_dataset, two_axes

ROOT = Path(__file__).resolve().parents[1]
REFUSED = "http://127.0.0.1:9"  # nothing listens on the discard port
NO_SUCH_HOST = "http://no-such-host.invalid"  # .invalid never resolves (RFC 2606)
COMMANDS = {
    "pull": ["pull", "{tmp}/rows.jsonl", "--repo", "org/vdata"],
    "pull --sql": ["pull", "{tmp}/rows.csv", "--repo", "org/vdata", "--sql", "SELECT count(*) FROM vdata"],
    "stats": ["stats", "org/vdata"],
    "contribute": ["contribute", "{out}", "--repo", "org/vdata"],
    "contribute --dry-run": ["contribute", "{out}", "--repo", "org/vdata", "--dry-run"],
    "review": ["review", "--repo", "org/vdata"],
    "card": ["card", "--repo", "org/vdata"],
    "init-repo": ["init-repo", "org/new-vdata"],
    "eval report --push": ["eval", "report", "--push", "--repo", "org/vdata", "--output", "{tmp}/report"],
}


@pytest.fixture(scope="module")
def silent_endpoint():
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory):
    return save_dataset(tmp_path_factory.mktemp("generated") / "out", two_axes(6))


def vdata(args, endpoint, tmp_path, local_dataset):
    argv = [arg.format(tmp=tmp_path, out=local_dataset) for arg in args]
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_not_a_real_token_000", "VDATA_HUB_TIMEOUT": "1"}
    return subprocess.run([sys.executable, "-m", "vdata_hub", *argv], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, env=env)


def assert_one_line_naming(result, endpoint):
    assert result.returncode not in (0, None), result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert lines and lines[-1].startswith(f"error: cannot reach the Hub at {endpoint}"), result.stderr
    assert len(lines) <= 2, result.stderr  # at most a progress note before it (contribute's "checking ...")
    assert "hf_not_a_real_token" not in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_refused_connection(command, tmp_path, local_dataset):
    result = vdata(COMMANDS[command], REFUSED, tmp_path, local_dataset)
    assert_one_line_naming(result, REFUSED)
    assert "connection refused" in result.stderr
    assert not (tmp_path / "report").exists()  # eval report --push checked the Hub before the evaluation
    assert list(tmp_path.iterdir()) == []  # no partial output


@pytest.mark.parametrize("command", ["pull", "contribute", "stats", "eval report --push"])
def test_host_name_that_does_not_resolve(command, tmp_path, local_dataset):
    assert_one_line_naming(vdata(COMMANDS[command], NO_SUCH_HOST, tmp_path, local_dataset), NO_SUCH_HOST)


@pytest.mark.parametrize("command", ["pull", "contribute", "review", "card", "init-repo"])
def test_server_that_never_answers(command, tmp_path, local_dataset, silent_endpoint):
    result = vdata(COMMANDS[command], silent_endpoint, tmp_path, local_dataset)
    assert_one_line_naming(result, silent_endpoint)
    assert "no answer within 1 s" in result.stderr


def test_sql_that_will_be_refused_is_refused_before_any_network_call(tmp_path, local_dataset):
    for sql in ["COPY vdata TO '/tmp/x.csv'", "SELECT * FROM read_csv('/etc/passwd')", "SELECT 1; SELECT 2",
                "SELECT getenv('HF_TOKEN')"]:
        result = vdata(["pull", "{tmp}/x.csv", "--repo", "org/vdata", "--sql", sql], REFUSED, tmp_path,
                       local_dataset)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and "refused" in result.stderr, result.stderr
        assert "cannot reach" not in result.stderr and result.stderr.count("\n") == 1
