"""The command line as a newcomer meets it: the listing of commands, each command's help, and a
mistyped command line refused before anything runs. Every test runs the real `vdata` in a
subprocess."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["generate", "estimate", "contribute", "review", "reindex", "card", "init-repo", "pull", "stats", "eval"]
EVAL_COMMANDS = ["stereoset", "crows-pairs", "finetune", "report"]


def vdata(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "vdata_hub", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={**os.environ, **(env or {})})


def test_top_level_help_lists_every_command_with_a_summary(tmp_path):
    shown = vdata("--help", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stderr == ""
    assert shown.stdout.startswith("Usage: vdata COMMAND")
    listing = shown.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    for command in COMMANDS + EVAL_COMMANDS:
        line = next((line for line in listing.splitlines() if line.split()[0] == command), None)
        assert line is not None, f"{command} missing from:\n{listing}"
        assert len(line.split()) >= 4, f"no summary for {command}: {line!r}"
    assert "generate (gen)" in listing
    assert "Examples:" in shown.stdout
    assert vdata(cwd=tmp_path).stdout == shown.stdout  # no command: the same listing


@pytest.mark.parametrize("command", ["generate", "pull", "eval report", "eval crows-pairs"])
def test_command_help_shows_options_with_defaults_and_examples(tmp_path, command):
    shown = vdata(*command.split(), "--help", cwd=tmp_path)
    assert shown.returncode == 0 and shown.stderr == ""
    text = shown.stdout
    assert text.startswith(f"Usage: vdata {command}") and "Options:" in text and "Examples:" in text
    options = re.findall(r"^\s+(?:-\w(?: \(\w+\))?, )*(--[a-z-]+)", text.split("Options:")[1], flags=re.M)
    assert "--help" in options and len(options) >= 4
    defaults = {"generate": ["OUT ", "(default: vdata-out)", "-n, --num-records N", "-k, --apikey, --api-key"],
                "pull": ["--timeout NUMBER", "(default: 600)", "-j (json), -t (text)", "--sql [SQL]"],
                "eval report": ["--max-steps N", "(default: 200)", "--learning-rate NUMBER", "--control CONTROL",
                                "--seeds N", "--resamples N"],
                "eval crows-pairs": ["--bias-type BIAS_TYPE", "--resamples N", "(default: 1000)"]}[command]
    for expected in defaults:
        assert expected in text, expected


def test_mistyped_flag_fails_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    typo = vdata("generate", out, "demo", "--typo", "1", cwd=tmp_path)
    assert typo.returncode == 2 and typo.stdout == ""
    assert typo.stderr.count("\n") == 1 and "Traceback" not in typo.stderr
    assert "unknown option --typo" in typo.stderr and "--num-records" in typo.stderr  # the valid flags
    assert not out.exists()
    close = vdata("estimate", "demo", "--modle", "x", cwd=tmp_path)
    assert close.returncode == 2 and close.stdout == ""  # no estimate printed first
    assert "did you mean --model?" in close.stderr
    wrong_type = vdata("gen", out, "demo", "-n", "three", cwd=tmp_path)
    assert wrong_type.returncode == 2 and "-n expects a whole number, not 'three'" in wrong_type.stderr
    extra = vdata("estimate", "demo", "more", cwd=tmp_path)
    assert extra.returncode == 2 and "unexpected argument 'more'" in extra.stderr
    unknown = vdata("genrate", cwd=tmp_path)
    assert unknown.returncode == 2 and "did you mean `vdata generate`?" in unknown.stderr
    assert not out.exists()


def test_mistyped_eval_flags_fail_before_anything_runs(tmp_path):
    """No model is loaded and no folder written: the eval commands are checked like the others."""
    out = tmp_path / "out"
    close = vdata("eval", "crows-pairs", "--bias-typ", "gender", "--output", out, cwd=tmp_path)
    assert close.returncode == 2 and close.stdout == "" and "did you mean --bias-type?" in close.stderr
    seeds = vdata("eval", "report", "--seeds", "two", "--output", out, cwd=tmp_path)
    assert seeds.returncode == 2 and "--seeds expects a whole number, not 'two'" in seeds.stderr
    resamples = vdata("eval", "stereoset", "--resamples", "1e3", "--output", out, cwd=tmp_path)
    assert resamples.returncode == 2 and "--resamples expects a whole number" in resamples.stderr
    unknown = vdata("eval", "crows", cwd=tmp_path)
    assert unknown.returncode == 2 and "crows-pairs" in unknown.stderr
    assert not out.exists()


def test_values_keep_their_types_and_short_flags_work(tmp_path):
    estimated = vdata("estimate", "demo", "--model", "1e3", "-n", "2", cwd=tmp_path)  # fire alone read 1000.0
    assert estimated.returncode == 0, estimated.stderr
    assert "model:           1e3\n" in estimated.stdout and "requests:        2\n" in estimated.stdout
    dry = vdata("gen", tmp_path / "out", "demo", "-n", "3", "-k", "0123", "--dry-run", "--quiet", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "requests:        3\n" in dry.stdout


def test_library_parameter_names_in_errors_become_flags(tmp_path):
    bad = vdata("pull", tmp_path / "x.jsonl", "--limit", "-1", cwd=tmp_path, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert bad.returncode != 0 and "--limit must be" in bad.stderr and "`limit`" not in bad.stderr
