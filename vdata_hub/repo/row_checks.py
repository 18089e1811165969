"""What each row must satisfy, checked batch by batch: provenance, text length and encoding,
refusals and boilerplate, secrets and personal data (scrubbed or rejected), blocklisted terms;
and the batch as it is uploaded (canonical schema, scrubbed text, text hash, flags).

The checks run as Arrow compute kernels (RE2 regexes) and numpy over whole batches; each batch
also gets its rows' text hashes and word hashes, from which dedup makes MinHash signatures.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vdata_hub.errors import ValidationFailed
from vdata_hub.generation import quality
from vdata_hub.generation.records import (ARROW_SCHEMA, RECORD_FIELDS, hash_word_sequences, row_ids, text_words,
                                          word_hashes)
from vdata_hub.repo.layout import AXIS_PATTERN
from vdata_hub.resources import CARD_DIR

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
    "bad_id",  # review only: the id is not the one its text hash gives (records.row_ids)
    "refusal",
    "boilerplate",  # only when the rules reject boilerplate instead of flagging it
    "secret",  # something that looks like an API key, token or private key
    "personal_data",  # e-mail or phone number, when the rules reject instead of scrubbing
    "blocklisted_term",
    "duplicate",  # same normalised text (or plan key) earlier in the contribution
    "duplicate_of_main",  # same normalised text already on the repo's main branch
    "near_duplicate_of_main",  # MinHash Jaccard estimate above the threshold with a row on main
    "near_duplicate",  # MinHash Jaccard estimate above the threshold with an earlier row
]


CODE = {name: code for code, name in enumerate(REASONS)}


REQUIRED_PROVENANCE = ["id", "plan_key", "model", "template", "bias_axis", "created_at", "generator_version"]


BIAS_AXIS_PATTERN = f"^{AXIS_PATTERN}$"


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


# Refusals and boilerplate: the generation-time quality filters' patterns (vdata_hub.generation.quality), run
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


def column(batch: pa.RecordBatch, name: str) -> pa.Array:
    index = batch.schema.get_field_index(name)
    column = batch.column(index)
    expected = ARROW_SCHEMA.field(name).type
    return column if column.type.equals(expected) else column.cast(expected)


def check_batch(batch: pa.RecordBatch, rules: Rules, blocklist: "Blocklist", scrubbed: Counter,
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
        reject(_bool(pc.equal(pc.utf8_trim_whitespace(column(batch, name).fill_null("")), "")), "missing_provenance")
    reject(~_bool(pc.match_substring_regex(column(batch, "bias_axis").fill_null(""), BIAS_AXIS_PATTERN)),
           "bad_bias_axis")

    text, invalid = _valid_text(column(batch, "text").fill_null(""))
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
    tokens = text_words(text)
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

    hashes = hash_word_sequences(n, tokens[1], token_hash)
    ids = column(batch, "id").fill_null("")
    if rules.check_hashes and "text_hash" in batch.schema.names:
        given = np.asarray(column(batch, "text_hash").fill_null(0), np.int64)
        reject(given != hashes, "text_hash_mismatch")
        reject(~_bool(pc.equal(ids, row_ids(given))), "bad_id")
    row = {"reasons": reasons, "hashes": hashes, "flags": boilerplate, "suspicious": suspicious,
           "ids": ids, "keys": column(batch, "plan_key").fill_null("").to_pylist(),
           "word_hashes": token_hash, "word_rows": tokens[1]}
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


def clean_batch(batch: pa.RecordBatch, rules: Rules, hashes: np.ndarray, flags: np.ndarray,
           suspicious: np.ndarray) -> pa.RecordBatch:
    """The batch as it is uploaded: canonical schema, scrubbed text, text_hash and flags set."""
    text, _ = _valid_text(column(batch, "text").fill_null(""))
    return _canonical(batch, _screen(text, suspicious)[3] if rules.pii == "scrub" else text, hashes, flags)


def _canonical(batch: pa.RecordBatch, text: pa.Array, hashes: np.ndarray, flags: np.ndarray) -> pa.RecordBatch:
    columns = {}
    for name in RECORD_FIELDS:
        if name == "text_hash":
            columns[name] = pa.array(hashes, pa.int64())
        elif name == "id":
            columns[name] = row_ids(hashes)
        elif name == "text":
            columns[name] = text
        elif name == "flags" and not flags.any():
            columns[name] = column(batch, "flags")
        elif name == "flags":
            current = column(batch, "flags").fill_null(pa.scalar([], pa.list_(pa.string()))).to_pylist()
            columns[name] = pa.array([row + ["boilerplate"] if flag and "boilerplate" not in row else row
                                      for row, flag in zip(current, flags)], pa.list_(pa.string()))
        else:
            columns[name] = column(batch, name)
    return pa.RecordBatch.from_arrays([columns[name] for name in RECORD_FIELDS], schema=ARROW_SCHEMA)


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


DEFAULT_BLOCKLIST = CARD_DIR / "blocklist.txt"
