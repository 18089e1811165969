"""generate against the fake OpenAI-compatible server, through LiteLLM over real HTTP."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from vdata_hub.errors import AuthError, BudgetExceeded, SpecError, TemplateError
from vdata_hub.cli import after_run_prompt
from vdata_hub.generation.generate import generate
from vdata_hub.generation.prompts import plan_records
from vdata_hub.generation.records import RECORD_FIELDS, row_ids
from vdata_hub.generation.spec import load_spec

REQUIRED_COLUMNS = ["id", "text", "prompt", "system_prompt", "template", "template_sha", "variables", "bias_axis",
                    "domain", "task", "model", "params", "input_tokens", "output_tokens", "cost_usd",
                    "finish_reason", "created_at", "generator_version", "spec_sha"]
ROOT = Path(__file__).resolve().parent.parent


def write_spec(tmp_path, **fields) -> Path:
    """A small spec for the fake server: fast retries, short timeout."""
    spec = {
        "model": "openai/fake-model",
        "templates": ["counter_stereotype_story"],
        "variables": {"domain": ["healthcare", "hiring and work"], "bias_axis": ["gender", "age"]},
        "num_records": 12,
        "concurrency": 4,
        "retries": {"max_attempts": 4, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5},
    }
    spec.update(fields)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run(tmp_path, fake_llm, spec=None, **options):
    """generate() in this process; the requests too unless `workers` is given (a worker process
    loads LiteLLM again, seconds per run; tests/test_generate_workers.py covers them)."""
    options.setdefault("api_base", fake_llm.base_url)
    options.setdefault("api_key", "test-key")
    options.setdefault("workers", 0)
    return generate(out=str(tmp_path / "out"), spec=str(spec or write_spec(tmp_path)), **options)


def load_rows(out):
    from datasets import Features, load_from_disk

    from vdata_hub.generation.records import ARROW_SCHEMA

    dataset = load_from_disk(str(out))
    assert dataset.features == Features.from_arrow_schema(ARROW_SCHEMA)
    return dataset.to_list()


def test_generate_writes_an_arrow_dataset_with_provenance(tmp_path, fake_llm):
    spec = write_spec(tmp_path)
    summary = run(tmp_path, fake_llm, spec)
    out = tmp_path / "out"
    rows = load_rows(out)
    assert len(rows) == 12 and summary.records == 12 and summary.status == "complete"
    assert set(REQUIRED_COLUMNS) <= set(rows[0]) and list(rows[0]) == RECORD_FIELDS
    assert {r["plan_key"] for r in rows} == {p.id for p in plan_records(load_spec(spec))}
    assert [r["id"] for r in rows] == row_ids(np.array([r["text_hash"] for r in rows])).to_pylist()
    assert all(r["text"].strip() and r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows)
    assert {r["bias_axis"] for r in rows} == {"gender", "age"}
    assert json.loads(rows[0]["params"])["max_tokens"] == 256
    saved = json.loads((out / "spec.json").read_text())
    assert saved["model"] == "openai/fake-model" and saved["api_base"] == fake_llm.base_url
    written = json.loads((out / "run_summary.json").read_text())
    assert written["records"] == 12 and written["failed"] == 0 and written["output_tokens"] == summary.output_tokens
    assert fake_llm.requests == 12


def test_rerun_continues_and_calls_nothing_when_done(tmp_path, fake_llm):
    spec = write_spec(tmp_path, num_records=6)
    run(tmp_path, fake_llm, spec)
    spec = write_spec(tmp_path, num_records=10)  # same records plus four: only those four are asked for
    summary = run(tmp_path, fake_llm, spec)
    assert (summary.resumed, summary.generated, fake_llm.requests) == (6, 4, 10)
    summary = run(tmp_path, fake_llm, spec)
    assert (summary.resumed, summary.generated, fake_llm.requests) == (10, 0, 10)
    assert len(load_rows(tmp_path / "out")) == 10


def test_changing_the_model_plans_new_records(tmp_path, fake_llm):
    run(tmp_path, fake_llm, write_spec(tmp_path, num_records=4))
    summary = run(tmp_path, fake_llm, write_spec(tmp_path, num_records=4, model="openai/other-model"))
    assert summary.generated == 4 and summary.resumed == 0
    assert {r["model"] for r in load_rows(tmp_path / "out")} == {"openai/other-model"}


@pytest.mark.parametrize("change, message", [
    ({"temprature": 0.5}, "unknown key 'temprature'"),
    ({"sampling": {"temperature": "hot"}}, "key 'sampling.temperature'"),
    ({"concurrency": "many"}, "key 'concurrency'"),
    ({"templates": ["no_such_template"]}, "template 'no_such_template' not found"),
    ({"variables": {"domain": ["healthcare"]}}, "needs variable 'bias_axis'"),
])
def test_spec_errors_name_the_key_before_any_call(tmp_path, fake_llm, change, message):
    spec = write_spec(tmp_path, **change)
    with pytest.raises((SpecError, TemplateError)) as error:
        run(tmp_path, fake_llm, spec)
    assert message in str(error.value) and str(spec) in str(error.value)
    assert fake_llm.requests == 0 and not (tmp_path / "out").exists()


def test_undefined_template_variable_is_an_error_before_any_call(tmp_path, fake_llm):
    template = tmp_path / "mine.j2"
    template.write_text("{#\ntask: t\nvariables: [domain]\n#}\nWrite about {{ domain }} in a {{ tone }} tone.")
    spec = write_spec(tmp_path, templates=["mine.j2"], variables={"domain": ["healthcare"]})
    with pytest.raises(TemplateError, match="'tone' is undefined"):
        run(tmp_path, fake_llm, spec)
    assert fake_llm.requests == 0


def test_a_record_that_keeps_failing_goes_to_the_failures_file(tmp_path, fake_llm):
    fake_llm.set(fail_matching={"healthcare": "500"})
    spec = write_spec(tmp_path, retries={"max_attempts": 2, "backoff_base_s": 0.01, "timeout_s": 5})
    summary = run(tmp_path, fake_llm, spec)
    out = tmp_path / "out"
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    planned = plan_records(load_spec(spec))
    healthcare = {p.id for p in planned if p.domain == "healthcare"}
    assert {f["id"] for f in failures} == healthcare and all("HTTP 500" in f["reason"] for f in failures)
    assert all(f["attempts"] == 2 for f in failures)
    rows = load_rows(out)
    assert len(rows) == 12 - len(healthcare) and not healthcare & {r["plan_key"] for r in rows}
    assert (summary.failed, summary.status) == (len(healthcare), "incomplete")
    fake_llm.set(fail_matching={})
    summary = run(tmp_path, fake_llm, spec)  # the rerun retries the failures
    assert (summary.generated, summary.failed, summary.status) == (len(healthcare), 0, "complete")
    assert (out / "failures.jsonl").read_text() == "" and len(load_rows(out)) == 12


@pytest.mark.parametrize("workers", [0, 1])
def test_cost_cap_stops_cleanly_and_the_run_resumes_with_a_higher_cap(tmp_path, fake_llm, workers):
    from vdata_hub.generation.cost import call_cost

    spec = write_spec(tmp_path, model="openai/gpt-4o-mini", num_records=40, concurrency=2)
    with pytest.raises(BudgetExceeded, match="raise `max_cost`"):
        run(tmp_path, fake_llm, spec, max_cost=0.0004, workers=workers)
    out = tmp_path / "out"
    summary = json.loads((out / "run_summary.json").read_text())
    rows = load_rows(out)
    assert summary["status"] == "budget_exceeded" and 0 < len(rows) < 40 and summary["records"] == len(rows)
    spent = sum(r["cost_usd"] for r in rows)
    assert spent == pytest.approx(summary["cost_usd"]) and spent > 0
    most_per_record = max(call_cost("openai/gpt-4o-mini", r["input_tokens"], r["output_tokens"]) for r in rows)
    assert spent <= 0.0004 + 2 * most_per_record  # in flight when the cap was reached: at most 2
    with pytest.raises(BudgetExceeded):  # same cap: nothing more is spent
        run(tmp_path, fake_llm, spec, max_cost=0.0004, workers=workers)
    assert len(load_rows(out)) == len(rows)
    final = run(tmp_path, fake_llm, spec, max_cost=1.0, workers=workers)
    assert final.status == "complete" and final.resumed == len(rows) and len(load_rows(out)) == 40


def test_a_refused_key_stops_the_run_at_once_without_showing_the_key(tmp_path, fake_llm):
    with pytest.raises(AuthError) as error:
        run(tmp_path, fake_llm, write_spec(tmp_path, num_records=50), api_key="bad-key")
    assert "bad-key" not in str(error.value) and "-k/--api-key" in str(error.value)
    assert fake_llm.requests <= 4  # the requests already in flight, no retries


def test_api_key_comes_from_the_option_then_apikey_then_the_provider_variable(tmp_path, fake_llm, monkeypatch):
    spec = write_spec(tmp_path, num_records=1)
    monkeypatch.setenv("OPENAI_API_KEY", "provider-key")
    run(tmp_path, fake_llm, spec, api_key=None)
    monkeypatch.setenv("APIKEY", "generic-key")
    run(tmp_path / "b", fake_llm, spec, api_key=None)
    run(tmp_path / "c", fake_llm, spec, api_key="option-key")
    assert fake_llm.stats()["requests_by_key"] == {"provider-key": 1, "generic-key": 1, "option-key": 1}


def test_dry_run_estimates_and_calls_nothing(tmp_path, fake_llm):
    from vdata_hub.generation.cost import estimate_plan

    spec = write_spec(tmp_path, model="openai/gpt-4o-mini")
    estimate = run(tmp_path, fake_llm, spec, dry_run=True, num_records=40)
    loaded = load_spec(spec)
    planned = plan_records(loaded.model_copy(update={"spec": loaded.spec.model_copy(update={"num_records": 40})}))
    expected = estimate_plan(planned, loaded.spec)
    assert (estimate.requests, estimate.input_tokens, estimate.output_tokens) == (40, expected.input_tokens, 40 * 256)
    assert estimate.usd == pytest.approx(expected.usd) and estimate.usd > 0 and estimate.output_bytes > 0
    assert fake_llm.requests == 0 and not (tmp_path / "out").exists()


def test_dry_run_cli_prints_the_estimate_without_importing_litellm(tmp_path):
    argv = ["generate", str(tmp_path / "out"), "demo", "--model", "gpt-4o-mini", "-n", "40", "--dry-run"]
    code = (f"import sys\nfrom vdata_hub.cli import main\nmain({argv!r})\n"
            "print('litellm imported:', 'litellm' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "requests:        40" in result.stdout and "cost:            at most $" in result.stdout
    assert "litellm imported: False" in result.stdout


def test_quiet_prints_nothing(tmp_path, fake_llm, capsys):
    from vdata_hub.cli import main

    main(["generate", str(tmp_path / "out"), str(write_spec(tmp_path, num_records=3)), "--api-base",
          fake_llm.base_url, "-k", "x", "-q"])
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")
    main(["generate", str(tmp_path / "out2"), str(write_spec(tmp_path, num_records=3)), "--api-base",
          fake_llm.base_url, "-k", "x", "--no-donate-prompt"])
    captured = capsys.readouterr()
    assert "3 of 3 records" in captured.out and "rec" in captured.err  # summary, and the progress bar


def settled_request_count(fake_llm, quiet_s: float = 0.5) -> int:
    """The fake server's request count once it has not moved for `quiet_s`."""
    count, since = fake_llm.requests, time.monotonic()
    while time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        if fake_llm.requests != count:
            count, since = fake_llm.requests, time.monotonic()
    return count


