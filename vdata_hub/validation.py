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
from vdata_hub.records import ARROW_SCHEMA, RECORD_FIELDS, mix64, text_hashes, text_words, word_hashes
from vdata_hub.resources import CARD_DIR

BATCH_ROWS = 8192
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

    def store(done) -> None:
        start, end, row, counts = done.result()
        hashes[start:end] = row["hashes"]
        flags[start:end] = row["flags"]
        suspicious[start:end] = row["suspicious"]
        signatures[start:end] = row["signatures"]
        reasons[start:end] = seen.decide(start, row["reasons"], row["hashes"], row["ids"])
        scrubbed.update(counts)
        if sink is not None:
            keep = reasons[start:end] == 0
            if keep.any():
                sink(row["clean"].filter(pa.array(keep)))

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
    text = pc.if_else(pa.array(big), "", text)  # keep regexes and hashing off rejected huge rows
    start = pc.utf8_slice_codeunits(text, 0, quality.REFUSAL_WINDOW)
    reject(_bool(pc.match_substring_regex(start, REFUSAL, ignore_case=True)), "refusal")
    secret, has_email, has_phone, scrubbed_text = _screen(text)
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
    tokens = text_words(text)
    encoded = pc.dictionary_encode(tokens[0])  # one hash-table pass: distinct words and their indices
    codes = np.asarray(encoded.indices, np.int64)
    vocabulary = encoded.dictionary.to_pylist()
    reject(blocklist.rows(vocabulary, codes, tokens[1], n), "blocklisted_term")
    token_hash = word_hashes(tokens[0], cache, (vocabulary, codes))
    boilerplate = _bool(pc.match_substring_regex(text, BOILERPLATE, ignore_case=True))
    if rules.boilerplate == "reject":
        reject(boilerplate, "boilerplate")

    hashes = np.asarray(text_hashes(text, tokens, token_hash), np.int64)
    if rules.check_hashes and "text_hash" in batch.schema.names:
        given = np.asarray(_column(batch, "text_hash").fill_null(0), np.int64)
        reject(given != hashes, "text_hash_mismatch")
    signatures = _signatures(token_hash, tokens[1], n, rules.shingle_words)
    row = {"reasons": reasons, "hashes": hashes, "flags": boilerplate, "signatures": signatures,
           "suspicious": suspicious, "ids": _column(batch, "id").fill_null("").to_pylist()}
    if clean:
        row["clean"] = _canonical(batch, text, hashes, boilerplate)
    return row


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
    """MinHash signature per row over word k-shingles (one-permutation hashing into bins); rows
    with fewer than k words stay empty."""
    signatures = np.full((n, SIGNATURE_BINS), EMPTY_BIN, np.uint16)
    if len(token_hash) < k:
        return signatures
    count = len(token_hash) - k + 1
    shingle = token_hash[:count].copy()
    with np.errstate(over="ignore"):
        for j in range(1, k):
            shingle = shingle * np.uint64(0x100000001B3) + token_hash[j:j + count]
        same_row = rows[:count] == rows[k - 1:k - 1 + count]
        h = mix64(shingle[same_row])
    owner = rows[:count][same_row]
    bins = (h >> np.uint64(58)).astype(np.int64)
    values = ((h >> np.uint64(16)) % np.uint64(0xFFFF)).astype(np.uint16)  # never EMPTY_BIN
    np.minimum.at(signatures.reshape(-1), owner * SIGNATURE_BINS + bins, values)
    return _densify(signatures)


