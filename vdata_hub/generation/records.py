"""The record schema: one generated text with its provenance.

Defined once here; the Arrow schema, the Hub Parquet shards, validation and SQL views all
derive from it. `variables` and `params` are JSON strings because every template has its own
variables, and one flat schema keeps shards from different templates concatenable.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np
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

    id: str  # unique in the whole dataset: the 64-bit text_hash as 16 hex digits (row_ids)
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
    # The plan's key: hash of template source, variables, model, sampling params and sample index.
    # Resume finds done records by it; contributors who run the same spec share plan keys.
    plan_key: str = ""
    flags: list = field(default_factory=list)  # quality flags kept on the row (reasons)
    # 64-bit hash of the normalised text (see text_hashes); filled by records_to_table when 0.
    # Duplicate checks read only this column of the Hub's shards, not the texts.
    text_hash: int = 0

    def to_dict(self) -> dict:
        """The row as a dict; shallow, as every field but `flags` (copied) is a str, number or bool
        (dataclasses.asdict deep-copies each value: the largest CPU cost of a record in generate)."""
        row = dict(self.__dict__)
        row["flags"] = list(self.flags)
        return row


RECORD_FIELDS = [f.name for f in dataclasses.fields(Record)]
PROVENANCE_FIELDS = [name for name in RECORD_FIELDS if name not in ("text",)]


def _field_type(f: dataclasses.Field) -> pa.DataType:
    annotation = f.type if isinstance(f.type, str) else f.type.__name__
    return ARROW_TYPES[{"str": str, "int": int, "float": float, "bool": bool, "list": list}[annotation]]


ARROW_SCHEMA = pa.schema([pa.field(f.name, _field_type(f), nullable=False) for f in dataclasses.fields(Record)])


def records_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts with Record's fields) to an Arrow table with the canonical schema; a missing
    or zero `text_hash` is computed from `text`, an empty `id` from the text hash. Rows written
    before ids were unique (no `plan_key`: their `id` was the plan key) are upgraded."""
    rows = [_upgraded(row) for row in rows]
    table = pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
    if any(not row["text_hash"] for row in rows):
        index = table.schema.get_field_index("text_hash")
        given = table.column("text_hash").to_numpy()
        computed = text_hashes(table.column("text")).to_numpy()
        table = table.set_column(index, ARROW_SCHEMA.field("text_hash"),
                                 pa.array(np.where(given == 0, computed, given), pa.int64()))
    if any(not row["id"] for row in rows):
        ids = row_ids(table.column("text_hash").to_numpy())
        table = table.set_column(0, ARROW_SCHEMA.field("id"), pa.array(
            [row["id"] or ids[i].as_py() for i, row in enumerate(rows)], pa.string()))
    return table


def _upgraded(row: dict) -> dict:
    row = row if row.get("text_hash") else {**row, "text_hash": 0}
    if "plan_key" not in row:  # written before plan_key: the id was the plan key
        row = {**row, "plan_key": row.get("id", ""), "id": ""}
    return row


def plan_key_of(row: dict) -> str | None:
    """The plan key of a row as `generate` journals it (rows written before plan_key had it as `id`)."""
    return row.get("plan_key") or row.get("id")


def upgrade_row(row: dict) -> dict:
    """A row written before plan_key, with the plan key moved to `plan_key` and the unique id
    (from the text hash, computed here when missing) in `id`; other rows unchanged."""
    if "plan_key" in row:
        return row
    text_hash = row.get("text_hash") or text_hashes(pa.array([str(row.get("text", ""))])).to_numpy()[0]
    return {**row, "plan_key": row.get("id", ""), "id": row_id(int(text_hash)), "text_hash": int(text_hash)}


def upgrade_table(table: pa.Table) -> pa.Table:
    """A dataset written before plan_key (its `id` was the plan key) in today's form: the plan key
    in `plan_key`, `id` from the text hash, and `source_id` naming the source row's new id."""
    if "plan_key" in table.column_names or "id" not in table.column_names:
        return table
    import pyarrow.compute as pc

    old_ids = table.column("id").combine_chunks()
    computed = None
    if "text_hash" in table.column_names:
        hashes = table.column("text_hash").to_numpy()
        if (hashes == 0).any():
            computed = text_hashes(table.column("text")).to_numpy()
            hashes = np.where(hashes == 0, computed, hashes)
    else:
        hashes = text_hashes(table.column("text")).to_numpy()
        table = table.append_column(ARROW_SCHEMA.field("text_hash"), pa.array(hashes, pa.int64()))
    ids = row_ids(hashes)
    table = table.set_column(table.schema.get_field_index("id"), ARROW_SCHEMA.field("id"), ids)
    table = table.append_column(ARROW_SCHEMA.field("plan_key"), old_ids)
    if "source_id" in table.column_names and "augmented" in table.column_names and pc.any(table.column("augmented")).as_py():
        source_ids = table.column("source_id").combine_chunks()
        wanted = set(source_ids.to_pylist()) - {""}
        rows = np.flatnonzero(np.asarray(pc.is_in(old_ids, pa.array(sorted(wanted), pa.string())), bool))
        new_of_old = dict(zip(old_ids.take(rows).to_pylist(), ids.take(rows).to_pylist()))
        table = table.set_column(table.schema.get_field_index("source_id"), ARROW_SCHEMA.field("source_id"),
                                 pa.array([new_of_old.get(value, value) for value in source_ids.to_pylist()], pa.string()))
    return table