def test_resume_after_sigkill_loses_nothing_and_duplicates_nothing(tmp_path, fake_llm):
    fake_llm.set(latency=0.05)
    spec = write_spec(tmp_path, num_records=120, concurrency=4)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "vdata_hub", "generate", str(out), str(spec), "--api-base", fake_llm.base_url,
               "-k", "x", "-q"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = out / "progress.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 30:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = journal.read_bytes().count(b"\n")
    assert 30 <= done_before < 120, process.stderr.read()
    with open(journal, "ab") as handle:  # what a kill in the middle of a write leaves
        handle.write(b'{"id": "torn", "text": "half a rec')
    requests_before = settled_request_count(fake_llm)  # the killed run's requests in flight land first
    summary = run(tmp_path, fake_llm, spec)
    rows = load_rows(out)
    ids = [r["plan_key"] for r in rows]
    assert len(ids) == len(set(ids)) == 120 == summary.records
    assert set(ids) == {p.id for p in plan_records(load_spec(spec))}
    assert summary.resumed >= done_before and summary.generated == 120 - summary.resumed
    # one request per record left, plus a retry for the rare fake reply the quality filter refuses
    assert fake_llm.requests - requests_before == summary.generated + summary.quality_rejected
    assert requests_before <= summary.resumed + 4  # only records in flight at the kill were asked twice


