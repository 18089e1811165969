"""The generation spec: what to generate, with which model, how fast and for how much.

A spec is a JSON or YAML file (or the name of one shipped in `templates/specs/`). It is
validated in full before any model is called: unknown keys, wrong types and missing templates
are errors that name the file and the key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vdata_hub.errors import SpecError
from vdata_hub.resources import SPECS_DIR

Scalar = Union[str, int, float, bool]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class Sampling(Strict):
    """Sampling parameters sent with every request; part of each record's id."""

    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(256, ge=1, le=32768)


class RateLimit(Strict):
    """Client-side limits; None means no limit (the adaptive limiter still reacts to 429s)."""

    requests_per_minute: Optional[int] = Field(None, ge=1)
    tokens_per_minute: Optional[int] = Field(None, ge=1)


class Retries(Strict):
    max_attempts: int = Field(5, ge=1, le=50)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(120.0, gt=0)


class Augment(Strict):
    """Counterfactual augmentation: extra rows with the group terms swapped."""

    counterfactual: bool = False
    axes: Optional[list[str]] = None  # None: every axis that has swap rules


class Quality(Strict):
    """Quality filters applied to each reply at generation time."""

    min_chars: int = Field(20, ge=1)
    max_chars: int = Field(8000, ge=1)
    max_repeated_ngram_ratio: float = Field(0.3, ge=0, le=1)
    language: Optional[str] = "en"
    drop_flagged: bool = True


class BatchOptions(Strict):
    """How batch mode (`batch: true`) submits and waits; not part of any record's provenance."""

    max_requests: Optional[int] = Field(None, ge=1)  # per batch; None: the provider's limit
    poll_s: float = Field(30.0, gt=0)  # seconds between status checks with --wait


class GenerationSpec(Strict):
    """Everything a run needs; options on the command line override these fields."""

    model: str = "local"  # any LiteLLM model string, or "local" / "local:PATH.gguf"
    api_base: Optional[str] = None
    templates: list[str] = Field(min_length=1)  # shipped template names or paths to .j2 files
    variables: dict[str, list[Scalar]] = Field(default_factory=dict)
    num_records: Optional[int] = Field(None, ge=1)  # None: one record per combination
    sampling: Sampling = Field(default_factory=Sampling)
    concurrency: int = Field(8, ge=1, le=4096)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    retries: Retries = Field(default_factory=Retries)
    max_cost_usd: Optional[float] = Field(None, ge=0)
    seed: int = 0
    augment: Augment = Field(default_factory=Augment)
    quality: Quality = Field(default_factory=Quality)
    batch: bool = False  # send the requests through the provider's batch API (about half price, within 24 h)
    batch_options: BatchOptions = Field(default_factory=BatchOptions)

    def sha(self) -> str:
        """Hash of the effective spec (after overrides), stored on every record.

        The transport (batch or real-time) is left out: both produce the same records.
        """
        return hashlib.sha256(canonical_json(self.model_dump(exclude={"batch", "batch_options"})).encode()).hexdigest()


class LoadedSpec(BaseModel):
    """A validated spec and the file it came from (relative template paths resolve against it)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    spec: GenerationSpec
    source: Path


def canonical_json(value) -> str:
    """The one canonical JSON (sorted keys, no spaces, UTF-8 kept): spec hashes, record ids and
    the `variables`/`params` columns."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def find_spec_file(spec: str | Path) -> Path:
    """A path to a spec file, or the name of a spec shipped with the package (`demo`, ...)."""
    path = Path(spec)
    if path.exists():
        if path.is_dir():
            raise SpecError(f"{path}: is a folder, expected a JSON or YAML spec file")
        return path
    for suffix in (".yaml", ".yml", ".json"):
        shipped = SPECS_DIR / f"{spec}{suffix}"
        if shipped.exists():
            return shipped
    names = ", ".join(sorted(p.stem for p in SPECS_DIR.glob("*.*") if p.suffix in (".yaml", ".yml", ".json")))
    raise SpecError(f"{spec}: no such spec file, and not a shipped spec (shipped: {names})")


def _format_error(path: Path, error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key {key!r}"
    return f"{path}: key {key!r}: {error['msg']}"


def load_spec(spec: str | Path) -> LoadedSpec:
    """Read and validate a spec file; SpecError names the file and the first bad key."""
    path = find_spec_file(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read ({exc})") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise SpecError(f"{path}: not valid {kind}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping of spec keys at the top level")
    try:
        parsed = GenerationSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_format_error(path, exc.errors()[0])) from None
    return LoadedSpec(spec=parsed, source=path.resolve())


def apply_overrides(loaded: LoadedSpec, **overrides) -> LoadedSpec:
    """Command-line options override spec fields; None means 'not given'."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if not given:
        return loaded
    data = loaded.spec.model_dump()
    data.update(given)
    try:
        parsed = GenerationSpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise SpecError(f"option --{key.replace('_', '-')}: {error['msg']}") from None
    return LoadedSpec(spec=parsed, source=loaded.source)
