"""Spec → planned records: load Jinja templates, expand the variable grid, render prompts.

Each template is a Jinja file whose first block is a YAML header inside a Jinja comment:

    {#
    description: what it produces
    task: counter_stereotype_story
    variables: [domain, bias_axis, group]
    system: system            # system-prompt template (templates/system.j2 by default)
    example: |
      An example output.
    #}
    Write a short story set in {{ domain }} ...

The expansion is deterministic: every planned record has a stable id derived from the template
source (and its system prompt), its variables, the model, the sampling parameters and a sample
index, so reruns plan the same records and any change plans new ones.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import yaml

from vdata_hub.errors import SpecError, TemplateError
from vdata_hub.resources import TEMPLATES_DIR
from vdata_hub.generation.groups import load_axes
from vdata_hub.generation.spec import GenerationSpec, LoadedSpec, canonical_json

HEADER = re.compile(r"\A\s*\{#(.*?)#\}\s*", re.DOTALL)
GROUP_VARIABLES = ("group", "other_group")
HEADER_KEYS = {"description", "task", "variables", "system", "example"}


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed template file: its header and its body (and its system prompt's)."""

    name: str
    path: Path
    task: str
    description: str
    variables: tuple[str, ...]
    body: str
    system_body: str
    sha: str  # sha256 of the template body and its system prompt


@dataclass(frozen=True)
class PlannedRecord:
    """One request to make: the rendered prompts and everything that identifies it."""

    id: str
    template: str
    template_sha: str
    variables: dict
    prompt: str
    system_prompt: str
    bias_axis: str
    domain: str
    task: str
    group: str
    sample_index: int


def _resolve_template_path(name: str, spec_dir: Path) -> Path:
    if name.endswith(".j2") or "/" in name:
        path = Path(name)
        return path if path.is_absolute() else spec_dir / path
    return TEMPLATES_DIR / f"{name}.j2"


def parse_template_file(path: Path, name: str | None = None) -> tuple[dict, str]:
    """Split a template file into its YAML header (a dict) and its Jinja body."""
    try:
        source = path.read_text(encoding="utf-8")
    except OSError:
        raise TemplateError(f"template {name or path}: file not found at {path}") from None
    match = HEADER.match(source)
    if not match:
        return {}, source
    try:
        header = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: header is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(header, dict):
        raise TemplateError(f"{path}: header must be a YAML mapping")
    unknown = set(header) - HEADER_KEYS
    if unknown:
        raise TemplateError(f"{path}: unknown header key {sorted(unknown)[0]!r}")
    return header, source[match.end():]


def load_template(name: str, spec_dir: Path = TEMPLATES_DIR) -> PromptTemplate:
    path = _resolve_template_path(name, spec_dir)
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in TEMPLATES_DIR.glob("*.j2") if p.stem != "system"))
        raise TemplateError(f"template {name!r} not found (looked at {path}; shipped templates: {shipped})")
    header, body = parse_template_file(path, name)
    system_name = header.get("system", "system")
    system_path = _resolve_template_path(system_name, path.parent) if system_name else None
    system_body = ""
    if system_path is not None:
        if not system_path.exists():
            system_path = TEMPLATES_DIR / f"{system_name}.j2"
        if not system_path.exists():
            raise TemplateError(f"{path}: system prompt template {system_name!r} not found")
        system_body = parse_template_file(system_path)[1]
    sha = hashlib.sha256((body + "\x00" + system_body).encode()).hexdigest()
    return PromptTemplate(
        name=Path(name).stem if name.endswith(".j2") else name,
        path=path,
        task=str(header.get("task", Path(name).stem)),
        description=str(header.get("description", "")),
        variables=tuple(header.get("variables") or ()),
        body=body,
        system_body=system_body,
        sha=sha,
    )


def group_terms() -> dict[str, list[str]]:
    """Group terms per bias axis, from templates/data/groups.yaml."""
    return {axis: list(entry["groups"]) for axis, entry in load_axes().items()}


@lru_cache(maxsize=512)
def _compiled(template_body: str):
    from jinja2 import Environment, StrictUndefined

    env = Environment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
    return env.from_string(template_body)


def render(template_body: str, variables: dict, where: str) -> str:
    """Render with strict undefined variables: a missing one is an error naming the template."""
    from jinja2 import TemplateSyntaxError, UndefinedError

    try:
        return _compiled(template_body).render(**variables).strip()
    except UndefinedError as exc:
        raise TemplateError(f"template {where}: {exc.message}; add it to `variables` in the spec") from None
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {where}: syntax error line {exc.lineno}: {exc.message}") from None