def test_resume_reads_back_each_planned_id_done_once_and_nothing_else(tmp_path):
    from vdata_hub.generation.journal import Journal, PlannedIds

    planned = [p.id for p in plan_records(load_spec(write_spec(tmp_path, num_records=40)))]
    planned_ids = PlannedIds(iter(planned))
    assert len(planned_ids) == 40 and all(record_id in planned_ids for record_id in planned)
    assert not any(other in planned_ids for other in ("0" * 24, planned[0][:-1], planned[0] + "0", None, 7))
    journal = Journal(tmp_path / "out").open()
    other_plan = "f" * 24
    for record_id in planned[:25] + planned[:5] + [other_plan]:  # five written twice
        journal.add_record({"id": record_id, "text": "t", "input_tokens": 1, "output_tokens": 2, "cost_usd": 0.5})
    journal.add_record({"id": "a" * 24, "source_id": planned[0], "augmented": True, "input_tokens": 9})
    journal.close()

    journal = Journal(tmp_path / "out").open()
    progress = journal.load(planned_ids)
    journal.close()
    assert [record_id in progress.completed for record_id in planned] == [True] * 25 + [False] * 15
    assert other_plan not in progress.completed and len(progress.completed) == 25
    assert (progress.input_tokens, progress.output_tokens, progress.cost_usd) == (25, 50, 12.5)
    with pytest.raises(KeyError):
        progress.completed.add(other_plan)


