"""Batch mode against the fake server's batch endpoints, through the real clients (LiteLLM for
OpenAI, the anthropic and google-genai SDKs), including kill -9 at every stage of a run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.test_generate import ROOT, load_rows, write_spec
from vdata_hub.errors import AuthError, BudgetExceeded
from vdata_hub.generation.batch import batch_cancel, batch_status
from vdata_hub.generation.batch_providers import NoBatchAPI
from vdata_hub.generation.cost import model_price
from vdata_hub.generation.generate import generate
from vdata_hub.generation.prompts import plan_records
from vdata_hub.generation.spec import load_spec

FAST = {"poll_s": 0.05}


def batch_spec(tmp_path, **fields):
    fields.setdefault("batch", True)
    fields.setdefault("batch_options", FAST)
    return write_spec(tmp_path, **fields)


def run_batch(tmp_path, fake_llm, spec, wait=True, api_base=None, **options):
    return generate(out=str(tmp_path / "out"), spec=str(spec), api_base=api_base or fake_llm.base_url,
                    api_key="test-key", wait=wait, **options)


def assert_each_answer_paid_once(fake_llm):
    stats = fake_llm.stats()
    assert stats["batch_answered_twice"] == [], "a record was paid for twice"
    return stats


def test_batch_run_end_to_end_gives_the_records_of_a_real_time_run(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=0.3, batch_finalizing_s=0.2, batch_validating_s=0.1)
    spec = batch_spec(tmp_path, model="openai/gpt-4o-mini")
    summary = run_batch(tmp_path, fake_llm, spec)
    rows = load_rows(tmp_path / "out")
    planned = plan_records(load_spec(spec))
    assert summary.status == "complete" and summary.records == 12 and summary.batch["batches_now"] == 1
    assert sorted(r["plan_key"] for r in rows) == sorted(p.id for p in planned)
    assert fake_llm.requests == 0  # no real-time call
    price = model_price("openai/gpt-4o-mini", batch=True)
    assert price.key == "gpt-4o-mini" and price.input_per_token == 7.5e-08 and not price.assumed_discount
    for row in rows:
        assert row["text"].strip() and row["model"] == "openai/gpt-4o-mini"
        assert row["cost_usd"] == pytest.approx(row["input_tokens"] * 7.5e-08 + row["output_tokens"] * 3e-07)
    stats = assert_each_answer_paid_once(fake_llm)
    assert stats["batch_submitted_total"] == 12 and stats["batch_submitted_twice"] == []


def test_submit_returns_at_once_and_the_same_command_collects(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=3600)
    spec = batch_spec(tmp_path)
    first = run_batch(tmp_path, fake_llm, spec, wait=False)
    assert first.status == "waiting" and first.records == 0 and first.batch["in_flight"] == 12
    assert "run the same command again to collect" in first.summary()
    again = run_batch(tmp_path, fake_llm, spec, wait=False)  # still running: nothing is sent again
    assert again.status == "waiting" and again.batch["submitted_now"] == 0
    fake_llm.set(batch_finish_s=0)
    done = run_batch(tmp_path, fake_llm, spec, wait=False)
    assert done.status == "complete" and done.records == 12 and done.batch["collected_now"] == 1
    stats = assert_each_answer_paid_once(fake_llm)
    assert stats["batch_creates"] == 1 and stats["batch_submitted_twice"] == []


def test_requests_are_split_to_the_batch_limit(tmp_path, fake_llm):
    fake_llm.set(batch_max_requests=5)  # the server refuses bigger batches
    spec = batch_spec(tmp_path, batch_options={**FAST, "max_requests": 5})
    summary = run_batch(tmp_path, fake_llm, spec)
    assert summary.records == 12 and summary.batch["batches_now"] == 3
    assert fake_llm.stats()["batch_creates"] == 3


def test_failed_requests_are_resubmitted_within_the_retry_budget(tmp_path, fake_llm):
    fake_llm.set(batch_faults=[["500", 3]])
    summary = run_batch(tmp_path, fake_llm, batch_spec(tmp_path))
    stats = assert_each_answer_paid_once(fake_llm)
    assert summary.status == "complete" and summary.records == 12
    assert stats["batch_creates"] == 2 and len(stats["batch_submitted_twice"]) == 3


def test_refused_requests_fail_without_retry_and_errors_that_persist_use_the_budget(tmp_path, fake_llm):
    fake_llm.set(batch_fail_matching={"healthcare": "400", "hiring": "500"})
    spec = batch_spec(tmp_path, retries={"max_attempts": 2})
    summary = run_batch(tmp_path, fake_llm, spec)
    failures = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    by_reason = {f["reason"].split(":")[0]: f for f in failures}
    assert summary.records == 0 and summary.failed == 12 and summary.status == "incomplete"
    assert by_reason["HTTP 400"]["attempts"] == 1 and by_reason["HTTP 500"]["attempts"] == 2
    assert "raise retries.max_attempts" in summary.summary()


def test_an_expired_batch_keeps_its_finished_results(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=1.0, batch_expire_s=0.5)
    spec = batch_spec(tmp_path)
    run_batch(tmp_path, fake_llm, spec, wait=False)
    time.sleep(0.7)
    assert batch_status(str(tmp_path / "out"), api_key="test-key").batches[0]["status"] == "expired"
    fake_llm.set(batch_finish_s=0, batch_expire_s=86400)  # the batches sent from now on finish
    expired = run_batch(tmp_path, fake_llm, spec, wait=False)  # collects the expired batch, resubmits the rest
    assert expired.records == 6 and expired.batch["submitted_now"] == 6
    failures = (tmp_path / "out" / "failures.jsonl").read_text()
    assert "batch_expired" in failures
    done = run_batch(tmp_path, fake_llm, spec, wait=False)
    assert done.status == "complete" and done.records == 12 and done.failed == 0
    stats = assert_each_answer_paid_once(fake_llm)
    assert len(stats["batch_submitted_twice"]) == 6


def test_cancel_keeps_what_was_answered_and_a_rerun_sends_the_rest(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=6.0)
    spec = batch_spec(tmp_path)
    run_batch(tmp_path, fake_llm, spec, wait=False)
    time.sleep(1.5)
    cancelled = batch_cancel(str(tmp_path / "out"), api_key="test-key")
    assert len(cancelled) == 1 and fake_llm.stats()["batch_cancels"] == 1
    status = batch_status(str(tmp_path / "out"), api_key="test-key")
    assert status.batches[0]["status"] in ("cancelling", "cancelled")
    fake_llm.set(batch_finish_s=0)
    done = run_batch(tmp_path, fake_llm, spec)
    stats = assert_each_answer_paid_once(fake_llm)
    assert done.status == "complete" and done.records == 12
    assert 0 < len(stats["batch_submitted_twice"]) < 12


def test_status_shows_each_batch_with_the_provider_status(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=3600, batch_validating_s=0)
    spec = batch_spec(tmp_path, batch_options={**FAST, "max_requests": 6})
    run_batch(tmp_path, fake_llm, spec, wait=False)
    status = batch_status(str(tmp_path / "out"), api_key="test-key")
    assert [b["status"] for b in status.batches] == ["in_progress", "in_progress"]
    assert all(b["requests"] == 6 and b["done"] == 0 for b in status.batches)
    assert "12 requests not collected yet" in status.summary()


def test_the_cost_cap_limits_what_is_submitted(tmp_path, fake_llm):
    spec = batch_spec(tmp_path, model="openai/gpt-4o-mini", max_cost_usd=0.0005,
                      sampling={"max_tokens": 400})
    with pytest.raises(BudgetExceeded):
        run_batch(tmp_path, fake_llm, spec)
    stats = fake_llm.stats()
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert 0 < stats["batch_submitted_total"] < 12 and summary["cost_usd"] <= 0.0005


def test_a_refused_key_stops_the_run_with_a_message_without_the_key(tmp_path, fake_llm):
    with pytest.raises(AuthError) as error:
        generate(out=str(tmp_path / "out"), spec=str(batch_spec(tmp_path)), api_base=fake_llm.base_url,
                 api_key="bad-key")
    assert "bad-key" not in str(error.value) and fake_llm.stats()["batch_creates"] == 0


@pytest.mark.parametrize("model", ["groq/llama-3.1-8b-instant", "local"])
def test_a_provider_without_batch_api_gets_a_one_line_error(tmp_path, fake_llm, model):
    with pytest.raises(NoBatchAPI, match="run without --batch") as error:
        run_batch(tmp_path, fake_llm, batch_spec(tmp_path, model=model))
    assert "\n" not in str(error.value)


def test_anthropic_message_batches_through_the_sdk(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=0.2, batch_faults=[["500", 1]])
    spec = batch_spec(tmp_path, model="anthropic/claude-haiku-4-5")
    summary = run_batch(tmp_path, fake_llm, spec, api_base=fake_llm.root)
    rows = load_rows(tmp_path / "out")
    assert summary.status == "complete" and len(rows) == 12
    assert {r["finish_reason"] for r in rows} == {"stop"}  # as LiteLLM words it for real-time replies
    price = model_price("anthropic/claude-haiku-4-5", batch=True)
    assert all(r["cost_usd"] == pytest.approx(r["input_tokens"] * price.input_per_token
                                              + r["output_tokens"] * price.output_per_token) for r in rows)
    assert_each_answer_paid_once(fake_llm)


def test_gemini_batch_jobs_through_the_sdk(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=0.2)
    spec = batch_spec(tmp_path, model="gemini/gemini-2.5-flash")
    summary = run_batch(tmp_path, fake_llm, spec, api_base=fake_llm.root)
    assert summary.status == "complete" and len(load_rows(tmp_path / "out")) == 12
    assert_each_answer_paid_once(fake_llm)


def test_a_collect_cut_short_is_done_again_without_duplicates(tmp_path, fake_llm):
    """A kill after the records were journaled but before the ledger said so."""
    spec = batch_spec(tmp_path)
    run_batch(tmp_path, fake_llm, spec)
    ledger = tmp_path / "out" / "batches" / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    ledger.write_text("\n".join(line for line in lines if '"collected"' not in line) + "\n")
    again = run_batch(tmp_path, fake_llm, spec)
    progress = (tmp_path / "out" / "progress.jsonl").read_text().splitlines()
    assert again.records == 12 and len(progress) == 12 and again.batch["submitted_now"] == 0
    assert fake_llm.stats()["batch_creates"] == 1


# ---------------------------------------------------------------------------------------------
# kill -9 of the CLI at each stage, then the same command again


def start_cli(tmp_path, fake_llm, spec, *extra):
    command = [sys.executable, "-m", "vdata_hub", "gen", str(tmp_path / "out"), str(spec), "--batch", "--wait",
               "--api-base", fake_llm.base_url, "-k", "test-key", "--quiet", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def finish_with_a_rerun(tmp_path, fake_llm, spec):
    fake_llm.set(batch_finish_s=0, batch_create_delay_s=0, batch_download_delay_s=0)
    rerun = start_cli(tmp_path, fake_llm, spec)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    rows = load_rows(tmp_path / "out")
    assert sorted(r["plan_key"] for r in rows) == sorted(p.id for p in plan_records(load_spec(spec)))
    stats = assert_each_answer_paid_once(fake_llm)
    return stats


def test_kill_during_submit_then_rerun_adopts_the_batch_instead_of_sending_it_again(tmp_path, fake_llm):
    fake_llm.set(batch_create_delay_s=30)  # the provider made the batch; its id never reaches OUT
    spec = batch_spec(tmp_path)
    process = start_cli(tmp_path, fake_llm, spec)
    wait_for(lambda: fake_llm.stats()["batch_creates"] == 1)
    kill(process)
    stats = finish_with_a_rerun(tmp_path, fake_llm, spec)
    assert stats["batch_creates"] == 1 and stats["batch_submitted_twice"] == []


def test_kill_while_waiting_then_rerun_collects(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=3600)
    spec = batch_spec(tmp_path)
    process = start_cli(tmp_path, fake_llm, spec)
    wait_for(lambda: fake_llm.stats()["batch_retrieves"] >= 2)
    kill(process)
    stats = finish_with_a_rerun(tmp_path, fake_llm, spec)
    assert stats["batch_creates"] == 1 and stats["batch_submitted_twice"] == []


def test_kill_during_collect_then_rerun_finishes_it(tmp_path, fake_llm):
    fake_llm.set(batch_download_delay_s=1.0)
    spec = batch_spec(tmp_path, batch_options={**FAST, "max_requests": 4})
    process = start_cli(tmp_path, fake_llm, spec)
    progress = tmp_path / "out" / "progress.jsonl"
    wait_for(lambda: progress.exists() and progress.read_text().count("\n") >= 4)
    kill(process)
    assert len(progress.read_text().splitlines()) < 12
    stats = finish_with_a_rerun(tmp_path, fake_llm, spec)
    assert stats["batch_creates"] == 3 and stats["batch_submitted_twice"] == []


# ---------------------------------------------------------------------------------------------
# the CLI


def cli(*args, check=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "vdata_hub", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_cli_submits_prints_how_to_collect_and_shows_status(tmp_path, fake_llm):
    fake_llm.set(batch_finish_s=3600)
    spec = write_spec(tmp_path)
    out = str(tmp_path / "out")
    submitted = cli("gen", out, str(spec), "--batch", "--api-base", fake_llm.base_url, "-k", "test-key",
                    "--no-donate-prompt")
    assert "run the same command again to collect" in submitted.stdout
    status = cli("batch", "status", out, "-k", "test-key")
    assert "in_progress" in status.stdout
    cancelled = cli("batch", "cancel", out, "-k", "test-key")
    assert "1 batch" in cancelled.stdout


def test_gen_help_explains_batch_mode():
    text = cli("gen", "--help").stdout
    assert "--batch" in text and "half" in text and "24 hours" in text


def test_dry_run_estimates_at_the_batch_price(tmp_path, fake_llm):
    spec = batch_spec(tmp_path, model="gpt-4o-mini")
    estimate = generate(out=str(tmp_path / "out"), spec=str(spec), dry_run=True)
    assert estimate.price.input_per_token == 7.5e-08 and estimate.batch
    assert fake_llm.stats()["batch_creates"] == 0
