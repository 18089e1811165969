"""Retries, rate limits and adaptive concurrency, against faults the fake server injects."""

import asyncio

import pytest

from tests.test_generate import load_rows, run, write_spec
from vdata_hub.generation.prompts import plan_records
from vdata_hub.generation.spec import load_spec
from vdata_hub.generation.llm import AdaptiveConcurrency, Bucket, parse_duration


@pytest.mark.parametrize("fault", ["429", "500", "hang", "html", "empty", "empty_text"])
def test_each_fault_is_retried_until_the_record_succeeds(tmp_path, fake_llm, fault):
    fake_llm.set(faults=[[fault, 2]], hang_s=3, retry_after="0")
    retries = {"max_attempts": 4, "backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 0.5}
    summary = run(tmp_path, fake_llm, write_spec(tmp_path, num_records=3, concurrency=1, retries=retries))
    stats = fake_llm.stats()
    assert stats[f"fault_{fault}"] == 2 and stats["requests"] == 5
    assert summary.records == 3 and summary.failed == 0 and summary.retries == 2
    rows = load_rows(tmp_path / "out")
    assert len(rows) == 3 and all(row["text"].strip() for row in rows)


def test_empty_replies_that_never_get_better_are_failures_not_empty_rows(tmp_path, fake_llm):
    fake_llm.set(fail_matching={"healthcare": "empty_text"})
    spec = write_spec(tmp_path, num_records=8, retries={"max_attempts": 2, "backoff_base_s": 0.01})
    healthcare = sum(p.domain == "healthcare" for p in plan_records(load_spec(spec)))
    summary = run(tmp_path, fake_llm, spec)
    rows = load_rows(tmp_path / "out")
    assert 0 < healthcare < 8 and summary.failed == healthcare and len(rows) == 8 - healthcare
    assert all(r["domain"] != "healthcare" and r["text"].strip() for r in rows)
    assert "empty reply" in (tmp_path / "out" / "failures.jsonl").read_text()


def test_retry_after_is_honoured(tmp_path, fake_llm):
    fake_llm.set(faults=[["429", 1]], retry_after="1")
    run(tmp_path, fake_llm, write_spec(tmp_path, num_records=1, concurrency=1))
    first, second = fake_llm.stats(log=True)["log"]
    assert first["fault"] == "429" and second["fault"] is None
    assert second["t"] - first["t"] >= 0.9  # backoff alone would be ~0.01 s


def test_provider_rate_limit_headers_pause_new_requests(tmp_path, fake_llm):
    fake_llm.set(ratelimit_headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"})
    summary = run(tmp_path, fake_llm, write_spec(tmp_path, num_records=2, concurrency=1))
    first, second = fake_llm.stats(log=True)["log"]
    assert summary.provider_pauses == 2 and second["t"] - first["t"] >= 0.9


def test_concurrency_adapts_to_a_server_that_limits_it(tmp_path, fake_llm):
    fake_llm.set(max_concurrent=3, latency=0.05)
    retries = {"max_attempts": 10, "backoff_base_s": 0.02, "backoff_max_s": 0.2, "timeout_s": 5}
    summary = run(tmp_path, fake_llm, write_spec(tmp_path, num_records=80, concurrency=24, retries=retries))
    assert summary.records == 80 and summary.failed == 0
    assert summary.rate_limited > 0 and summary.concurrency_decreases >= 1 and summary.min_concurrency < 24


def test_aimd_halves_on_rate_limits_and_grows_back_by_one_per_window():
    gate = AdaptiveConcurrency(16)
    gate.on_rate_limited()
    assert gate.limit == 8
    gate.on_rate_limited()  # the same burst (within one round trip): one decrease
    assert gate.limit == 8 and gate.decreases == 1
    for _ in range(8):  # one window of successes at limit 8
        gate.on_success(0.01)
    assert 8.9 < gate.limit < 9.1
    for _ in range(1000):
        gate.on_success(0.01)
    assert gate.limit == 16 and gate.min_limit == 8


def test_the_gate_never_lets_more_than_the_limit_in_flight():
    async def scenario():
        gate = AdaptiveConcurrency(4)
        peak = 0

        async def one():
            nonlocal peak
            await gate.acquire()
            peak = max(peak, gate.in_flight)
            await asyncio.sleep(0.001)
            gate.release()

        gate.on_rate_limited()  # limit 2
        await asyncio.gather(*(one() for _ in range(20)))
        return peak

    assert asyncio.run(scenario()) == 2


def test_requests_per_minute_bucket_spaces_requests():
    async def scenario():
        bucket = Bucket(per_minute=600)  # 10 per second, bursts of 100
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(105):
            await bucket.take(1)
        return loop.time() - start

    assert asyncio.run(scenario()) >= 0.4  # the 5 past the burst wait ~0.1 s each


@pytest.mark.parametrize("text, seconds", [("1", 1.0), ("0.5", 0.5), ("6m0s", 360.0), ("20ms", 0.02),
                                           ("1h2m3s", 3723.0), ("soon", None), (None, None)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_flagged_replies_are_retried_then_recorded_as_failures(tmp_path, fake_llm):
    spec = write_spec(tmp_path, num_records=3, quality={"min_chars": 5000},
                      retries={"max_attempts": 2, "backoff_base_s": 0.01})
    summary = run(tmp_path, fake_llm, spec)
    assert (summary.records, summary.failed, summary.quality_rejected) == (0, 3, 6)
    assert len(load_rows(tmp_path / "out")) == 0
    assert "quality: too_short" in (tmp_path / "out" / "failures.jsonl").read_text()


def test_flagged_replies_are_kept_with_their_flags_when_not_dropped(tmp_path, fake_llm):
    spec = write_spec(tmp_path, num_records=3, quality={"min_chars": 5000, "drop_flagged": False})
    summary = run(tmp_path, fake_llm, spec)
    rows = load_rows(tmp_path / "out")
    assert (summary.records, summary.flagged, fake_llm.requests) == (3, 3, 3)
    assert all(row["flags"] == ["too_short"] for row in rows)


def test_counterfactual_rows_are_added_beside_their_source(tmp_path, fake_llm):
    fake_llm.set(echo_prompt=True)
    spec = write_spec(tmp_path, num_records=4, variables={"domain": ["healthcare"], "bias_axis": ["gender"]},
                      augment={"counterfactual": True, "axes": ["gender"]})
    summary = run(tmp_path, fake_llm, spec)
    rows = load_rows(tmp_path / "out")
    sources = {r["id"]: r for r in rows if not r["augmented"]}
    variants = [r for r in rows if r["augmented"]]
    assert len(sources) == 4 and summary.augmented == len(variants) > 0
    assert all(v["source_id"] in sources and v["text"] != sources[v["source_id"]]["text"] for v in variants)
    assert len({r["id"] for r in rows}) == len(rows)


def test_unknown_augment_axis_is_a_spec_error_before_any_call(tmp_path, fake_llm):
    from vdata_hub.errors import SpecError

    spec = write_spec(tmp_path, augment={"counterfactual": True, "axes": ["hair_colour"]})
    with pytest.raises(SpecError, match="hair_colour"):
        run(tmp_path, fake_llm, spec)
    assert fake_llm.requests == 0