def _densify(signatures: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next non-empty bin (cyclically), mixed with the distance, so
    short texts still compare (rotation densification)."""
    empty = signatures == EMPTY_BIN
    partial = np.flatnonzero(empty.any(axis=1) & ~empty.all(axis=1))
    if len(partial) == 0:
        return signatures
    sub, hole = signatures[partial], empty[partial]
    bins = np.arange(SIGNATURE_BINS, dtype=np.int32)
    positions = np.where(hole, np.int32(4 * SIGNATURE_BINS), bins)
    following = np.minimum.accumulate(positions[:, ::-1], axis=1)[:, ::-1]
    following = np.where(following >= SIGNATURE_BINS, following[:, :1] + SIGNATURE_BINS, following)
    source = np.take_along_axis(sub, following % SIGNATURE_BINS, axis=1).astype(np.uint32)
    with np.errstate(over="ignore"):
        mixed = source * np.uint32(0x9E3779B1) + (following - bins).astype(np.uint32) * np.uint32(0x85EBCA77)
    signatures[partial] = np.where(hole, (mixed % np.uint32(0xFFF1)).astype(np.uint16), sub)
    return signatures


class _Seen:
    """What the rows decided so far leave behind for the next batch, so duplicates are decided
    batch by batch in row order, exactly as over the whole contribution at once:
    - duplicate: a later row with the same text hash or id as an earlier row that passed the
      per-row checks (the earlier one is kept);
    - duplicate_of_main: the text hash is already on main;
    - near_duplicate: LSH banding (16 bands of 4 bins) gives each row a candidate per band, the
      first earlier live row with the same band; a candidate whose estimated Jaccard similarity
      reaches the threshold makes the row a near duplicate of it.
    Kept: sorted arrays of text hashes and band keys (8 bytes each per row), and the ids."""

    def __init__(self, known: np.ndarray | None, signatures: np.ndarray, threshold: float):
        self.known = np.unique(np.asarray(known, np.int64)) if known is not None and len(known) else None
        self.signatures = signatures  # all rows' signatures, filled in before decide() is called
        self.threshold = threshold
        self.hashes = np.zeros(0, np.int64)
        self.ids: set = set()
        bands = SIGNATURE_BINS // 4
        self.band_keys = [np.zeros(0, np.uint64) for _ in range(bands)]
        self.band_rows = [np.zeros(0, np.int64) for _ in range(bands)]

    def decide(self, start: int, reasons: np.ndarray, hashes: np.ndarray, ids: list) -> np.ndarray:
        """The final reasons of rows start.. given their per-row reasons (0 = passed so far)."""
        reasons = reasons.copy()
        live = np.flatnonzero(reasons == 0)
        if len(live) == 0:
            return reasons
        later = _repeated(hashes[live], self.hashes)
        self.hashes = _insert_sorted(self.hashes, np.unique(hashes[live]))
        live_ids = [ids[i] for i in live]
        earlier, first = self.ids, {}
        for i, key in enumerate(live_ids):
            if key in earlier or key in first:
                later[i] = True
            else:
                first[key] = i
        earlier.update(first)
        reasons[live[later]] = CODE["duplicate"]
        if self.known is not None:
            live = np.flatnonzero(reasons == 0)
            on_main = _contains(self.known, hashes[live])
            reasons[live[on_main]] = CODE["duplicate_of_main"]
        self._near(start, reasons)
        return reasons

    def _near(self, start: int, reasons: np.ndarray) -> None:
        sig = self.signatures[start:start + len(reasons)]
        live = np.flatnonzero((reasons == 0) & (sig[:, 0] != EMPTY_BIN))
        if len(live) == 0:
            return
        rows = start + live  # row numbers in the whole contribution
        keys = np.ascontiguousarray(sig[live]).view(np.uint64)  # each band of 4 16-bit bins as one key
        near = np.zeros(len(live), bool)
        for band in range(keys.shape[1]):
            key, known_keys, known_rows = keys[:, band], self.band_keys[band], self.band_rows[band]
            # first row with this key in the batch, and the first before the batch (if any)
            unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            rep = rows[first][inverse]
            at = np.searchsorted(known_keys, unique)
            found = np.zeros(len(unique), bool)
            if len(known_keys):
                nearest = np.minimum(at, len(known_keys) - 1)
                found = known_keys[nearest] == unique
                rep = np.where(found[inverse], known_rows[nearest][inverse], rep)
            self.band_keys[band] = np.insert(known_keys, at[~found], unique[~found])
            self.band_rows[band] = np.insert(known_rows, at[~found], rows[first][~found])
            candidates = np.flatnonzero((rep != rows) & ~near)
            if len(candidates):
                similarity = (sig[live[candidates]] == self.signatures[rep[candidates]]).mean(axis=1)
                near[candidates[similarity >= self.threshold]] = True
        reasons[live[near]] = CODE["near_duplicate"]


def _repeated(keys: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """For each key: is it in `earlier` (sorted) or earlier in `keys` itself."""
    repeated = _contains(earlier, keys)
    _, first = np.unique(keys, return_index=True)
    again = np.ones(len(keys), bool)
    again[first] = False
    return repeated | again


def _contains(sorted_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_values) == 0:
        return np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(sorted_values, keys), len(sorted_values) - 1)
    return sorted_values[at] == keys


def _insert_sorted(sorted_values: np.ndarray, new: np.ndarray) -> np.ndarray:
    """`sorted_values` with the (sorted, distinct) `new` values not yet in it."""
    new = new[~_contains(sorted_values, new)]
    return np.insert(sorted_values, np.searchsorted(sorted_values, new), new)
