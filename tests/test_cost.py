"""Cost estimates: LiteLLM's real price map, the plan's real prompts, and no model call."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vdata_hub.generation.cost import (
    BYTES_PER_TOKEN,
    CHARS_PER_TOKEN,
    call_cost,
    estimate,
    estimate_plan,
    format_estimate,
    model_price,
)
from vdata_hub.generation.prompts import plan_records
from vdata_hub.generation.spec import load_spec

REPO = Path(__file__).resolve().parents[1]


def write_spec(folder: Path, **fields) -> Path:
    spec = {
        "model": "gpt-4o-mini",
        "templates": ["counter_stereotype_story"],
        "variables": {"domain": ["healthcare", "education"], "bias_axis": ["gender", "age"]},
        "num_records": 10,
        "sampling": {"max_tokens": 100},
        **fields,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "vdata_hub", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def imported(stderr: str) -> set[str]:
    """Top-level packages named in `python -X importtime` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_call_cost_uses_litellm_prices():
    import litellm

    entry = litellm.model_cost["gpt-4o-mini"]
    expected = 1000 * entry["input_cost_per_token"] + 500 * entry["output_cost_per_token"]
    assert expected > 0
    assert call_cost("gpt-4o-mini", 1000, 500) == pytest.approx(expected)
    assert call_cost("openai/gpt-4o-mini", 1000, 500) == pytest.approx(expected)
    prompt_usd, completion_usd = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=1000,
                                                        completion_tokens=500)
    assert call_cost("gpt-4o-mini", 1000, 500) == pytest.approx(prompt_usd + completion_usd)


def test_local_and_unknown_models_cost_nothing():
    assert call_cost("local", 10_000, 10_000) == 0.0
    assert call_cost("local:/models/any.gguf", 10_000, 10_000) == 0.0
    assert call_cost("openai/fake-model", 10_000, 10_000) == 0.0
    assert model_price("openai/fake-model").key is None
    e = estimate("demo")
    assert e.model == "local" and e.usd == 0.0 and e.requests == 6
    assert "no charge" in format_estimate(e)


def test_estimate_numbers_for_a_priced_model(tmp_path):
    import litellm

    spec_path = write_spec(tmp_path, max_cost_usd=0.001)
    e = estimate(str(spec_path))
    planned = plan_records(load_spec(spec_path))
    assert e.requests == len(planned) == 10
    # Input: each request's system and user prompt at CHARS_PER_TOKEN, plus chat overhead.
    chars = sum(len(r.prompt) + len(r.system_prompt) for r in planned)
    assert e.input_tokens == pytest.approx(chars / CHARS_PER_TOKEN + 11 * len(planned), abs=len(planned))
    # Output: the upper bound, max_tokens for every request.
    assert e.output_tokens == 10 * 100
    entry = litellm.model_cost["gpt-4o-mini"]
    assert e.usd == pytest.approx(e.input_tokens * entry["input_cost_per_token"]
                                  + 1000 * entry["output_cost_per_token"])
    assert e.text_bytes == round(1000 * BYTES_PER_TOKEN)
    assert e.output_bytes > e.text_bytes + sum(len(r.prompt) for r in planned)
    # The approximation is close to the model's real tokenizer on these prompts.
    counted = sum(litellm.token_counter(model="gpt-4o-mini", messages=[
        {"role": "system", "content": r.system_prompt}, {"role": "user", "content": r.prompt}]) for r in planned)
    assert 0.9 < e.input_tokens / counted < 1.2
    # Overrides: model and record count.
    bigger = estimate(str(spec_path), model="gpt-4o", num_records=20)
    assert bigger.requests == 20 and bigger.model == "gpt-4o"
    assert bigger.usd > 2 * e.usd
    text = format_estimate(e)
    assert "requests:        10" in text and "gpt-4o-mini" in text
    assert f"${e.usd:,.4f}" in text
    assert "cost cap:        $0.00" in text and "buys ~" in text


def test_estimate_plan_takes_an_iterator(tmp_path):
    loaded = load_spec(write_spec(tmp_path))
    from_list = estimate_plan(plan_records(loaded), loaded.spec)
    from_iterator = estimate_plan(iter(plan_records(loaded)), loaded.spec)
    assert from_list == from_iterator


def test_estimate_command_calls_no_model_and_skips_litellm(tmp_path):
    spec_path = write_spec(tmp_path)
    result = run_cli("estimate", str(spec_path), "--model", "gpt-4o", "-n", "7", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "requests:        7" in result.stdout
    assert "gpt-4o" in result.stdout and "at most $" in result.stdout
    modules = imported(result.stderr)
    assert "vdata_hub" in modules
    assert not modules & {"litellm", "torch", "transformers", "openai", "llama_cpp"}


def test_estimate_reports_spec_errors(tmp_path):
    spec_path = write_spec(tmp_path, temperature=0.5)  # belongs under `sampling`
    result = run_cli("estimate", str(spec_path), cwd=tmp_path)
    assert result.returncode != 0
    assert "error:" in result.stderr and "temperature" in result.stderr


def test_dry_run_prints_the_estimate_and_calls_nothing(tmp_path, fake_llm):
    spec_path = write_spec(tmp_path, model="openai/fake-model", api_base=fake_llm.base_url)
    out = tmp_path / "out"
    env = {**os.environ, "APIKEY": "sk-test"}
    result = run_cli("generate", str(out), str(spec_path), "--dry-run", "--no-donate-prompt",
                     cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "requests:        10" in result.stdout
    assert "not in LiteLLM's price map" in result.stdout
    assert fake_llm.requests == 0
    assert not (out / "dataset_info.json").exists()
    assert not imported(result.stderr) & {"litellm", "torch", "transformers"}
