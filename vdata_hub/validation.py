"""Validation of rows before they join the dataset: one set of rules for `contribute` (before the
upload) and `review` (before the merge), so a PR the tool opened passes review unless main moved.

Rows are read in batches. The per-row checks run as Arrow compute kernels (RE2 regexes) and numpy
on a few batches at once in threads; then, in row order, each batch's duplicates are decided
against the rows before it (a row's fate depends only on itself and earlier rows), so the accepted
rows of a batch can be handed to a `sink` (contribute writes them) while later batches are still
being checked. Per row only small arrays are kept (a reason code, the text hash, a MinHash
signature); `accepted_batches()` reads the source a second time for callers without a sink.
Memory stays bounded by the batch size, not the dataset.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vdata_hub import quality
from vdata_hub.errors import ValidationFailed
from vdata_hub.records import ARROW_SCHEMA, PUNCTUATION, RECORD_FIELDS, mix64, text_words, word_hashes
from vdata_hub.resources import CARD_DIR

BATCH_ROWS = 8192
DECIDE_ROWS = 65536  # duplicates are decided for runs of this many rows, then the run goes to the sink
WORKERS = 4  # threads checking batches at once (at most the number of CPUs)
DEFAULT_BLOCKLIST = CARD_DIR / "blocklist.txt"

# Reasons a row is rejected, in the order they are checked (the first that applies is reported).
REASONS = [
    "ok",
    "missing_value",  # a null in any column
    "missing_provenance",  # id, model, template, bias_axis, created_at or generator_version empty
    "bad_bias_axis",  # not a short lower-case name (it becomes a folder name on the Hub)
    "invalid_utf8",
    "empty_text",
    "too_short",
    "too_long",
    "row_too_large",
    "text_hash_mismatch",  # review only: the shard's text_hash does not match its text
    "refusal",
    "boilerplate",  # only when the rules reject boilerplate instead of flagging it
    "secret",  # something that looks like an API key, token or private key
    "personal_data",  # e-mail or phone number, when the rules reject instead of scrubbing
    "blocklisted_term",
    "duplicate",  # same normalised text (or id) earlier in the contribution
    "duplicate_of_main",  # same normalised text already on the repo's main branch
    "near_duplicate",  # MinHash Jaccard estimate above the threshold with an earlier row
]
CODE = {name: code for code, name in enumerate(REASONS)}

REQUIRED_PROVENANCE = ["id", "model", "template", "bias_axis", "created_at", "generator_version"]
BIAS_AXIS_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
PHONE = (r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{3})[ .-]\d{3}[ .-]\d{4}\b"
         r"|\+\d{1,3}(?:[ .-]?\d{2,4}){3,5}\b")
SECRET = "|".join([
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"\bgh[pousr]_[A-Za-z0-9]{30,}", r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bAKIA[0-9A-Z]{16}\b", r"\bAIza[0-9A-Za-z_-]{35}", r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",  # JWT
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"(?i)\b(?:api[_-]?key|secret|access[_-]?token|password)\s*[:=]\s*['\"]?[A-Za-z0-9_/+=-]{16,}",
])
# Refusals and boilerplate: the generation-time quality filters' patterns (vdata_hub.quality), run
# here as RE2 kernels over whole batches; a refusal counts only near the start of the text.
REFUSAL, BOILERPLATE = quality.REFUSAL.pattern, quality.BOILERPLATE.pattern
# One pass finds the rows that may hold any of them (about the cost of one of the patterns alone);
# the separate patterns then run only on those rows.
SCREEN = f"(?:{SECRET})|(?:{EMAIL})|(?:{PHONE})|(?i:{BOILERPLATE})"


@dataclass
class Rules:
    """Limits and policies; the defaults are what `contribute` and `review` use."""

    min_chars: int = 20
    max_chars: int = 20_000
    max_row_bytes: int = 256 * 1024  # all string columns of one row together
    max_rows: int = 1_000_000  # per contribution
    max_bytes: int = 2 * 1024**3  # per contribution, in-memory Arrow size
    pii: str = "scrub"  # "scrub": replace with [email]/[phone] and count; "reject": reject the row
    boilerplate: str = "flag"  # "flag": keep with a `boilerplate` flag; "reject": reject the row
    check_hashes: bool = False  # review: the shard's own text_hash must match its text
    near_duplicate_threshold: float = 0.8  # estimated Jaccard similarity of word shingles
    shingle_words: int = 5
    blocklist: str | None = None  # file path; default $VDATA_BLOCKLIST, else the shipped list


@dataclass
class ValidationReport:
    """What validation decided: counts per reason, and the accepted rows on demand."""

    total: int
    reasons: np.ndarray  # reason code per row (0 = accepted)
    rejected_ids: dict = field(default_factory=dict)  # reason -> list of row ids (all of them)
    scrubbed: Counter = field(default_factory=Counter)  # "email"/"phone" -> occurrences replaced
    flagged: Counter = field(default_factory=Counter)  # flag -> rows kept with that flag
    _source: object = None
    _hashes: np.ndarray | None = None
    _flags: np.ndarray | None = None
    _suspicious: np.ndarray | None = None  # rows the PII/secret pre-check matched (pass 2 re-scrubs only these)
    _rules: Rules | None = None

    @property
    def accepted(self) -> int:
        return int((self.reasons == 0).sum())

    @property
    def rejected(self) -> Counter:
        codes = Counter(self.reasons[self.reasons != 0].tolist())
        return Counter({REASONS[code]: count for code, count in codes.items()})

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.accepted == self.total

    def accepted_batches(self) -> Iterator[pa.RecordBatch]:
        """The accepted rows with the canonical schema, PII scrubbed, text_hash and flags set."""
        start = 0
        for batch in _batches(self._source):
            end = start + batch.num_rows
            keep = self.reasons[start:end] == 0
            if keep.any():
                batch = _clean(batch, self._rules, self._hashes[start:end], self._flags[start:end],
                               self._suspicious[start:end])
                yield batch.filter(pa.array(keep))
            start = end

    def accepted_table(self) -> pa.Table:
        return pa.Table.from_batches(list(self.accepted_batches()), schema=ARROW_SCHEMA)

    def accepted_hashes(self) -> np.ndarray:
        return self._hashes[self.reasons == 0]

    def summary(self) -> str:
        """A short plain-text report: counts per reason, scrubbed and flagged counts."""
        lines = [f"checked {self.total} rows: {self.accepted} accepted, {self.total - self.accepted} rejected"]
        for reason, count in sorted(self.rejected.items(), key=lambda item: -item[1]):
            examples = ", ".join(self.rejected_ids.get(reason, [])[:3])
            lines.append(f"  rejected {reason}: {count}" + (f" (e.g. {examples})" if examples else ""))
        for kind, count in sorted(self.scrubbed.items()):
            lines.append(f"  scrubbed {kind}: {count}")
        for flag, count in sorted(self.flagged.items()):
            lines.append(f"  flagged {flag}: {count} (kept, see the `flags` column)")
        return "\n".join(lines)

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
                               "columns of vdata_hub.records.Record")
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
             sink: Callable[[pa.RecordBatch], None] | None = None) -> ValidationReport:
    """Validate a contribution.

    source: a pyarrow Table (e.g. a memory-mapped `datasets` table) or a list of Parquet paths.
    known_hashes: text hashes already on main (int64), for `duplicate_of_main`.
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
                               "contribute a part with --part")
    blocklist = load_blocklist(rules.blocklist)
    cache: dict = {}  # word -> 64-bit hash: vocabularies repeat from batch to batch
    reasons = np.zeros(total, np.int8)
    hashes = np.zeros(total, np.int64)
    flags = np.zeros(total, bool)
    suspicious = np.zeros(total, bool)
    signatures = np.full((total, SIGNATURE_BINS), EMPTY_BIN, np.uint16)
    seen = _Seen(known_hashes, signatures, rules.near_duplicate_threshold)
    ids: list[pa.Array] = []
    scrubbed: Counter = Counter()
    size = 0

    def check(start: int, batch: pa.RecordBatch) -> tuple[int, int, dict, Counter]:
        counts: Counter = Counter()
        row = _check_batch(batch, rules, blocklist, counts, cache, clean=sink is not None)
        return start, start + batch.num_rows, row, counts

    undecided: list = []  # (start, end, per-row reasons, ids, clean batch) not decided yet

    def store(done) -> None:
        start, end, row, counts = done.result()
        hashes[start:end] = row["hashes"]
        flags[start:end] = row["flags"]
        suspicious[start:end] = row["suspicious"]
        signatures[start:end] = row["signatures"]
        scrubbed.update(counts)
        undecided.append((start, end, row["reasons"], row["ids"], row.get("clean")))
        if end - undecided[0][0] >= DECIDE_ROWS:
            decide()

    def decide() -> None:
        """Duplicates of a run of batches (larger runs: less work per row for the kept arrays)."""
        if not undecided:
            return
        first, last = undecided[0][0], undecided[-1][1]
        reasons[first:last] = seen.decide(first, np.concatenate([item[2] for item in undecided]),
                                          hashes[first:last], [i for item in undecided for i in item[3]])
        for start, end, _, _, clean in undecided:
            keep = reasons[start:end] == 0
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
                                       "contribute a part with --part")
            ids.append(_column(batch, "id").fill_null(""))
            pending.append(pool.submit(check, start, batch))
            start += batch.num_rows
            while len(pending) > 2 * workers:
                store(pending.popleft())
        while pending:
            store(pending.popleft())
        decide()
    report = ValidationReport(total=total, reasons=reasons, scrubbed=+scrubbed, _source=source,
                              _hashes=hashes, _flags=flags, _suspicious=suspicious, _rules=rules)
    report.flagged = Counter({"boilerplate": int((flags & (reasons == 0)).sum())}) if flags.any() else Counter()
    all_ids = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
    for code in np.unique(reasons[reasons != 0]):
        report.rejected_ids[REASONS[code]] = all_ids.take(np.flatnonzero(reasons == code)).to_pylist()
    return report


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


