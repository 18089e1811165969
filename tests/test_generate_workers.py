"""generate with its LLM requests sent from worker processes (`--workers N`), against the fake server.

The parent keeps the plan, the journal, the limits and the retries, so what holds in-process
holds here: every record once, faults retried, AIMD and provider pauses; and a worker that dies
costs a retry of what it held, nothing more.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_generate import ROOT, load_rows, run, write_spec
from vdata_hub.generation.prompts import plan_records
from vdata_hub.generation.spec import load_spec


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, timeout_s: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def done_lines(out: Path) -> int:
    journal = out / "progress.jsonl"
    return journal.read_bytes().count(b"\n") if journal.exists() else 0


def cli(out: Path, spec: Path, fake_llm, *options: str) -> list[str]:
    return [sys.executable, "-m", "vdata_hub", "generate", str(out), str(spec), "--api-base", fake_llm.base_url,
            "-k", "x", "-q", *options]


def test_two_workers_write_every_planned_record_once(tmp_path, fake_llm):
    fake_llm.set(latency=0.05)
    spec = write_spec(tmp_path, num_records=60, concurrency=16)
    summary = run(tmp_path, fake_llm, spec, workers=2)
    rows = load_rows(tmp_path / "out")
    assert (summary.records, summary.workers, summary.worker_restarts, summary.status) == (60, 2, 0, "complete")
    assert sorted(r["plan_key"] for r in rows) == sorted(p.id for p in plan_records(load_spec(spec)))
    assert fake_llm.requests == 60
    assert json.loads((tmp_path / "out" / "run_summary.json").read_text())["workers"] == 2


def test_faults_are_retried_the_same_through_workers(tmp_path, fake_llm):
    kinds = ["429", "500", "hang", "html", "empty", "empty_text", "disconnect"]
    fake_llm.set(faults=[[kind, 1] for kind in kinds], hang_s=3, retry_after="0")
    retries = {"max_attempts": 10, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 1}
    summary = run(tmp_path, fake_llm, write_spec(tmp_path, num_records=3, concurrency=1, retries=retries), workers=1)
    stats = fake_llm.stats()
    assert all(stats[f"fault_{kind}"] == 1 for kind in kinds) and stats["requests"] == 3 + len(kinds)
    assert (summary.records, summary.failed, summary.retries, summary.rate_limited, summary.timeouts) == (3, 0, 7, 1, 1)
    assert summary.errors["connection_lost"] == 1
    assert summary.errors["http_500"] == 2  # the 500, and the HTML page that LiteLLM reports as one


def test_adaptive_concurrency_stays_in_the_parent(tmp_path, fake_llm):
    fake_llm.set(max_concurrent=3, latency=0.05)
    retries = {"max_attempts": 10, "backoff_base_s": 0.02, "backoff_max_s": 0.2, "timeout_s": 5}
    summary = run(tmp_path, fake_llm, write_spec(tmp_path, num_records=60, concurrency=24, retries=retries), workers=2)
    assert summary.records == 60 and summary.failed == 0
    assert summary.rate_limited > 0 and summary.concurrency_decreases >= 1 and summary.min_concurrency < 24


def test_provider_rate_limit_headers_reach_the_parent(tmp_path, fake_llm):
    fake_llm.set(ratelimit_headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
    summary = run(tmp_path, fake_llm, write_spec(tmp_path, num_records=2, concurrency=1), workers=2)
    first, second = fake_llm.stats(log=True)["log"]
    assert summary.provider_pauses == 2 and second["t"] - first["t"] >= 0.9


def test_a_worker_killed_mid_run_costs_a_retry_not_a_record(tmp_path, fake_llm):
    fake_llm.set(latency=0.3)
    spec = write_spec(tmp_path, num_records=80, concurrency=8)
    out = tmp_path / "out"
    process = subprocess.Popen(cli(out, spec, fake_llm, "--workers", "2"), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: done_lines(out) >= 10 and len(descendants(process.pid)) == 2), process.stderr
        victim = max(descendants(process.pid))  # the second worker, forked by the first
        os.kill(victim, signal.SIGKILL)
        assert process.wait(timeout=300) == 0, process.stderr.read()
    finally:
        process.kill()
    summary = json.loads((out / "run_summary.json").read_text())
    rows = load_rows(out)
    assert sorted(r["plan_key"] for r in rows) == sorted(p.id for p in plan_records(load_spec(spec)))
    assert (summary["records"], summary["failed"], summary["worker_restarts"]) == (80, 0, 1)
    assert 1 <= summary["errors"].get("worker_died", 0) <= 8  # what the dead worker held in flight, sent again
    # Every attempt past the 80 is a retry the run counted, and the server saw no other request.
    assert summary["requests"] == 80 + summary["retries"]
    assert 80 <= fake_llm.requests <= summary["requests"]  # (some the dead worker held may not have left it yet)


def test_no_worker_outlives_a_killed_run(tmp_path, fake_llm):
    fake_llm.set(latency=0.3)
    spec = write_spec(tmp_path, num_records=200, concurrency=8)
    out = tmp_path / "out"
    process = subprocess.Popen(cli(out, spec, fake_llm, "--workers", "2"), cwd=ROOT, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: done_lines(out) >= 5 and len(descendants(process.pid)) == 2)
        workers = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert wait_for(lambda: not any(alive(pid) for pid in workers), 30)
    finally:
        process.kill()


def test_ctrl_c_stops_the_workers_with_one_line_and_the_rerun_finishes(tmp_path, fake_llm):
    fake_llm.set(latency=0.3)
    spec = write_spec(tmp_path, num_records=120, concurrency=8)
    out = tmp_path / "out"
    process = subprocess.Popen(cli(out, spec, fake_llm, "--workers", "2"), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: done_lines(out) >= 10 and len(descendants(process.pid)) == 2)
        workers = descendants(process.pid)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert (process.returncode, stdout, stderr) == (130, "", "error: interrupted; run the same command again to resume\n")
    assert wait_for(lambda: not any(alive(pid) for pid in workers), 30)
    rerun = subprocess.run(cli(out, spec, fake_llm), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and len(load_rows(out)) == 120


def test_a_worker_that_cannot_start_stops_the_run_with_one_line(tmp_path, fake_llm):
    broken = tmp_path / "broken"
    (broken / "litellm").mkdir(parents=True)
    (broken / "litellm" / "__init__.py").write_text("raise ImportError('this litellm is broken')\n")
    env = {**os.environ, "PYTHONPATH": str(broken)}
    spec = write_spec(tmp_path, num_records=3)
    result = subprocess.run(cli(tmp_path / "out", spec, fake_llm, "--workers", "1"), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == ("error: an LLM worker process did not start (exit code 1); "
                                              "see the messages above")
    assert "this litellm is broken" in result.stderr and fake_llm.requests == 0


@pytest.mark.parametrize("workers", ["-1", "two"])
def test_a_bad_workers_value_is_refused_before_any_call(tmp_path, fake_llm, workers):
    result = subprocess.run(cli(tmp_path / "out", write_spec(tmp_path), fake_llm, "--workers", workers), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--workers" in result.stderr and fake_llm.requests == 0