def test_after_run_prompt_offers_contribution_support_and_turning_it_off(tmp_path, fake_llm):
    from vdata_hub import config

    summary = run(tmp_path, fake_llm, write_spec(tmp_path, num_records=2))
    answers = iter(["n", "n"])
    asked, said = [], []
    after_run_prompt(str(tmp_path / "out"), summary, ask=lambda q: asked.append(q) or next(answers), say=said.append)
    assert "[a]ll / [p]art / [N]one" in asked[0] and "every run" in asked[1]
    assert "CC0-1.0" in said[0] and "terms of use" in said[0]  # what a contributor agrees to, before the question
    assert any("https://" in line for line in said)
    assert not any("card" in line.lower() or "payment" in line.lower() for line in said)
    assert config.donate_prompt_enabled() is False
    asked.clear()
    after_run_prompt(str(tmp_path / "out"), summary, ask=lambda q: asked.append(q) or "n", say=said.append)
    assert asked == []  # turned off for good
    config.save_user_setting("donate_prompt", True)


def test_help_is_quick_and_imports_no_heavy_library():
    code = ("import sys, runpy\nsys.argv = ['vdata', 'generate', '--help']\n"
            "try:\n    runpy.run_module('vdata_hub', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('HEAVY:', sorted(m for m in ('litellm', 'torch', 'transformers', 'datasets', 'duckdb')"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "PAGER": "cat"})
    assert "HEAVY: []" in result.stdout, result.stdout + result.stderr
    shown = result.stdout + result.stderr  # fire writes help to stderr when it is not a terminal
    assert "--num-records" in shown and "vdata gen out/" in shown
    top = subprocess.run([sys.executable, "-m", "vdata_hub", "--help"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, env={**os.environ, "PAGER": "cat"})
    assert top.returncode == 0 and "generate" in top.stdout + top.stderr