def _column(batch: pa.RecordBatch, name: str) -> pa.Array:
    index = batch.schema.get_field_index(name)
    column = batch.column(index)
    expected = ARROW_SCHEMA.field(name).type
    return column if column.type.equals(expected) else column.cast(expected)


# --- per-row checks ------------------------------------------------------------------------------

def _check_batch(batch: pa.RecordBatch, rules: Rules, blocklist: "Blocklist", scrubbed: Counter,
                 cache: dict, clean: bool = False) -> dict:
    """Every check that needs only the row itself; with `clean`, also the batch as uploaded."""
    n = batch.num_rows
    reasons = np.zeros(n, np.int8)

    def reject(mask, reason: str) -> None:
        mask = np.asarray(mask, bool)
        reasons[(reasons == 0) & mask] = CODE[reason]

    null = np.zeros(n, bool)
    for name in batch.schema.names:
        null |= np.asarray(batch.column(name).is_null(), bool)
    reject(null, "missing_value")
    for name in REQUIRED_PROVENANCE:
        reject(_bool(pc.equal(pc.utf8_trim_whitespace(_column(batch, name).fill_null("")), "")), "missing_provenance")
    reject(~_bool(pc.match_substring_regex(_column(batch, "bias_axis").fill_null(""), BIAS_AXIS_PATTERN)),
           "bad_bias_axis")

    text, invalid = _valid_text(_column(batch, "text").fill_null(""))
    reject(invalid, "invalid_utf8")
    length = np.asarray(pc.utf8_length(pc.utf8_trim_whitespace(text)), np.int64)
    reject(length == 0, "empty_text")
    reject(length < rules.min_chars, "too_short")
    reject(np.asarray(pc.utf8_length(text), np.int64) > rules.max_chars, "too_long")
    row_bytes = np.zeros(n, np.int64)
    for name in batch.schema.names:
        if pa.types.is_string(batch.schema.field(name).type) or pa.types.is_large_string(batch.schema.field(name).type):
            row_bytes += np.asarray(pc.binary_length(batch.column(name).fill_null("")), np.int64)
    reject(row_bytes > rules.max_row_bytes, "row_too_large")

    big = np.asarray(pc.utf8_length(text), np.int64) > rules.max_chars
    if big.any():  # keep regexes and hashing off rejected huge rows (else: the source's own array, no copy)
        text = pc.if_else(pa.array(big), "", text)
    start = pc.utf8_slice_codeunits(text, 0, quality.REFUSAL_WINDOW)
    reject(_bool(pc.match_substring_regex(start, REFUSAL, ignore_case=True)), "refusal")
    candidates = _bool(pc.match_substring_regex(text, SCREEN))
    secret, has_email, has_phone, scrubbed_text = _screen(text, candidates)
    suspicious = secret | has_email | has_phone
    reject(secret, "secret")
    if rules.pii == "reject":
        reject(has_email | has_phone, "personal_data")
    else:
        live = reasons == 0
        for kind, mask in (("email", has_email), ("phone", has_phone)):
            rows = np.flatnonzero(live & mask)
            if len(rows):
                pattern = EMAIL if kind == "email" else PHONE
                scrubbed[kind] += int(pc.sum(pc.count_substring_regex(text.take(pa.array(rows)), pattern)).as_py())
        text = scrubbed_text
    tokens = _words(text)
    encoded = pc.dictionary_encode(tokens[0])  # one hash-table pass: distinct words and their indices
    codes = np.asarray(encoded.indices, np.int64)
    vocabulary = encoded.dictionary.to_pylist()
    reject(blocklist.rows(vocabulary, codes, tokens[1], n), "blocklisted_term")
    token_hash = word_hashes(tokens[0], cache, (vocabulary, codes))
    boilerplate = np.zeros(n, bool)  # (scrubbing cannot make a phrase boilerplate)
    if candidates.any():
        rows = np.flatnonzero(candidates)
        boilerplate[rows] = _bool(pc.match_substring_regex(text.take(pa.array(rows)), BOILERPLATE, ignore_case=True))
    if rules.boilerplate == "reject":
        reject(boilerplate, "boilerplate")

    hashes = _text_hashes(n, tokens[1], token_hash)
    if rules.check_hashes and "text_hash" in batch.schema.names:
        given = np.asarray(_column(batch, "text_hash").fill_null(0), np.int64)
        reject(given != hashes, "text_hash_mismatch")
    signatures = _signatures(token_hash, tokens[1], n, rules.shingle_words)
    row = {"reasons": reasons, "hashes": hashes, "flags": boilerplate, "signatures": signatures,
           "suspicious": suspicious, "ids": _column(batch, "id").fill_null("").to_pylist()}
    if clean:
        row["clean"] = _canonical(batch, text, hashes, boilerplate)
    return row


