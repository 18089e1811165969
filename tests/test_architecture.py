"""The structure the tree promises: stages import one way (generation → repo → query → eval),
docs/architecture.md names every module, and a checkout without symlinks (a Windows clone,
`core.symlinks=false`) builds a wheel whose `vdata` runs."""

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ["generation", "repo", "query", "eval"]  # the order of the work; a stage imports only earlier ones
PACKAGES = {"vdata_hub": REPO / "vdata_hub", "vdata_hub.eval": REPO / "eval"}


def modules():
    """(dotted name, path) of every module of the package, eval included."""
    for prefix, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            yield ".".join((prefix, *parts)).removesuffix(".__init__"), path


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return {name for name in names if name.startswith("vdata_hub.")}


def test_stages_import_one_way():
    backwards = []
    for module, path in modules():
        stage = stage_of(module)
        for name in imported(path):
            target = stage_of(name)
            if stage and target and STAGES.index(target) > STAGES.index(stage):
                backwards.append(f"{module} imports {name}")
            if stage is None and target and module not in ("vdata_hub.cli", "vdata_hub.resources"):
                backwards.append(f"{module} (shared) imports the stage module {name}")
    assert not backwards, "\n".join(backwards)


def test_architecture_page_names_every_module():
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [module for module, path in modules()
               if path.name != "__main__.py" and f"{path.relative_to(REPO).as_posix()}" not in page
               and f"{module.split('.')[-1]}.py" not in page and path.name != "__init__.py"]
    assert not missing, f"docs/architecture.md does not mention: {missing}"


@pytest.mark.slow
def test_wheel_from_a_checkout_without_symlinks_runs(tmp_path):
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not [line for line in listed.splitlines() if line.startswith("120000")], "the repository holds symlinks"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", "-c", "core.symlinks=false", str(REPO), str(clone)],
                   check=True, capture_output=True, timeout=300)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", str(clone), "-w",
                            str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    warnings = [line for line in (built.stdout + built.stderr).splitlines()
                if "BuildBackendWarning" in line or "DeprecationWarning" in line or "deprecated" in line]
    assert not warnings, warnings  # e.g. a license given as a TOML table, a data folder not packaged
    (wheel,) = tmp_path.glob("vdata_hub-*.whl")
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)
    # -S: no site-packages hooks, so the editable install of this checkout cannot answer instead
    # of the wheel; the dependencies come from this environment's site-packages.
    path = os.pathsep.join([str(installed), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = {**os.environ, "PYTHONPATH": path}
    where = subprocess.run([sys.executable, "-S", "-c", "import vdata_hub, vdata_hub.resources as r; "
                            "print(vdata_hub.__file__); print(r.TEMPLATES_DIR); print(r.EVAL_DIR)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(installed)) for line in where.stdout.splitlines()), where.stdout
    estimated = subprocess.run([sys.executable, "-S", "-m", "vdata_hub", "estimate", "demo"], capture_output=True,
                               text=True, cwd=tmp_path, env=env, timeout=120)
    assert estimated.returncode == 0, estimated.stderr
    assert "requests:        6" in estimated.stdout
    shown = subprocess.run([sys.executable, "-S", "-m", "vdata_hub", "--help"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=120)
    assert shown.returncode == 0 and "init-repo" in shown.stdout
