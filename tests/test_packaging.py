"""The installed package: its shipped files, its entry points, and a quick start-up."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED_FOLDERS = ("templates", "dataset_card", "eval")
HEAVY = {"litellm", "torch", "transformers", "datasets", "duckdb", "llama_cpp", "openai"}
COMMANDS = ["generate", "estimate", "contribute", "review", "reindex", "card", "init-repo", "pull", "stats", "eval"]


def run(args, cwd, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120, **kwargs)


def repo_files(folder: str) -> set[str]:
    """Files a checkout has in a shipped folder, as package paths (vdata_hub/templates/...)."""
    root = REPO / folder
    return {f"vdata_hub/{folder}/{p.relative_to(root).as_posix()}" for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_resources_resolve_from_any_folder(tmp_path):
    script = ("import json; from vdata_hub import resources as r; "
              "print(json.dumps({name: sorted(p.name for p in getattr(r, name).iterdir()) "
              "for name in ('TEMPLATES_DIR', 'SPECS_DIR', 'TEMPLATE_DATA_DIR', 'CARD_DIR', 'EVAL_DIR')}))")
    result = run([sys.executable, "-c", script], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert "counter_stereotype_story.j2" in listing["TEMPLATES_DIR"] and "system.j2" in listing["TEMPLATES_DIR"]
    assert "demo.yaml" in listing["SPECS_DIR"]
    assert "groups.yaml" in listing["TEMPLATE_DATA_DIR"]
    assert [name for name in listing["CARD_DIR"] if name != "__pycache__"]
    assert [name for name in listing["EVAL_DIR"] if name != "__pycache__"]


@pytest.mark.parametrize("entry", ["module", "script"])
def test_help_works_anywhere_without_heavy_imports(tmp_path, entry):
    if entry == "module":
        command = [sys.executable, "-X", "importtime", "-m", "vdata_hub", "--help"]
    else:
        script = Path(sys.executable).parent / "vdata"
        assert script.exists(), "the `vdata` console script is not installed next to this python"
        command = [str(script), "--help"]
    result = run(command, cwd=tmp_path, env={"PAGER": "cat", "PATH": "/usr/bin:/bin",
                                             "PYTHONPROFILEIMPORTTIME": "1", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    shown = result.stdout  # on stdout, so `vdata --help | less` works
    assert "generate" in shown and "pull" in shown and "Examples:" in shown
    loaded = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines()
              if line.startswith("import time:") and "|" in line}
    assert "vdata_hub" in loaded
    assert not loaded & HEAVY


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(tmp_path, command):
    result = run([sys.executable, "-m", "vdata_hub", command, "--help"], cwd=tmp_path, env={"PAGER": "cat",
                 "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert f"vdata {command}" in result.stdout and "Examples:" in result.stdout
    assert "INFO" not in result.stdout + result.stderr


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path):
    """`vdata stats ... | head`: a command printing more than the pipe holds exits quietly."""
    program = ("from vdata_hub import cli; cli.Commands.lines = lambda self: print('line\\n' * 10**6); "
               "cli.main(['lines'])")
    result = subprocess.run(["bash", "-c", f"{sys.executable} -c \"{program}\" | head -1; exit ${{PIPESTATUS[0]}}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.stdout == "line\n"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 141


@pytest.mark.slow
def test_wheel_ships_templates_card_and_eval(tmp_path):
    # Build from a copy (symlinks kept as links): no build/ left in the checkout, none reused.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "bench", "docs"))
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source), "-w", str(tmp_path)],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("vdata_hub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in SHIPPED_FOLDERS:
        expected = repo_files(folder)
        assert expected, f"{folder}/ is empty in the checkout"
        missing = expected - names
        assert not missing, f"files of {folder}/ missing from the wheel: {sorted(missing)[:10]}"
    assert "vdata_hub/templates/specs/demo.yaml" in names
    assert any(name.endswith(".j2") and name.startswith("vdata_hub/templates/") for name in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "vdata = vdata_hub.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