ASCII_PUNCTUATION = "".join(c for c in PUNCTUATION if c.isascii())


def _words(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """records.text_words (what text hashes and shingles are made of), with the cheaper ASCII
    kernels when no text of the batch needs the Unicode ones (NFKC and Unicode lower case are the
    identity on ASCII; the non-ASCII punctuation cannot occur): same words, a third less time."""
    if not _plain_ascii(text):
        return text_words(text)
    lists = pc.ascii_split_whitespace(pc.ascii_lower(text))
    words = pc.ascii_trim(pc.list_flatten(lists), ASCII_PUNCTUATION)
    rows = np.asarray(pc.list_parent_indices(lists), np.int64)
    keep = np.asarray(pc.not_equal(words, "").fill_null(False), bool)
    if keep.all():  # no word was only punctuation: no copy
        return words, rows
    return words.filter(pa.array(keep)), rows[keep]


_position_mix = np.zeros(0, np.uint64)


def _text_hashes(n: int, rows: np.ndarray, token_hash: np.ndarray) -> np.ndarray:
    """records.text_hashes (the same values; a test keeps them equal) with the mixed word
    positions looked up in a table instead of recomputed for every word."""
    global _position_mix
    counts = np.bincount(rows, minlength=n).astype(np.uint64)
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)[:-1]]).astype(np.int64)
    position = np.arange(len(rows), dtype=np.int64) - starts[rows]
    longest = int(counts.max()) if n else 0
    table = _position_mix
    if len(table) < longest:
        table = _position_mix = mix64(np.arange(1, max(longest, 2 * len(table), 4096) + 1, dtype=np.uint64))
    with np.errstate(over="ignore"):
        values = mix64(token_hash ^ table[position])
        sums = np.zeros(n, np.uint64)
        nonempty = np.flatnonzero(counts)
        if len(nonempty):
            sums[nonempty] = np.add.reduceat(values, starts[nonempty])
        hashes = mix64(sums ^ (counts * np.uint64(0x9E3779B97F4A7C15))).view(np.int64)
    return np.where(hashes == 0, 1, hashes)