def row_ids(text_hashes: np.ndarray) -> pa.Array:
    """The row ids of these text hashes: 16 lower-case hex digits of the unsigned 64-bit hash.
    Rows on main have distinct text hashes (duplicates are rejected), so their ids are unique
    across the whole dataset, and an id names the same text in every repo and archive."""
    hashes = np.ascontiguousarray(np.asarray(text_hashes, np.int64).astype(">i8"))
    digits = hashes.tobytes().hex().encode()
    offsets = np.arange(0, len(digits) + 1, 16, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), len(hashes), [None, pa.py_buffer(offsets), pa.py_buffer(digits)])


def row_id(text_hash: int) -> str:
    return f"{text_hash & 0xFFFFFFFFFFFFFFFF:016x}"


PUNCTUATION = "\"'`.,;:!?()[]{}<>«»“”‘’„…—–-*_/\\|#~^"


ASCII_PUNCTUATION = "".join(c for c in PUNCTUATION if c.isascii())


def text_words(texts) -> tuple[pa.Array, np.ndarray]:
    """The words of each text as compared for duplicates (the one normalisation of "the same
    text"): NFKC, lower case, split on white space, punctuation trimmed from both ends, empty
    words dropped. Returns (words, index of each word's text).

    A batch whose texts are all plain ASCII takes the cheaper ASCII kernels (NFKC and Unicode
    lower case are the identity on ASCII; the non-ASCII punctuation cannot occur): the same words,
    a third less time."""
    import pyarrow.compute as pc

    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if _plain_ascii(texts):
        lists = pc.ascii_split_whitespace(pc.ascii_lower(texts))
        words = pc.ascii_trim(pc.list_flatten(lists), ASCII_PUNCTUATION)
    else:
        lists = pc.utf8_split_whitespace(pc.utf8_lower(pc.utf8_normalize(texts, "NFKC")))
        words = pc.utf8_trim(pc.list_flatten(lists), PUNCTUATION)
    rows = np.asarray(pc.list_parent_indices(lists), np.int64)
    keep = np.asarray(pc.not_equal(words, "").fill_null(False), bool)
    if keep.all():  # no word was only punctuation: no copy
        return words, rows
    return words.filter(pa.array(keep)), rows[keep]


def _plain_ascii(text: pa.Array) -> bool:
    """ASCII without the separators \x1c-\x1f (Arrow's Unicode split treats them as white space,
    its ASCII split does not)."""
    import pyarrow.compute as pc

    if len(text) == 0 or text.null_count or not pc.all(pc.string_is_ascii(text)).as_py():
        return False
    data = text.buffers()[2]
    if data is None:
        return True
    offsets = np.frombuffer(text.buffers()[1], np.int32 if pa.types.is_string(text.type) else np.int64)
    chars = np.frombuffer(data, np.uint8)[offsets[text.offset]:offsets[text.offset + len(text)]]
    return not ((chars - np.uint8(0x1C)) < 4).any()


def word_hashes(words: pa.Array, cache: dict | None = None, encoded: tuple | None = None) -> np.ndarray:
    """A 64-bit BLAKE2b hash of every word (uint64), hashing each distinct word once. `encoded`:
    (distinct words, index of each word in them) when the caller has them already."""
    import pyarrow.compute as pc

    if len(words) == 0:
        return np.zeros(0, np.uint64)
    if encoded is None:
        unique = pc.unique(words)
        encoded = unique.to_pylist(), np.asarray(pc.index_in(words, value_set=unique), np.int64)
    vocabulary, codes = encoded
    cache = {} if cache is None else cache
    values = []
    for word in vocabulary:
        value = cache.get(word)
        if value is None:
            value = cache[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        values.append(value)
    return np.array(values, np.uint64)[codes]


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-spread 64-bit hash of 64-bit values (uint64, wrapping)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def text_hashes(texts, words: tuple | None = None, token_hash: np.ndarray | None = None) -> pa.Array:
    """64-bit hashes (int64, never 0) of the normalised texts: of the sequence of their words
    (see text_words), each word hashed with BLAKE2b and mixed with its position. The one text hash:
    stored in every shard, compared by validation, stats and the dedup checks. Vectorised, so
    hashing a million rows takes seconds."""
    words, rows = words if words is not None else text_words(texts)
    token_hash = word_hashes(words) if token_hash is None else token_hash
    return pa.array(hash_word_sequences(len(texts), rows, token_hash), pa.int64())


_position_mix = np.zeros(0, np.uint64)  # mix64(1..N), grown as longer texts arrive


def hash_word_sequences(n: int, rows: np.ndarray, token_hash: np.ndarray) -> np.ndarray:
    """text_hashes from the words' hashes and the index of each word's text, as int64 numpy."""
    global _position_mix
    counts = np.bincount(rows, minlength=n).astype(np.uint64)
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)[:-1]]).astype(np.int64)
    position = np.arange(len(rows), dtype=np.int64) - starts[rows]
    longest = int(counts.max()) if n else 0
    table = _position_mix
    if len(table) < longest:  # the mixed positions are looked up, not recomputed for every word
        table = _position_mix = mix64(np.arange(1, max(longest, 2 * len(table), 4096) + 1, dtype=np.uint64))
    with np.errstate(over="ignore"):
        values = mix64(token_hash ^ table[position])
        sums = np.zeros(n, np.uint64)
        nonempty = np.flatnonzero(counts)
        if len(nonempty):
            sums[nonempty] = np.add.reduceat(values, starts[nonempty])
        hashes = mix64(sums ^ (counts * np.uint64(0x9E3779B97F4A7C15))).view(np.int64)
    return np.where(hashes == 0, 1, hashes)


def same_text(first: str, second: str) -> bool:
    """Whether two texts are the same text as validation and stats see it (equal text hashes)."""
    hashes = text_hashes(pa.array([first, second], pa.string())).to_pylist()
    return hashes[0] == hashes[1]