def _variable_grid(template: PromptTemplate, spec: GenerationSpec, source: Path) -> list[dict]:
    """Every combination of the template's variables (group terms follow each bias axis)."""
    names = [name for name in template.variables if name not in GROUP_VARIABLES]
    for name in names:
        if name not in spec.variables:
            raise SpecError(f"{source}: template {template.name!r} needs variable {name!r}; add it under `variables`")
    combos = [dict(zip(names, values)) for values in itertools.product(*(spec.variables[n] for n in names))]
    wants_group = [name for name in GROUP_VARIABLES if name in template.variables]
    if not wants_group:
        return combos
    expanded = []
    for combo in combos:
        for group, other in _groups_for(combo, spec, source, template):
            extra = {"group": group, "other_group": other}
            expanded.append({**combo, **{name: extra[name] for name in wants_group}})
    return expanded


def _groups_for(combo: dict, spec: GenerationSpec, source: Path, template: PromptTemplate) -> list[tuple[str, str]]:
    if "group" in spec.variables:
        groups = [str(g) for g in spec.variables["group"]]
    else:
        axis = combo.get("bias_axis")
        terms = group_terms()
        if axis not in terms:
            raise SpecError(f"{source}: template {template.name!r} needs group terms but bias_axis {axis!r} has none (known axes: {', '.join(terms)})")
        groups = terms[axis]
    # Each group is paired with the next one, so pairs stay linear in the number of groups.
    return [(g, groups[(i + 1) % len(groups)]) for i, g in enumerate(groups)]


def record_id(template_sha: str, variables: dict, model: str, params: dict, sample_index: int) -> str:
    key = canonical_json([template_sha, variables, model, params, sample_index])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _balanced_order(combos: list[tuple[PromptTemplate, dict]], seed: int) -> list[tuple[PromptTemplate, dict]]:
    """Shuffle within each (template, axis) bucket and interleave, so any prefix is balanced."""
    buckets: dict[tuple, list] = {}
    for template, variables in combos:
        buckets.setdefault((template.name, str(variables.get("bias_axis", ""))), []).append((template, variables))
    rng = random.Random(seed)
    ordered_buckets = [buckets[key] for key in sorted(buckets)]
    for bucket in ordered_buckets:
        rng.shuffle(bucket)
    interleaved = []
    for row in itertools.zip_longest(*ordered_buckets):
        interleaved.extend(item for item in row if item is not None)
    return interleaved


def load_templates(loaded: LoadedSpec) -> list[PromptTemplate]:
    """The spec's templates; an error names the spec file and its `templates` key."""
    templates = []
    for name in loaded.spec.templates:
        try:
            templates.append(load_template(name, loaded.source.parent))
        except TemplateError as exc:
            raise TemplateError(f"{loaded.source}: key 'templates': {exc}") from None
    return templates


def plan_records(loaded: LoadedSpec) -> list[PlannedRecord]:
    """All records a spec asks for, in a deterministic, axis-balanced order.

    With `num_records` unset there is one record per combination; above the grid size the grid
    repeats with a higher sample index (a new id, so a new sample).
    """
    return list(iter_planned_records(loaded))


def iter_planned_records(loaded: LoadedSpec) -> Iterator[PlannedRecord]:
    """plan_records() one record at a time, so a 100k-record run does not hold every prompt.

    The grid is rendered in full before the first record is yielded: a template error (an
    undefined variable, a syntax error) is raised before any model is called, and records that
    repeat a combination share its prompt strings.
    """
    spec, source = loaded.spec, loaded.source
    templates = load_templates(loaded)
    combos = [(t, variables) for t in templates for variables in _variable_grid(t, spec, source)]
    if not combos:
        raise SpecError(f"{source}: the variable grid is empty (a variable has an empty list)")
    rendered = [_render_combo(template, variables) for template, variables in _balanced_order(combos, spec.seed)]
    total = spec.num_records or len(rendered)
    params = spec.sampling.model_dump()
    return _yield_planned(rendered, total, spec.model, params)


def _render_combo(template: PromptTemplate, variables: dict) -> tuple[PromptTemplate, dict, str, str]:
    where = f"{template.name!r} ({template.path})"
    system_prompt = render(template.system_body, variables, where) if template.system_body else ""
    return template, variables, render(template.body, variables, where), system_prompt


def _yield_planned(rendered: list, total: int, model: str, params: dict) -> Iterator[PlannedRecord]:
    for index in range(total):
        template, variables, prompt, system_prompt = rendered[index % len(rendered)]
        sample_index = index // len(rendered)
        yield PlannedRecord(
            id=record_id(template.sha, variables, model, params, sample_index),
            template=template.name,
            template_sha=template.sha,
            variables=variables,
            prompt=prompt,
            system_prompt=system_prompt,
            bias_axis=str(variables.get("bias_axis", "")),
            domain=str(variables.get("domain", "")),
            task=template.task,
            group=str(variables.get("group", "")),
            sample_index=sample_index,
        )