def _plain_ascii(text: pa.Array) -> bool:
    """ASCII without the separators \x1c-\x1f (Arrow's Unicode split treats them as white space,
    its ASCII split does not)."""
    if len(text) == 0 or text.null_count or not pc.all(pc.string_is_ascii(text)).as_py():
        return False
    data = text.buffers()[2]
    if data is None:
        return True
    offsets = np.frombuffer(text.buffers()[1], np.int32 if pa.types.is_string(text.type) else np.int64)
    chars = np.frombuffer(data, np.uint8)[offsets[text.offset]:offsets[text.offset + len(text)]]
    return not ((chars - np.uint8(0x1C)) < 4).any()


def _bool(array) -> np.ndarray:
    return np.asarray(array.fill_null(False), bool)


def _valid_text(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Arrow strings read from a hostile Parquet file may hold invalid UTF-8: find those rows."""
    try:
        text.validate(full=True)
        return text, np.zeros(len(text), bool)
    except pa.ArrowInvalid:
        raw = text.cast(pa.binary()).to_pylist()
        invalid = np.zeros(len(raw), bool)
        cleaned = []
        for i, value in enumerate(raw):
            try:
                cleaned.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                invalid[i] = True
                cleaned.append("")
        return pa.array(cleaned, pa.string()), invalid


def _screen(text: pa.Array, suspicious: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """(secret, e-mail, phone) masks and the text with e-mails and phones replaced. One combined
    regex pass over the batch (skipped when `suspicious` is known); the detailed ones run only on
    the few rows it matches."""
    n = len(text)
    secret, email, phone = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    if suspicious is None:
        suspicious = _bool(pc.match_substring_regex(text, f"(?:{SECRET})|(?:{EMAIL})|(?:{PHONE})"))
    if not suspicious.any():
        return secret, email, phone, text
    rows = np.flatnonzero(suspicious)
    sub = text.take(pa.array(rows))
    secret[rows] = _bool(pc.match_substring_regex(sub, SECRET))
    email[rows] = _bool(pc.match_substring_regex(sub, EMAIL))
    phone[rows] = _bool(pc.match_substring_regex(sub, PHONE))
    cleaned = pc.replace_substring_regex(pc.replace_substring_regex(sub, EMAIL, "[email]"), PHONE, "[phone]")
    return secret, email, phone, pc.replace_with_mask(text, pa.array(suspicious), cleaned)


def _clean(batch: pa.RecordBatch, rules: Rules, hashes: np.ndarray, flags: np.ndarray,
           suspicious: np.ndarray) -> pa.RecordBatch:
    """The batch as it is uploaded: canonical schema, scrubbed text, text_hash and flags set."""
    text, _ = _valid_text(_column(batch, "text").fill_null(""))
    return _canonical(batch, _screen(text, suspicious)[3] if rules.pii == "scrub" else text, hashes, flags)


def _canonical(batch: pa.RecordBatch, text: pa.Array, hashes: np.ndarray, flags: np.ndarray) -> pa.RecordBatch:
    columns = {}
    for name in RECORD_FIELDS:
        if name == "text_hash":
            columns[name] = pa.array(hashes, pa.int64())
        elif name == "text":
            columns[name] = text
        elif name == "flags" and not flags.any():
            columns[name] = _column(batch, "flags")
        elif name == "flags":
            current = _column(batch, "flags").fill_null(pa.scalar([], pa.list_(pa.string()))).to_pylist()
            columns[name] = pa.array([row + ["boilerplate"] if flag and "boilerplate" not in row else row
                                      for row, flag in zip(current, flags)], pa.list_(pa.string()))
        else:
            columns[name] = _column(batch, name)
    return pa.RecordBatch.from_arrays([columns[name] for name in RECORD_FIELDS], schema=ARROW_SCHEMA)


# --- blocklist -----------------------------------------------------------------------------------

@dataclass
class Blocklist:
    """Single words, matched case-insensitively as whole tokens. File lines are either a word or
    `sha256:<hex of the lower-case word>` (the shipped list is hashed so the repo holds no slurs)."""

    words: set
    digests: set
    checked: dict = field(default_factory=dict)  # word -> listed, so each word is hashed once

    def rows(self, vocabulary: list, codes: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
        """Which of the n rows contain a listed word, given the batch's distinct words and each
        word's index in them (each distinct word is checked once per validation)."""
        hit = np.zeros(n, bool)
        if not vocabulary or not (self.words or self.digests):
            return hit
        bad = [i for i, word in enumerate(vocabulary) if self._listed(word)]
        if bad:
            hit[rows[np.isin(codes, bad)]] = True
        return hit

    def _listed(self, word: str) -> bool:
        listed = self.checked.get(word)
        if listed is None:
            listed = self.checked[word] = word in self.words or bool(
                self.digests and hashlib.sha256(word.encode()).hexdigest() in self.digests)
        return listed


def load_blocklist(path: str | None = None) -> Blocklist:
    """The maintainer's list ($VDATA_BLOCKLIST or `path`), else the small shipped default."""
    path = Path(path or os.environ.get("VDATA_BLOCKLIST") or DEFAULT_BLOCKLIST)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValidationFailed(f"cannot read the blocklist {path}: {exc.strerror}; fix VDATA_BLOCKLIST") from None
    words, digests = set(), set()
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("sha256:"):
            digests.add(line[len("sha256:"):].lower())
        else:
            words.add(line.lower())
    return Blocklist(words, digests)


# --- near duplicates: one-permutation MinHash with rotation densification, LSH banding ---------

SIGNATURE_BINS = 64  # 16-bit values: 128 bytes per row
# LSH: 16 bands of 4 bins; pairs above ~0.5 Jaccard become candidates, then are verified.
EMPTY_BIN = np.uint16(0xFFFF)
def _signatures(token_hash: np.ndarray, rows: np.ndarray, n: int, k: int) -> np.ndarray:
    """MinHash signature per row over word k-shingles (one-permutation hashing into bins: the top
    6 bits of a shingle's 32-bit hash pick its bin, the low 16 bits are its value); rows with fewer
    than k words stay empty. 32-bit arithmetic, in place: this runs over every word."""
    if len(token_hash) < k:
        return np.full((n, SIGNATURE_BINS), EMPTY_BIN, np.uint16)
    count = len(token_hash) - k + 1
    words = (token_hash >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        h = words[:count].copy()
        for j in range(1, k):
            h *= np.uint32(0x01000193)
            h += words[j:j + count]
        h ^= h >> np.uint32(16)  # murmur3's finaliser
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    owner = rows[:count].astype(np.int32)
    owner[owner != rows[k - 1:k - 1 + count]] = n  # shingles across two texts go to a spare row
    slot = owner * np.int32(SIGNATURE_BINS) + (h >> np.uint32(26)).astype(np.int32)
    values = np.minimum(h.astype(np.uint16), np.uint16(EMPTY_BIN - 1))
    spare = np.full((n + 1, SIGNATURE_BINS), EMPTY_BIN, np.uint16)
    np.minimum.at(spare.reshape(-1), slot, values)
    return _densify(spare[:n])


def _densify(signatures: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next non-empty bin (cyclically), mixed with the distance, so
    short texts still compare (rotation densification). One step of distance at a time: the first
    step over the whole array fills most holes, the next ones only the rows still holding some."""
    empty = signatures == EMPTY_BIN
    hole = empty & ~empty.all(axis=1)[:, None]  # rows with no shingle at all stay empty
    if not hole.any():
        return signatures
    original = signatures.copy()
    rows = None  # None: every row
    distance = 0
    while rows is None or len(rows):
        distance += 1
        source = np.roll(original if rows is None else original[rows], -distance, axis=1)  # bin i + distance
        left = hole if rows is None else hole[rows]
        fill = left & (source != EMPTY_BIN)
        with np.errstate(over="ignore"):
            mixed = source[fill].astype(np.uint32) * np.uint32(0x9E3779B1) + np.uint32(distance * 0x85EBCA77 % 2**32)
        mixed = (mixed % np.uint32(0xFFF1)).astype(np.uint16)
        left &= ~fill
        if rows is None:
            signatures[fill] = mixed
            rows = np.flatnonzero(left.any(axis=1))
        else:
            block = signatures[rows]
            block[fill] = mixed
            signatures[rows] = block
            hole[rows] = left
            rows = rows[left.any(axis=1)]
    return signatures


class _Seen:
    """What the rows decided so far leave behind for the next batch, so duplicates are decided
    batch by batch in row order, exactly as over the whole contribution at once:
    - duplicate: a later row with the same text hash or id as an earlier row that passed the
      per-row checks (the earlier one is kept);
    - duplicate_of_main: the text hash is already on main;
    - near_duplicate: LSH banding (16 bands of 4 bins) gives each row a candidate per band, the
      first live row with the same band; a candidate whose estimated Jaccard similarity reaches
      the threshold makes the row a near duplicate of it.
    Kept per distinct key: the text hash and the 16 band keys with their first row (12 bytes each,
    in _FirstRows: about 200 bytes per row), and the ids in a set."""

    BANDS = SIGNATURE_BINS // 4

    def __init__(self, known: np.ndarray | None, signatures: np.ndarray, threshold: float):
        self.known = np.unique(np.asarray(known, np.int64)) if known is not None and len(known) else None
        self.signatures = signatures  # all rows' signatures, filled in before decide() is called
        self.threshold = threshold
        self.hashes = _FirstRows()
        self.ids: set = set()
        self.bands = [_FirstRows() for _ in range(self.BANDS)]

    def decide(self, start: int, reasons: np.ndarray, hashes: np.ndarray, ids: list) -> np.ndarray:
        """The final reasons of rows start.. given their per-row reasons (0 = passed so far)."""
        reasons = reasons.copy()
        live = np.flatnonzero(reasons == 0)
        if len(live) == 0:
            return reasons
        keys = hashes[live].view(np.uint64)
        later = self.hashes.first(keys, start + live) != start + live
        earlier, first = self.ids, {}
        for j, i in enumerate(live.tolist()):
            key = ids[i]
            if key in earlier or key in first:
                later[j] = True
            else:
                first[key] = i
        earlier.update(first)
        reasons[live[later]] = CODE["duplicate"]
        if self.known is not None:
            live = np.flatnonzero(reasons == 0)
            reasons[live[_contains(self.known, hashes[live])]] = CODE["duplicate_of_main"]
        self._near(start, reasons)
        return reasons

    def _near(self, start: int, reasons: np.ndarray) -> None:
        sig = self.signatures[start:start + len(reasons)]
        live = np.flatnonzero((reasons == 0) & (sig[:, 0] != EMPTY_BIN))
        if len(live) == 0:
            return
        rows = start + live  # row numbers in the whole contribution
        keys = np.ascontiguousarray(sig[live]).view(np.uint64)  # (rows, bands): 4 16-bit bins as one key
        rep = np.stack([self.bands[band].first(keys[:, band], rows) for band in range(self.BANDS)], axis=1)
        other = rep != rows[:, None]
        if not other.any():
            return
        pairs = np.unique(np.stack([np.broadcast_to(rows[:, None], rep.shape)[other], rep[other]], axis=1), axis=0)
        similarity = (self.signatures[pairs[:, 0]] == self.signatures[pairs[:, 1]]).mean(axis=1)
        near = np.unique(pairs[similarity >= self.threshold, 0])
        reasons[near - start] = CODE["near_duplicate"]


class _FirstRows:
    """64-bit key -> the first row that had it, as two sorted arrays (distinct keys, first rows).
    Adding a run of keys is one stable sort of the kept keys followed by the new ones: the kept
    ones are already one sorted run, so the sort costs about sorting the new keys plus a merge."""

    def __init__(self):
        self.keys, self.rows = np.zeros(0, np.uint64), np.zeros(0, np.int32)  # < 2**31 rows

    def first(self, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each key (in row order), the first row with that key among those seen before and
        these; then these are remembered."""
        kept = len(self.keys)
        new_order = np.argsort(keys)  # the new keys sorted (quicksort), then merged with the kept run
        every = np.concatenate([self.keys, keys[new_order]])
        order = np.argsort(every, kind="stable")  # two sorted runs: a merge
        ordered = every[order]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        begins = np.flatnonzero(starts)
        every_rows = np.concatenate([self.rows, rows[new_order].astype(np.int32)])
        first_row = np.minimum.reduceat(every_rows[order], begins)
        self.keys, self.rows = ordered[begins], first_row
        group = np.empty(len(every), np.int64)
        group[order] = np.cumsum(starts) - 1
        result = np.empty(len(keys), np.int64)
        result[new_order] = first_row[group[kept:]]
        return result


def _contains(sorted_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_values) == 0:
        return np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(sorted_values, keys), len(sorted_values) - 1)
    return sorted_values[at] == keys
