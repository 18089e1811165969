"""A model endpoint that cannot be reached, or that fails records, as a user of the CLI sees it.

Through the real CLI in a subprocess: a closed port, a name that does not resolve and a host
that never completes the handshake stop the run at once with one line naming the endpoint; a run
that ends with failed records exits with the "partly done" code and says so even with --quiet;
failures.jsonl tells a dropped connection from an HTTP 500.
"""

import json
import socket
import subprocess
import sys

import pytest

from tests.test_generate import ROOT, write_spec
from vdata_hub.errors import EndpointUnreachable, PartlyDone
from vdata_hub.generation.prompts import plan_records
from vdata_hub.generation.spec import load_spec

UNREACHABLE = EndpointUnreachable.exit_code


def vdata(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdata_hub", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once this socket closes


def assert_stopped_on_one_line(result, api_base: str, cause: str, out) -> None:
    assert result.returncode == UNREACHABLE and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: cannot reach {api_base}: {cause}; check --api-base and that the server is running"]
    assert not (out / "failures.jsonl").exists() or (out / "failures.jsonl").read_text() == ""
    assert not (out / "progress.jsonl").exists() or (out / "progress.jsonl").read_text() == ""


@pytest.mark.parametrize("workers", ["0", "1"])
def test_nothing_listening_stops_the_run_with_one_line(tmp_path, workers):
    api_base = f"http://127.0.0.1:{closed_port()}/v1"
    out = tmp_path / "out"
    result = vdata("gen", str(out), "demo", "--model", "openai/x", "--api-base", api_base, "-k", "x", "--quiet",
                   "--workers", workers)
    assert_stopped_on_one_line(result, api_base, "connection refused", out)


def test_a_name_that_does_not_resolve_stops_the_run_with_one_line(tmp_path):
    api_base = "http://no-such-host.invalid/v1"  # .invalid never resolves (RFC 6761)
    out = tmp_path / "out"
    result = vdata("gen", str(out), "demo", "--model", "openai/x", "--api-base", api_base, "-k", "x", "--quiet")
    assert result.returncode == UNREACHABLE and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach {api_base}: DNS lookup failed")


def test_a_host_that_never_accepts_stops_the_run_after_the_connect_timeout(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its queue is full, handshakes go unanswered
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        api_base = f"http://127.0.0.1:{port}/v1"
        spec = write_spec(tmp_path, num_records=2, retries={"max_attempts": 3, "backoff_base_s": 0.01, "timeout_s": 1})
        out = tmp_path / "out"
        result = vdata("gen", str(out), str(spec), "--api-base", api_base, "-k", "x", "--quiet")
        for filler in fillers:
            filler.close()
    assert_stopped_on_one_line(result, api_base, "connect timed out", out)


def test_failed_records_exit_partly_done_and_quiet_still_says_how_many(tmp_path, fake_llm):
    fake_llm.set(fail_matching={"healthcare": "500", "education": "disconnect"})
    spec = write_spec(tmp_path, num_records=12, variables={"domain": ["healthcare", "education", "hiring and work"],
                                                           "bias_axis": ["gender", "age"]},
                      retries={"max_attempts": 2, "backoff_base_s": 0.01, "timeout_s": 5})
    planned = plan_records(load_spec(spec))
    dropped = sum(p.domain == "education" for p in planned)
    failing = dropped + sum(p.domain == "healthcare" for p in planned)
    out = tmp_path / "out"
    result = vdata("gen", str(out), str(spec), "--api-base", fake_llm.base_url, "-k", "x", "--quiet")
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert result.returncode == PartlyDone.exit_code == 6 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: {failing} of 12 records failed after their retries (see {out / 'failures.jsonl'}); "
        "run the same command again to retry them"]
    reasons = {f["variables"]["domain"]: f["reason"] for f in failures}
    assert 0 < dropped < failing < 12 and len(failures) == failing and set(reasons) == {"healthcare", "education"}
    assert reasons["healthcare"].startswith("server error (HTTP 500)")
    assert reasons["education"] == "connection lost: Server disconnected"
    summary = json.loads((out / "run_summary.json").read_text())
    assert (summary["records"], summary["failed"]) == (12 - failing, failing)
    assert summary["errors"]["connection_lost"] == 2 * dropped  # two attempts each


def test_a_complete_run_still_exits_zero(tmp_path, fake_llm):
    result = vdata("gen", str(tmp_path / "out"), str(write_spec(tmp_path, num_records=3)), "--api-base",
                   fake_llm.base_url, "-k", "x", "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
