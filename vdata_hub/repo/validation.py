"""Validation of rows before they join the dataset: one set of rules for `contribute` (before the
upload) and `review` (before the merge), so a PR the tool opened passes review unless main moved.
The rules themselves live in row_checks, the duplicate decisions in dedup; this module runs them
over a source and keeps the report.

Rows are read in batches. The per-row checks run as Arrow compute kernels (RE2 regexes) and numpy
on a few batches at once in threads; then, in row order, each batch's duplicates are decided
against the rows before it (a row's fate depends only on itself and earlier rows), so the accepted
rows of a batch can be handed to a `sink` (contribute writes them) while later batches are still
being checked. Per row only small arrays are kept (a reason code, the text hash, a MinHash
signature); `accepted_batches()` reads the source a second time for callers without a sink.
Memory stays bounded by the batch size, not the dataset.

Row ids: a row's `id` is made from its text hash (records.row_ids) as it is uploaded, so ids are
unique wherever text hashes are: duplicates of an earlier row or of main are rejected. Review
checks that every id is the one its text hash gives (`bad_id`). An augmented row's `source_id`
follows its source when scrubbing changed the source's text (and with it its id).
"""

from __future__ import annotations

import os
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vdata_hub.errors import ValidationFailed
from vdata_hub.generation.records import ARROW_SCHEMA, RECORD_FIELDS, row_ids
from vdata_hub.repo import dedup, row_checks
from vdata_hub.repo.row_checks import Rules

BATCH_ROWS = 8192
DECIDE_ROWS = 65536  # duplicates are decided for runs of this many rows, then the run goes to the sink
WORKERS = 4  # threads checking batches at once (at most the number of CPUs)


@dataclass
class ValidationReport:
    """What validation decided: counts per reason, and the accepted rows on demand."""

    total: int
    reasons: np.ndarray  # reason code per row (0 = accepted)
    rejected_ids: dict = field(default_factory=dict)  # reason -> list of row ids (all of them)
    matches: dict = field(default_factory=dict)  # row id -> id of the main row it duplicates
    scrubbed: Counter = field(default_factory=Counter)  # "email"/"phone" -> occurrences replaced
    flagged: Counter = field(default_factory=Counter)  # flag -> rows kept with that flag
    _source: object = None
    _hashes: np.ndarray | None = None
    _flags: np.ndarray | None = None
    _suspicious: np.ndarray | None = None  # rows the PII/secret pre-check matched (pass 2 re-scrubs only these)
    _signatures: np.ndarray | None = None
    _rules: Rules | None = None

    @property
    def accepted(self) -> int:
        return int((self.reasons == 0).sum())

    @property
    def rejected(self) -> Counter:
        codes = Counter(self.reasons[self.reasons != 0].tolist())
        return Counter({row_checks.REASONS[code]: count for code, count in codes.items()})

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.accepted == self.total

    def accepted_batches(self) -> Iterator[pa.RecordBatch]:
        """The accepted rows with the canonical schema, PII scrubbed, text_hash and flags set."""
        start = 0
        sources = {} if _has_augmented(self._source) else None
        for batch in _batches(self._source):
            end = start + batch.num_rows
            keep = self.reasons[start:end] == 0
            if keep.any() or sources is not None:
                clean = row_checks.clean_batch(batch, self._rules, self._hashes[start:end], self._flags[start:end],
                                               self._suspicious[start:end])
                clean = _follow_sources(clean, sources, row_checks.column(batch, "id").fill_null(""))
                if keep.any():
                    yield clean.filter(pa.array(keep))
            start = end

    def accepted_table(self) -> pa.Table:
        return pa.Table.from_batches(list(self.accepted_batches()), schema=ARROW_SCHEMA)

    def accepted_hashes(self) -> np.ndarray:
        return self._hashes[self.reasons == 0]

    def accepted_signatures(self) -> np.ndarray:
        """MinHash signatures of the accepted rows, in row order (what the index keeps)."""
        return self._signatures[self.reasons == 0]

    def summary(self) -> str:
        """A short plain-text report: counts per reason, scrubbed and flagged counts."""
        lines = [f"checked {self.total} rows: {self.accepted} accepted, {self.total - self.accepted} rejected"]
        for reason, count in sorted(self.rejected.items(), key=lambda item: -item[1]):
            examples = ", ".join(self.example_ids(reason))
            lines.append(f"  rejected {reason}: {count}" + (f" (e.g. {examples})" if examples else ""))
        for kind, count in sorted(self.scrubbed.items()):
            lines.append(f"  scrubbed {kind}: {count}")
        for flag, count in sorted(self.flagged.items()):
            lines.append(f"  flagged {flag}: {count} (kept, see the `flags` column)")
        return "\n".join(lines)

    def example_ids(self, reason: str, count: int = 3) -> list:
        """A few ids of rows rejected for `reason`, with the main row each duplicates."""
        return [f"{row_id} (main: {self.matches[row_id]})" if row_id in self.matches else row_id
                for row_id in self.rejected_ids.get(reason, [])[:count]]

    def as_dict(self) -> dict:
        return {"checked": self.total, "accepted": self.accepted, "rejected": dict(self.rejected),
                "scrubbed": dict(self.scrubbed), "flagged": dict(self.flagged)}


