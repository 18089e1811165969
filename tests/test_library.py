"""The library has no UI: `import vdata_hub; vdata_hub.generate(...)` works and stays fast, the
library functions print nothing and ask nothing unless given `progress`, and their errors name
their own parameters (the CLI shows them as flags)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_contribute import save_dataset, two_axes
from tests.test_generate import write_spec

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("litellm", "torch", "transformers", "datasets", "duckdb", "huggingface_hub", "pyarrow")


def python(code: str, tmp_path, env=None):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_public_verbs_are_lazy_and_importing_the_package_is_light(tmp_path):
    code = ("import sys, vdata_hub\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
            "print(sorted(name for name in vdata_hub.__all__ if callable(getattr(vdata_hub, name))))\n")
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    heavy, verbs = result.stdout.splitlines()
    assert heavy == "[]"
    for verb in ("generate", "estimate", "contribute", "review", "card", "init_repo", "pull", "stats"):
        assert f"'{verb}'" in verbs


def test_library_calls_print_nothing_and_ask_nothing(tmp_path, fake_llm, hub):
    from vdata_hub.repo.card import init_repo

    init_repo("org/quiet-library", token=hub.token)
    spec = write_spec(tmp_path, num_records=3)
    code = (
        "import builtins, vdata_hub\n"
        "builtins.input = lambda *a: (_ for _ in ()).throw(AssertionError('input() called'))\n"
        f"summary = vdata_hub.generate({str(tmp_path / 'out')!r}, {str(spec)!r}, api_base={fake_llm.base_url!r},"
        " api_key='x')\n"
        "assert summary.records == 3, summary\n"
        f"result = vdata_hub.contribute({str(tmp_path / 'out')!r}, repo='org/quiet-library', token={hub.token!r})\n"
        "assert result.status == 'opened', result\n"
        f"assert vdata_hub.pull({str(tmp_path / 'rows.jsonl')!r}, repo='org/quiet-library', revision='refs/pr/1',"
        f" token={hub.token!r}).rows == 3\n"
    )
    result = python(code, tmp_path, env={"VDATA_CONFIG": str(tmp_path / "config.yaml")})
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")  # no bar, no note, no question
    assert not (tmp_path / "config.yaml").exists()  # the user's config is not touched


def test_progress_callback_receives_the_notes(tmp_path, hub):
    from vdata_hub.repo.card import init_repo
    from vdata_hub.repo.contribute import contribute

    repo = "org/progress-notes"
    init_repo(repo, token=hub.token)
    notes = []
    contribute(save_dataset(tmp_path / "out", two_axes(6)), repo=repo, token=hub.token, dry_run=True,
               progress=notes.append)
    assert notes == [f"checking 6 rows against {repo} ..."]


def test_errors_name_library_parameters_and_the_cli_shows_flags(tmp_path, fake_llm, capsys):
    from vdata_hub.cli import main
    from vdata_hub.errors import BudgetExceeded
    from vdata_hub.generation.generate import generate

    spec = write_spec(tmp_path, num_records=6, model="gpt-4o-mini")
    with pytest.raises(BudgetExceeded, match="raise `max_cost`"):
        generate(str(tmp_path / "lib"), str(spec), api_base=fake_llm.base_url, api_key="x", max_cost=1e-9)
    with pytest.raises(SystemExit):
        main(["gen", str(tmp_path / "cli"), str(spec), "--api-base", fake_llm.base_url, "-k", "x",
              "--max-cost", "1e-9", "-q"])
    error = capsys.readouterr().err
    assert "raise --max-cost and run the same command" in error and "`max_cost`" not in error
    summary = json.loads((tmp_path / "cli" / "run_summary.json").read_text())
    assert summary["status"] == "budget_exceeded"
