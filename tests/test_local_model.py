"""The embedded model: real llama.cpp server, real LiteLLM calls, and no orphan process left."""

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
import yaml

from vdata_hub.errors import VdataError
from vdata_hub.generation.local_model import embedded_model_path, is_local, local_server
from vdata_hub.generation.spec import find_spec_file


def servers_with(marker: str) -> list[psutil.Process]:
    """llama.cpp server processes started by a run whose environment carries `marker`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "vdata_hub.generation.llama_server" in " ".join(process.info["cmdline"] or []) and \
                    process.environ().get("VDATA_TEST_MARKER") == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def marked_env(marker: str) -> dict:
    return {**os.environ, "VDATA_TEST_MARKER": marker}


def test_embedded_model_is_the_smollm2_gguf():
    path = embedded_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    with path.open("rb") as gguf:
        assert gguf.read(4) == b"GGUF"
    assert is_local("local") and is_local("local:x.gguf") and not is_local("gpt-4o-mini")


def test_missing_gguf_is_a_clear_error(tmp_path):
    missing = tmp_path / "missing.gguf"
    with pytest.raises(VdataError, match="no GGUF file at .*missing.gguf"):
        with local_server(f"local:{missing}"):
            pass


def test_a_broken_gguf_reports_the_server_output(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model at all" * 100)
    marker = uuid.uuid4().hex
    os.environ["VDATA_TEST_MARKER"] = marker
    try:
        with pytest.raises(VdataError, match="local model server exited with code") as caught:
            with local_server(f"local:{broken}"):
                pass
    finally:
        os.environ.pop("VDATA_TEST_MARKER", None)
    assert len(str(caught.value).splitlines()) > 1  # the server's last lines say why
    assert servers_with(marker) == []


def test_other_models_pass_through():
    with local_server("gpt-4o-mini") as (model, api_base):
        assert (model, api_base) == ("gpt-4o-mini", None)


def test_cli_names_the_missing_gguf(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vdata_hub", "generate", str(tmp_path / "out"), "demo",
                             "--model", "local:missing.gguf", "--quiet", "--no-donate-prompt"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode != 0
    assert result.stderr.startswith("error:") and "missing.gguf" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_server_answers_with_the_chat_template_and_stops():
    import litellm

    marker = uuid.uuid4().hex
    os.environ["VDATA_TEST_MARKER"] = marker
    try:
        with local_server("local") as (model, api_base):
            assert model.startswith("openai/") and api_base.startswith("http://127.0.0.1:")
            (server,) = servers_with(marker)
            reply = litellm.completion(
                model=model, api_base=api_base, api_key="none", temperature=0, max_tokens=16,
                messages=[{"role": "system", "content": "You are a helpful assistant. Answer briefly."},
                          {"role": "user", "content": "What is the capital of France?"}])
        text = reply.choices[0].message.content
        # With the wrong chat format the model rambles or echoes the prompt instead of answering.
        assert "paris" in text.lower(), text
        assert "<|im_start|>" not in text and "<|im_end|>" not in text
        assert reply.usage.completion_tokens > 0
        assert gone(server)
        assert servers_with(marker) == []
    finally:
        os.environ.pop("VDATA_TEST_MARKER", None)


@pytest.mark.slow
def test_generate_with_the_embedded_model_end_to_end(tmp_path):
    from datasets import load_from_disk

    marker = uuid.uuid4().hex
    out = tmp_path / "out"
    spec = yaml.safe_load(find_spec_file("demo").read_text())  # the shipped demo, shorter replies
    spec["sampling"]["max_tokens"] = 64
    (tmp_path / "demo-short.yaml").write_text(yaml.safe_dump(spec))
    result = subprocess.run([sys.executable, "-m", "vdata_hub", "generate", str(out), "demo-short.yaml",
                             "--quiet", "--no-donate-prompt", "-n", "3"],
                            capture_output=True, text=True, cwd=tmp_path, env=marked_env(marker), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""  # --quiet
    rows = load_from_disk(str(out)).to_list()
    failures = (out / "failures.jsonl").read_text().splitlines() if (out / "failures.jsonl").exists() else []
    assert len(rows) + len(failures) == 3
    assert len(rows) >= 2, failures
    for row in rows:
        assert row["text"].strip() and row["model"] == "local"
        assert 0 < row["output_tokens"] <= 64 and row["cost_usd"] == 0.0
    assert servers_with(marker) == []


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_no_server_survives_a_stopped_run(tmp_path, stop_signal):
    marker = uuid.uuid4().hex
    run = subprocess.Popen([sys.executable, "-m", "vdata_hub", "generate", str(tmp_path / "out"), "demo",
                            "--quiet", "--no-donate-prompt", "-n", "50"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path, env=marked_env(marker))
    try:
        assert wait_for(lambda: servers_with(marker) or run.poll() is not None, 120), "no server started"
        assert run.poll() is None, run.stderr.read().decode()[-3000:]
        (server,) = servers_with(marker)
        time.sleep(1.0)  # let the run get into its requests
        run.send_signal(stop_signal)
        run.wait(60)
        assert wait_for(lambda: gone(server), 30)
        assert servers_with(marker) == []
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
