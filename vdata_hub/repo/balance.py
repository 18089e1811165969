"""Balance counts of a set of rows, in a form that adds up: the counts of two sets of rows are
the sum of each set's counts.

`contribute` stores the counts of its rows in the contribution's manifest, `review` checks them
against the rows, and the dataset card sums them over the manifests, so refreshing the card never
reads the data. `vdata stats` uses the same counting over the rows it reads (repo/stats.py turns
the counts into the figures it reports).

The counts are plain JSON: rows, augmented rows, rows per axis and per group, group mentions per
axis, pronouns, quality flags, domain × axis × task cells, and histograms of text length in
characters and words (exact below HISTOGRAM_EXACT, then bins HISTOGRAM_STEP wide in relative terms,
so percentiles read from them are within that share of the true value). Duplicates are counted by
the caller, who knows the scope (a contribution, or a whole dataset).

Words are found vectorised with Arrow kernels: maximal runs of letters, digits and `_`, joined by
single hyphens ("34-year-old", "low-income" stay one word), which is what stats.TOKEN matches.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vdata_hub.generation import quality

SEPARATORS = r"[^\p{L}\p{N}_\s-]+|--+"  # anything but word characters, white space and single hyphens
PRONOUNS = {
    "he": ("he", "him", "his", "himself"),
    "she": ("she", "her", "hers", "herself"),
    "they": ("they", "them", "their", "theirs", "themselves", "themself"),
}
HISTOGRAM_EXACT = 50
HISTOGRAM_STEP = 0.02
COUNT_KEYS = ("rows_per_axis", "pronouns", "flags")
NESTED_KEYS = ("rows_per_group", "mentions")


def empty() -> dict:
    return {"rows": 0, "augmented": 0, "duplicates": 0, "rows_per_axis": {}, "rows_per_group": {}, "mentions": {},
            "pronouns": {}, "flags": {}, "cells": {}, "chars": _empty_lengths(), "words": _empty_lengths()}


def _empty_lengths() -> dict:
    return {"min": None, "max": None, "sum": 0, "histogram": {}}


def pack(counts: dict) -> dict:
    """The counts as stored in manifests and records: the domain × axis × task cells as a dense
    table ({"domains", "axes", "tasks", "counts"}: a tenth of the nested form's size)."""
    cells = counts.get("cells", {})
    if "counts" in cells:
        return counts
    domains = sorted(cells)
    axes = sorted({axis for found in cells.values() for axis in found})
    tasks = sorted({task for found in cells.values() for axes_ in found.values() for task in axes_})
    dense = [cells.get(d, {}).get(a, {}).get(t, 0) for d in domains for a in axes for t in tasks]
    return {**counts, "cells": {"domains": domains, "axes": axes, "tasks": tasks, "counts": dense}}


def unpack_cells(cells: dict) -> dict:
    """{domain: {axis: {task: rows}}} of packed or nested cells."""
    if "counts" not in cells:
        return cells
    nested: dict = {}
    values = iter(cells["counts"])
    for domain in cells["domains"]:
        for axis in cells["axes"]:
            for task in cells["tasks"]:
                count = next(values)
                if count:
                    nested.setdefault(domain, {}).setdefault(axis, {})[task] = count
    return nested


def merge(total: dict, part: dict) -> dict:
    """Add the counts `part` (nested or packed) into `total` (in place) and return `total`."""
    total["rows"] += part.get("rows", 0)
    total["augmented"] += part.get("augmented", 0)
    total["duplicates"] += part.get("duplicates", 0)
    for key in COUNT_KEYS:
        _add(total[key], part.get(key, {}))
    for key in NESTED_KEYS:
        for axis, counts in part.get(key, {}).items():
            _add(total[key].setdefault(axis, {}), counts)
    for domain, axes in unpack_cells(part.get("cells", {})).items():
        for axis, tasks in axes.items():
            _add(total["cells"].setdefault(domain, {}).setdefault(axis, {}), tasks)
    for key in ("chars", "words"):
        mine, theirs = total[key], part.get(key) or _empty_lengths()
        if theirs["min"] is not None:
            mine["min"] = theirs["min"] if mine["min"] is None else min(mine["min"], theirs["min"])
            mine["max"] = theirs["max"] if mine["max"] is None else max(mine["max"], theirs["max"])
        mine["sum"] += theirs["sum"]
        _add(mine["histogram"], theirs["histogram"])
    return total


def _add(into: dict, counts: dict) -> None:
    for name, count in counts.items():
        into[name] = into.get(name, 0) + count


def count_batch(batch) -> dict:
    """The counts of one Arrow batch or table with the record columns (text, bias_axis, group,
    domain, task, augmented, flags; missing columns count as empty)."""
    n = batch.num_rows
    counts = empty()
    if n == 0:
        return counts
    text = _column(batch, "text", "").combine_chunks() if isinstance(batch, pa.Table) else _column(batch, "text", "")
    axes = _strings(batch, "bias_axis")
    groups = _strings(batch, "group")
    counts["rows"] = n
    counts["augmented"] = int(np.asarray(_column(batch, "augmented", False).fill_null(False), bool).sum())
    counts["rows_per_axis"] = _value_counts(axes)
    for axis, group, count in _pair_counts(axes, groups):
        if group:
            counts["rows_per_group"].setdefault(axis, {})[group] = count
    cells = pc.binary_join_element_wise(_strings(batch, "domain"), axes, _strings(batch, "task"), "\x1f")
    for cell, count in _value_counts(cells).items():
        domain, axis, task = cell.split("\x1f")
        counts["cells"].setdefault(domain, {}).setdefault(axis, {})[task] = count
    words, rows = words_of(text)
    lower = pc.utf8_lower(words)
    counts["mentions"] = count_mentions(words, lower, rows)
    counts["pronouns"] = _pronouns(lower)
    counts["flags"] = _flags(batch, text)
    counts["chars"] = _lengths(np.asarray(pc.utf8_length(text), np.int64))
    counts["words"] = _lengths(np.asarray(pc.list_value_length(pc.utf8_split_whitespace(text)), np.int64))
    return counts


def _column(batch, name: str, default):
    if name in batch.schema.names:
        return batch.column(name)
    return pa.array([default] * batch.num_rows)


def _strings(batch, name: str) -> pa.Array:
    column = _column(batch, name, "")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.cast(pa.string()).fill_null("")


def _value_counts(array) -> dict:
    return {item["values"]: item["counts"] for item in pc.value_counts(array).to_pylist()}


def _pair_counts(first: pa.Array, second: pa.Array):
    joined = pc.binary_join_element_wise(first, second, "\x1f")
    for key, count in _value_counts(joined).items():
        a, b = key.split("\x1f")
        yield a, b, count


def words_of(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The words of each text (see the module docstring) and the index of each word's text."""
    lists = pc.utf8_split_whitespace(pc.replace_substring_regex(text.fill_null(""), SEPARATORS, " "))
    words = pc.utf8_trim(pc.list_flatten(lists), "-")
    rows = np.asarray(pc.list_parent_indices(lists), np.int64)
    keep = np.asarray(pc.not_equal(words, "").fill_null(False), bool)
    return words.filter(pa.array(keep)), rows[keep]


def _pronouns(lower: pa.Array) -> dict:
    result = {}
    for key, forms in PRONOUNS.items():
        result[key] = int(pc.sum(pc.is_in(lower, value_set=pa.array(forms))).as_py() or 0)
    return result


def _flags(batch, text: pa.Array) -> dict:
    """Rows per quality flag: the flags stored on the rows, plus refusal, boilerplate, too_short and
    too_long checked again here (default quality settings); repetition and wrong_language only as
    stored (generate checks them on every reply)."""
    from vdata_hub.generation.spec import Quality

    n = len(text)
    settings = Quality()
    stripped = pc.utf8_trim_whitespace(text)
    length = np.asarray(pc.utf8_length(stripped), np.int64)
    found = {
        "refusal": _matches(pc.utf8_slice_codeunits(stripped, 0, quality.REFUSAL_WINDOW), quality.REFUSAL.pattern),
        "boilerplate": _matches(stripped, quality.BOILERPLATE.pattern),
        "too_short": length < settings.min_chars,
        "too_long": length > settings.max_chars,
    }
    if "flags" in batch.schema.names:
        stored = batch.column("flags")
        if isinstance(stored, pa.ChunkedArray):
            stored = stored.combine_chunks()
        flat = pc.list_flatten(stored)
        parents = np.asarray(pc.list_parent_indices(stored), np.int64)
        for name in pc.unique(flat).to_pylist():
            rows = np.zeros(n, bool)
            rows[parents[np.asarray(pc.equal(flat, name), bool)]] = True
            found[name] = found[name] | rows if name in found else rows
    return {name: int(rows.sum()) for name, rows in found.items() if rows.any()}


def _matches(text: pa.Array, pattern: str) -> np.ndarray:
    return np.asarray(pc.match_substring_regex(text, pattern, ignore_case=True).fill_null(False), bool)


def histogram_key(value: int) -> int:
    """The bin of a length: the value itself below HISTOGRAM_EXACT, else the lower edge of its bin."""
    if value < HISTOGRAM_EXACT:
        return int(value)
    step = math.floor(math.log(value / HISTOGRAM_EXACT) / math.log1p(HISTOGRAM_STEP))
    return max(HISTOGRAM_EXACT, math.ceil(HISTOGRAM_EXACT * (1 + HISTOGRAM_STEP) ** step - 1e-9))


def _lengths(values: np.ndarray) -> dict:
    if not len(values):
        return _empty_lengths()
    keys, counts = np.unique(values, return_counts=True)
    histogram: dict[str, int] = {}
    for key, count in zip(keys.tolist(), counts.tolist()):
        name = str(histogram_key(key))
        histogram[name] = histogram.get(name, 0) + count
    return {"min": int(values.min()), "max": int(values.max()), "sum": int(values.sum()), "histogram": histogram}


def percentiles(lengths: dict, points=(5, 25, 50, 75, 95)) -> dict:
    """min, p5..p95 (the lower edge of the bin holding each percentile), max and mean."""
    total = sum(lengths["histogram"].values())
    if not total:
        return {}
    ordered = sorted((int(key), count) for key, count in lengths["histogram"].items())
    edges = np.array([key for key, _ in ordered])
    cumulative = np.cumsum([count for _, count in ordered])
    summary = {"min": lengths["min"]}
    for point in points:
        rank = min(total, max(1, math.ceil(point / 100 * total)))
        summary[f"p{point}"] = int(edges[np.searchsorted(cumulative, rank)])
    summary["max"] = lengths["max"]
    summary["mean"] = round(lengths["sum"] / total, 1)
    return summary


# -- group mentions ------------------------------------------------------------------------------

class _Terms:
    """Every group term of templates/data/groups.yaml as a sequence of word codes, for vectorised
    matching: `vocabulary` (lower-case term words), and per term length a sorted array of keys (the
    codes of the words, combined) with the term each key names."""

    def __init__(self, entries: list[tuple]):
        self.entries = entries  # (lower-case words, axis, group, exact words or None)
        self.axis_names = sorted({axis for _, axis, _, _ in entries})
        self.axis_of = np.array([self.axis_names.index(axis) for _, axis, _, _ in entries], np.int64)
        self.exact = np.array([exact is not None for *_, exact in entries], bool)
        longest = max(len(words) for words, *_ in entries)
        # exact_words[j][e]: word j of term e as written (None past its end or for lower-case terms)
        self.exact_words = [pa.array([(exact[j] if exact is not None and j < len(exact) else None)
                                      for *_, exact in entries], pa.string()) for j in range(longest)]
        vocabulary = sorted({word for words, *_ in entries for word in words})
        self.vocabulary = pa.array(vocabulary, pa.string())
        code = {word: i + 1 for i, word in enumerate(vocabulary)}
        self.base = len(vocabulary) + 1
        by_length: dict[int, list] = {}
        for number, (words, *_rest) in enumerate(entries):
            key = 0
            for word in words:
                key = key * self.base + code[word]
            by_length.setdefault(len(words), []).append((key, number))
        self.keys = {}
        for length, pairs in by_length.items():
            pairs.sort()
            self.keys[length] = (np.array([k for k, _ in pairs], np.int64), np.array([e for _, e in pairs], np.int64))


@lru_cache(maxsize=1)
def _terms() -> _Terms:
    from vdata_hub.repo.stats import mention_index

    entries = [entry for candidates in mention_index().values() for entry in candidates]
    return _Terms(entries)


def count_mentions(words: pa.Array, lower: pa.Array, rows: np.ndarray) -> dict:
    """{axis: {group: mentions}} over all texts: whole words, the longest term first at each word,
    no overlapping mentions within an axis in one text; terms written with a capital ("Black")
    match only with it. Vectorised: only words that begin some term are looked at."""
    terms = _terms()
    codes = np.asarray(pc.index_in(lower, value_set=terms.vocabulary).fill_null(-1), np.int64) + 1
    n = len(codes)
    starts = np.flatnonzero(codes)
    hits = []  # (start, length, entry) arrays per term length
    for length, (keys, entries) in terms.keys.items():
        at = starts[starts + length <= n]
        if length > 1:
            at = at[rows[at + length - 1] == rows[at]]
        key = np.zeros(len(at), np.int64)
        ok = np.ones(len(at), bool)
        for offset in range(length):
            code = codes[at + offset]
            ok &= code > 0
            key = key * terms.base + code
        at, key = at[ok], key[ok]
        lo = np.searchsorted(keys, key, side="left")
        hi = np.searchsorted(keys, key, side="right")
        found = hi > lo
        at, lo, hi = at[found], lo[found], hi[found]
        repeats = hi - lo  # one key may name several terms (the same words in two axes)
        starts_of = np.repeat(at, repeats)
        entry_index = np.repeat(lo - np.cumsum(np.concatenate([[0], repeats[:-1]])), repeats) + np.arange(repeats.sum())
        hits.append((starts_of, np.full(len(starts_of), length), entries[entry_index]))
    if not hits:
        return {}
    start = np.concatenate([h[0] for h in hits])
    length = np.concatenate([h[1] for h in hits])
    entry = np.concatenate([h[2] for h in hits])
    keep = _exact_case(words, start, length, entry, terms)
    start, length, entry = start[keep], length[keep], entry[keep]
    return _non_overlapping(start, length, entry, rows, terms)


def _exact_case(words: pa.Array, start, length, entry, terms: _Terms) -> np.ndarray:
    """False for hits of terms written with a capital whose words in the text differ in case."""
    keep = np.ones(len(start), bool)
    exact = np.flatnonzero(terms.exact[entry])
    for offset in range(int(length[exact].max()) if len(exact) else 0):
        at = exact[length[exact] > offset]
        expected = terms.exact_words[offset].take(pa.array(entry[at]))
        same = np.asarray(pc.equal(words.take(pa.array(start[at] + offset)), expected), bool)
        keep[at[~same]] = False
    return keep


def _non_overlapping(start, length, entry, rows, terms: _Terms) -> dict:
    """Count hits per (axis, group): per text and axis, scanning words in order, the longest hit at
    a word counts and hides the hits that start inside it."""
    axis = terms.axis_of[entry]
    text = rows[start]
    order = np.lexsort((entry, -length, start, axis, text))
    start, length, entry, axis, text = start[order], length[order], entry[order], axis[order], text[order]
    group_change = np.ones(len(start), bool)
    group_change[1:] = (text[1:] != text[:-1]) | (axis[1:] != axis[:-1])
    first_at_word = group_change.copy()
    first_at_word[1:] |= start[1:] != start[:-1]
    start, length, entry, group_change = (start[first_at_word], length[first_at_word], entry[first_at_word],
                                          group_change[first_at_word])
    end = start + length
    group_id = np.cumsum(group_change) - 1
    span = int(end.max()) + 1 if len(end) else 1
    furthest = np.maximum.accumulate(group_id * span + end)  # furthest end so far, group by group
    before = np.concatenate([[-1], furthest[:-1]]) - group_id * span  # < 0 at a group's first hit
    overlap = start < before
    counted = np.ones(len(start), bool)
    if overlap.any():  # rare: walk the (text, axis) groups that hold an overlap, in order
        for group in np.unique(group_id[overlap]):
            members = np.flatnonzero(group_id == group)
            free_from = -1
            for i in members:
                if start[i] < free_from:
                    counted[i] = False
                else:
                    free_from = end[i]
    result: dict = {}
    found, counts = np.unique(entry[counted], return_counts=True)
    for e, count in zip(found.tolist(), counts.tolist()):
        _words_, axis_name, group, _exact = terms.entries[e]
        result.setdefault(axis_name, {})
        result[axis_name][group] = result[axis_name].get(group, 0) + count
    return result
