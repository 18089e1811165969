"""vdata-hub: generate, share and verify low-bias synthetic training data on the Hugging Face Hub.

The library is the API; the CLI (`python -m vdata_hub`, `vdata`) is a thin layer on top of it:

    import vdata_hub
    summary = vdata_hub.generate("out", "demo")
    vdata_hub.contribute("out", repo="me/vdata")

The package follows the flow of the data, one subpackage per stage:
  generation/  spec -> prompts -> LLM calls -> records -> Arrow dataset on disk
  repo/        the Hub dataset repo: layout, validation, duplicate index, contribute, review,
               compact, archive, card
  query/       reading it back: pull, SQL guard, DuckDB sandbox, shard reader
  eval/        bias benchmarks and fine-tuning (the repository's eval/ folder)
The public verbs below are imported on first use, so `import vdata_hub` stays fast.
"""

from pathlib import Path

__version__ = "0.1.0"

DEFAULT_REPO = "org/vdata"
# "We copyleft our tool, post our license-free dataset": the tool is GPL-3.0-or-later (LICENSE),
# every contributed row is released under CC0-1.0 (the card, the manifests, the contribute prompt).
DATASET_LICENSE = "cc0-1.0"
DATASET_LICENSE_URL = "https://creativecommons.org/publicdomain/zero/1.0/"

# In a source checkout, templates/, dataset_card/ and eval/ sit beside the package (the design's
# layout); a wheel installs them inside it (pyproject's package-dir). Let a checkout find them too.
_CHECKOUT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "eval").is_dir() and (_CHECKOUT / "eval" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # noqa: F821 -- a package's own __path__

_VERBS = {
    "generate": "vdata_hub.generation.generate",
    "estimate": "vdata_hub.generation.cost",
    "batch_status": "vdata_hub.generation.batch",
    "batch_cancel": "vdata_hub.generation.batch",
    "contribute": "vdata_hub.repo.contribute",
    "review": "vdata_hub.repo.review",
    "compact": "vdata_hub.repo.compact",
    "archive": "vdata_hub.repo.archive",
    "reindex": "vdata_hub.repo.reindex",
    "card": "vdata_hub.repo.card",
    "init_repo": "vdata_hub.repo.card",
    "stats": "vdata_hub.repo.stats",
    "pull": "vdata_hub.query.pull",
}

__all__ = ["__version__", "DEFAULT_REPO", "DATASET_LICENSE", *_VERBS]


def __getattr__(name: str):
    """Import a public verb on first use (PEP 562)."""
    if name in _VERBS:
        import importlib

        return getattr(importlib.import_module(_VERBS[name]), name)
    raise AttributeError(f"module 'vdata_hub' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_VERBS))
