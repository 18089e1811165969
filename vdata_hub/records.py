"""The record schema: one generated text with its provenance.

Defined once here; the Arrow schema, the Hub Parquet shards, validation and SQL views all
derive from it. `variables` and `params` are JSON strings because every template has its own
variables, and one flat schema keeps shards from different templates concatenable.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import pyarrow as pa

from vdata_hub import __version__

ARROW_TYPES = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    list: pa.list_(pa.string()),
}


@dataclass
class Record:
    """One row of the dataset."""

    id: str  # stable: hash of template source, variables, model, sampling params, sample index
    text: str  # the generated text, never empty
    prompt: str  # rendered user prompt
    system_prompt: str
    template: str  # template name
    template_sha: str  # sha256 of the template source
    variables: str  # JSON object of the expanded template variables
    bias_axis: str
    domain: str
    task: str
    group: str  # group term(s) the prompt is about, "" when none
    model: str
    params: str  # JSON object of the sampling parameters
    input_tokens: int
    output_tokens: int
    cost_usd: float
    finish_reason: str
    created_at: str  # ISO 8601, UTC
    generator_version: str = __version__
    spec_sha: str = ""
    augmented: bool = False  # counterfactual variant of another row
    source_id: str = ""  # id of the row an augmented row derives from, "" otherwise
    flags: list = field(default_factory=list)  # quality flags kept on the row (reasons)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RECORD_FIELDS = [f.name for f in dataclasses.fields(Record)]
PROVENANCE_FIELDS = [name for name in RECORD_FIELDS if name not in ("text",)]


def _field_type(f: dataclasses.Field) -> pa.DataType:
    annotation = f.type if isinstance(f.type, str) else f.type.__name__
    return ARROW_TYPES[{"str": str, "int": int, "float": float, "bool": bool, "list": list}[annotation]]


ARROW_SCHEMA = pa.schema([pa.field(f.name, _field_type(f), nullable=False) for f in dataclasses.fields(Record)])


def records_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with Record's fields) to an Arrow table with the canonical schema."""
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)


def to_json(value) -> str:
    """Canonical JSON used for ids and the `variables`/`params` columns."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