def check_schema(schema: pa.Schema) -> None:
    """Whole-dataset problems: missing or unexpected columns, wrong types. `text_hash` may be
    missing (it is derived from `text`)."""
    names = set(schema.names)
    missing = [name for name in RECORD_FIELDS if name not in names and name != "text_hash"]
    if missing:
        raise ValidationFailed(f"missing columns: {', '.join(missing)}; is this a dataset written by "
                               "`vdata generate`?")
    extra = [name for name in schema.names if name not in RECORD_FIELDS]
    if extra:
        raise ValidationFailed(f"unexpected columns: {', '.join(extra)}; rows must have exactly the "
                               "columns of vdata_hub.generation.records.Record")
    for name in schema.names:
        expected = ARROW_SCHEMA.field(name).type
        if not _compatible(schema.field(name).type, expected):
            raise ValidationFailed(f"column {name!r} has type {schema.field(name).type}, expected {expected}")


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    if actual.equals(expected):
        return True
    if pa.types.is_string(expected):
        return pa.types.is_large_string(actual) or pa.types.is_string_view(actual)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_floating(expected):
        return pa.types.is_floating(actual) or pa.types.is_integer(actual)
    if pa.types.is_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _compatible(
            actual.value_type, expected.value_type)
    return False


def validate(source, known_hashes: np.ndarray | None = None, rules: Rules | None = None,
             sink: Callable[[pa.RecordBatch], None] | None = None, main=None) -> ValidationReport:
    """Validate a contribution.

    source: a pyarrow Table (e.g. a memory-mapped `datasets` table) or a list of Parquet paths.
    main: what is on main (repo.index.MainIndex), for `duplicate_of_main` and
    `near_duplicate_of_main`; or known_hashes: text hashes on main (int64), for the first only.
    sink: called in row order with each batch's accepted rows as uploaded (canonical schema, PII
    scrubbed, text_hash and flags set) as soon as that batch is decided.
    Raises ValidationFailed for whole-dataset problems (schema, size); row problems are reasons.
    """
    rules = rules or Rules()
    schema = _schema(source)
    check_schema(schema)
    total = _num_rows(source)
    if total > rules.max_rows:
        raise ValidationFailed(f"contribution too large: {total} rows (limit {rules.max_rows}); "
                               "contribute a part with `part`")
    blocklist = row_checks.load_blocklist(rules.blocklist)
    cache: dict = {}  # word -> 64-bit hash: vocabularies repeat from batch to batch
    reasons = np.zeros(total, np.int8)
    hashes = np.zeros(total, np.int64)
    flags = np.zeros(total, bool)
    suspicious = np.zeros(total, bool)
    signatures = np.full((total, dedup.SIGNATURE_BINS), dedup.EMPTY_BIN, np.uint16)
    if main is None and known_hashes is not None:
        from vdata_hub.repo.index import memory_index

        main = memory_index(known_hashes)
    seen = dedup.DuplicateDecisions(main, signatures, rules.near_duplicate_threshold)
    sources = {} if sink is not None and _has_augmented(source) else None
    ids: list[pa.Array] = []
    scrubbed: Counter = Counter()
    size = 0

    def check(start: int, batch: pa.RecordBatch) -> tuple[int, int, dict, Counter]:
        counts: Counter = Counter()
        row = row_checks.check_batch(batch, rules, blocklist, counts, cache, clean=sink is not None)
        row["signatures"] = dedup.minhash_signatures(row.pop("word_hashes"), row.pop("word_rows"),
                                                     batch.num_rows, rules.shingle_words)
        return start, start + batch.num_rows, row, counts

    undecided: list = []  # (start, end, per-row reasons, ids, clean batch) not decided yet

    def store(done) -> None:
        start, end, row, counts = done.result()
        hashes[start:end] = row["hashes"]
        flags[start:end] = row["flags"]
        suspicious[start:end] = row["suspicious"]
        signatures[start:end] = row["signatures"]
        scrubbed.update(counts)
        ids.append(row["ids"])
        undecided.append((start, end, row["reasons"], row["keys"], row.get("clean"), row["ids"]))
        if end - undecided[0][0] >= DECIDE_ROWS:
            decide()

    def decide() -> None:
        """Duplicates of a run of batches (larger runs: less work per row for the kept arrays)."""
        if not undecided:
            return
        first, last = undecided[0][0], undecided[-1][1]
        reasons[first:last] = seen.decide(first, np.concatenate([item[2] for item in undecided]),
                                          hashes[first:last], [i for item in undecided for i in item[3]])
        for start, end, _, _, clean, given_ids in undecided:
            keep = reasons[start:end] == 0
            if sources is not None:
                clean = _follow_sources(clean, sources, given_ids)
            if sink is not None and keep.any():
                sink(clean if keep.all() else clean.filter(pa.array(keep)))  # no copy when all pass
        undecided.clear()

    # Arrow and numpy kernels release the GIL: a few batches in flight use the machine's cores,
    # and the window keeps memory bounded.
    workers = max(1, min(WORKERS, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        pending = deque()
        start = 0
        for batch in _batches(source):
            size += batch.nbytes
            if size > rules.max_bytes:
                raise ValidationFailed(f"contribution too large: over {rules.max_bytes // 2**20} MiB; "
                                       "contribute a part with `part`")
            pending.append(pool.submit(check, start, batch))
            start += batch.num_rows
            while len(pending) > 2 * workers:
                store(pending.popleft())
        while pending:
            store(pending.popleft())
        decide()
    report = ValidationReport(total=total, reasons=reasons, scrubbed=+scrubbed, _source=source,
                              _hashes=hashes, _flags=flags, _suspicious=suspicious, _signatures=signatures,
                              _rules=rules)
    report.flagged = Counter({"boilerplate": int((flags & (reasons == 0)).sum())}) if flags.any() else Counter()
    all_ids = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
    for code in np.unique(reasons[reasons != 0]):
        report.rejected_ids[row_checks.REASONS[code]] = all_ids.take(np.flatnonzero(reasons == code)).to_pylist()
    matched = np.flatnonzero(seen.matched)
    if len(matched):
        report.matches = dict(zip(all_ids.take(matched).to_pylist(), row_ids(seen.matched[matched]).to_pylist()))
    return report


def _has_augmented(source) -> bool:
    """Whether any row of the source is an augmented copy (then source ids may need to follow)."""
    if not isinstance(source, pa.Table) or "augmented" not in source.column_names:
        return True
    return bool(pc.any(source.column("augmented")).as_py())


def _follow_sources(batch: pa.RecordBatch, sources: dict | None, given_ids: pa.Array | None = None) -> pa.RecordBatch:
    """The batch with source_id pointing at each source's id as uploaded. `sources` maps ids as
    given to ids as uploaded where they differ; this batch's rows are added first (a source comes
    before its copies)."""
    if sources is None:
        return batch
    uploaded = batch.column(batch.schema.get_field_index("id"))
    if given_ids is not None:
        differ = np.flatnonzero(~np.asarray(pc.equal(given_ids, uploaded).fill_null(False), bool))
        sources.update(zip(given_ids.take(differ).to_pylist(), uploaded.take(differ).to_pylist()))
    if not sources:
        return batch
    index = batch.schema.get_field_index("source_id")
    source_ids = batch.column(index).to_pylist()
    if not any(value in sources for value in source_ids):
        return batch
    return batch.set_column(index, batch.schema.field(index),
                            pa.array([sources.get(value, value) for value in source_ids], pa.string()))


# --- sources -------------------------------------------------------------------------------------

def _schema(source) -> pa.Schema:
    if isinstance(source, pa.Table):
        return source.schema
    import pyarrow.parquet as pq

    schemas = [pq.read_schema(path) for path in source]
    for path, schema in zip(source, schemas):
        if not schema.equals(schemas[0]):
            check_schema(schema)
    return schemas[0] if schemas else ARROW_SCHEMA


def _num_rows(source) -> int:
    if isinstance(source, pa.Table):
        return source.num_rows
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in source)


def _batches(source) -> Iterator[pa.RecordBatch]:
    if isinstance(source, pa.Table):
        yield from source.to_batches(max_chunksize=BATCH_ROWS)
        return
    import pyarrow.parquet as pq

    for path in source:
        yield from pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS)
