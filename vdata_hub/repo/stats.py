"""Balance statistics of a dataset: does it talk about every group, in every domain, as often?

Works on a local dataset folder (what `generate` writes) or a Hub dataset repo (its Parquet shards,
reading only the columns it needs). What it measures:

- mentions: for each bias axis, how many times each group is named in the texts (whole-word,
  longest-first matching of the terms in templates/data/groups.yaml; terms written with a capital,
  such as "Black" or "Muslim", match only with that capital, so "a white coat" is not a mention).
  All texts count, whatever their own axis: that is what a model trains on.
- rows per axis and rows per group (from the `bias_axis` and `group` columns).
- pronouns: he/him/his/himself vs she/her/hers/herself vs they/them/their/theirs/themselves.
- coverage: rows per domain × axis × task cell, against every combination of the values present.
- length: characters and words, percentiles (read from histograms: within 2% of the exact value).
- flags: the quality flags stored on the rows, plus refusal, boilerplate, too_short and too_long
  checked again with the default Quality settings; the refusal rate among them.
- duplicates: rows whose normalised text (its `text_hash`) already appeared.

The counting itself is repo/balance.py's, whose counts add up: the dataset card sums the counts that
each contribution's manifest carries instead of reading the rows.

Imbalance rule: a distribution is flagged when max / min > threshold (default 2.0), where min can be
0 (then the ratio is infinite and always flagged). It is checked for the group mentions within each
axis (axes without any mention are skipped), the rows per group within each axis, the rows per axis
and he vs she pronouns (when either occurs).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from vdata_hub.errors import VdataError
from vdata_hub.generation.groups import load_axes as _axes
from vdata_hub.repo import balance, layout

COLUMNS = ["text", "bias_axis", "domain", "task", "group", "augmented", "flags", "text_hash"]
DEFAULT_THRESHOLD = 2.0
BATCH_ROWS = 8192
PRONOUNS = balance.PRONOUNS
TOKEN = re.compile(r"\w+(?:-\w+)*")  # words; hyphenated compounds ("34-year-old", "low-income") stay one word


@dataclass
class DatasetStats:
    """Everything `vdata stats` reports; `to_dict()` is the --json output."""

    dataset: str
    revision: Optional[str]
    rows: int
    augmented_rows: int
    threshold: float
    rows_per_axis: dict = field(default_factory=dict)  # axis -> rows
    rows_per_group: dict = field(default_factory=dict)  # axis -> group -> rows
    mentions: dict = field(default_factory=dict)  # axis -> group -> mentions in texts
    pronouns: dict = field(default_factory=dict)  # he/she/they -> count
    pronoun_ratios: dict = field(default_factory=dict)  # he/she/they -> share of all three
    coverage: dict = field(default_factory=dict)  # cells, covered, possible, missing
    length_chars: dict = field(default_factory=dict)  # min, p5..p95, max, mean
    length_words: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)  # quality flag -> rows
    refusal_rate: float = 0.0
    duplicates: int = 0
    duplicate_rate: float = 0.0
    imbalances: list = field(default_factory=list)  # {kind, axis, ratio, max, min, message}
    chart: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


def _group_terms(terms: dict) -> list[str]:
    words = [t for form, values in terms.items() if form != "ages" for t in ([values] if isinstance(values, str) else values)]
    if "ages" in terms:  # "34-year-old", "34 years old"
        low, high = terms["ages"]
        for age in range(low, high + 1):
            words += [f"{age}-year-old", f"{age}-year-olds", f"{age} years old", f"{age} year old"]
    return words


@lru_cache(maxsize=1)
def mention_index() -> dict[str, list[tuple]]:
    """First word of a term (lower case) -> [(words in lower case, axis, group, exact words or None)],
    longest first. Terms written with a capital ("Black", "Muslim") match only with it (`exact`)."""
    index: dict[str, list[tuple]] = {}
    for axis, entry in _axes().items():
        for group, terms in (entry.get("terms") or {}).items():
            for term in _group_terms(terms):
                words = tuple(TOKEN.findall(term))
                exact = words if term != term.lower() else None
                index.setdefault(words[0].lower(), []).append((tuple(w.lower() for w in words), axis, group, exact))
    for candidates in index.values():
        candidates.sort(key=lambda item: len(item[0]), reverse=True)
    return index


def count_mentions(text: str) -> dict[str, Counter]:
    """Group mentions per axis in one text: whole words (a hyphenated compound is one word, so
    "man-made" is not "man"), the longest term first, no overlapping mentions within an axis."""
    words = TOKEN.findall(text)
    lower = [w.lower() for w in words]
    index = mention_index()
    found: dict[str, Counter] = {}
    free_from: dict[str, int] = {}  # per axis, the first word not inside a mention already counted
    for i, word in enumerate(lower):
        for term, axis, group, exact in index.get(word, ()):
            end = i + len(term)
            if free_from.get(axis, 0) > i or tuple(lower[i:end]) != term:
                continue
            if exact is not None and tuple(words[i:end]) != exact:
                continue
            found.setdefault(axis, Counter())[group] += 1
            free_from[axis] = end
    return found


def _imbalance(kind: str, axis: str, counts: dict, threshold: float) -> Optional[dict]:
    if len(counts) < 2 or not any(counts.values()):
        return None
    high = max(counts, key=lambda k: counts[k])
    low = min(counts, key=lambda k: counts[k])
    ratio = None if counts[low] == 0 else counts[high] / counts[low]
    if ratio is not None and ratio <= threshold:
        return None
    shown = "inf" if ratio is None else f"{ratio:.1f}"
    where = f" in {axis}" if axis else ""
    message = f"{kind}{where}: {high} {counts[high]} vs {low} {counts[low]} (max/min {shown} > {threshold:g})"
    return {"kind": kind, "axis": axis, "ratio": ratio, "max": [high, counts[high]], "min": [low, counts[low]],
            "message": message}


def _local_batches(path: Path) -> Iterator:
    from vdata_hub.generation.local_dataset import load_local_dataset

    table = load_local_dataset(path)
    columns = [c for c in COLUMNS if c in table.column_names]
    yield from table.select(columns).to_batches(max_chunksize=BATCH_ROWS)


def _hub_batches(repo: str, revision: Optional[str], token: Optional[str], include_archive: bool = False) -> Iterator:
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem

    from vdata_hub import hub

    with hub.errors(repo, token, "reading the dataset for stats", revision):  # network and HTTP errors: one line
        # The repo's info lists its files in one request that is not retried, so a Hub that
        # cannot be reached is one quick error (a listing of the tree retries for half a minute).
        info = hub.dataset_info(hub.api(token), repo, revision)
        shards = sorted(sibling.rfilename for sibling in info.siblings or [] if layout.is_shard(sibling.rfilename))
        sources = [(repo, revision, shard) for shard in shards]
        if include_archive:
            from vdata_hub.repo.archive import archived_shards

            sources += archived_shards(repo, revision, token)
        fs = HfFileSystem(token=token)
        for source_repo, source_revision, shard in sources:  # range requests: only the columns stats needs
            with fs.open(f"datasets/{source_repo}/{shard}", "rb", revision=source_revision) as handle:
                parquet = pq.ParquetFile(handle)
                columns = [c for c in COLUMNS if c in parquet.schema_arrow.names]
                yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=columns)


def _batches(dataset: str, revision: Optional[str], token: Optional[str], include_archive: bool = False) -> Iterator:
    path = Path(dataset)
    if path.exists():
        return _local_batches(path)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", dataset):
        return _hub_batches(dataset, revision, token, include_archive)
    raise VdataError(f"{dataset}: no such local dataset folder, and not a Hub repo id (namespace/name)")


def text_hashes_of(batch) -> np.ndarray:
    """The rows' `text_hash` column, computed from the texts where it is missing or 0."""
    from vdata_hub.generation.records import text_hashes

    if "text_hash" in batch.schema.names:
        given = np.asarray(batch.column("text_hash").fill_null(0), np.int64)
        if given.all():
            return given
    return np.asarray(text_hashes(batch.column("text").fill_null("")), np.int64)


def count_rows(batches) -> dict:
    """balance counts of all the rows of `batches`, duplicates (repeated text hashes) included."""
    total, hashes = balance.empty(), []
    for batch in batches:
        balance.merge(total, balance.count_batch(batch))
        hashes.append(text_hashes_of(batch))
    every = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
    total["duplicates"] = int(len(every) - len(np.unique(every)))
    return total


def stats(dataset: str = "vdata-out", revision: str | None = None, chart: str | None = None,
          threshold: float | None = None, token: str | None = None, include_archive: bool = False) -> DatasetStats:
    """Balance statistics of a local dataset folder or a Hub dataset repo (see the module docstring);
    `include_archive`: for a Hub repo, the rows it moved to its archive repo too."""
    counts = count_rows(_batches(dataset, revision, token, include_archive))
    result = stats_from_counts(counts, dataset=dataset, revision=revision, threshold=threshold)
    if chart:
        result.chart = write_chart(result, chart)
    return result


def stats_from_counts(counts: dict, dataset: str, revision: str | None = None,
                      threshold: float | None = None) -> DatasetStats:
    """The figures of a balance.count_batch / balance.merge result (the card's path: summed manifests)."""
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    rows = counts["rows"]
    mentions = {axis: {g: 0 for g in (entry.get("terms") or {})} for axis, entry in _axes().items()}
    for axis, found in counts["mentions"].items():
        mentions.setdefault(axis, {}).update({g: mentions.get(axis, {}).get(g, 0) + n for g, n in found.items()})
    pronouns = {key: counts["pronouns"].get(key, 0) for key in PRONOUNS}
    total_pronouns = sum(pronouns.values())
    flags = dict(counts["flags"])
    duplicates = counts.get("duplicates", 0)
    cells = Counter({(d, a, t): n for d, axes in counts["cells"].items() for a, tasks in axes.items()
                     for t, n in tasks.items()})
    result = DatasetStats(
        dataset=dataset, revision=revision, rows=rows, augmented_rows=counts["augmented"], threshold=threshold,
        rows_per_axis=dict(counts["rows_per_axis"]),
        rows_per_group={axis: dict(found) for axis, found in counts["rows_per_group"].items()},
        mentions=mentions, pronouns=pronouns,
        pronoun_ratios={k: round(v / total_pronouns, 4) if total_pronouns else 0.0 for k, v in pronouns.items()},
        coverage=_coverage(cells),
        length_chars=balance.percentiles(counts["chars"]), length_words=balance.percentiles(counts["words"]),
        flags=flags, refusal_rate=round(flags.get("refusal", 0) / rows, 4) if rows else 0.0,
        duplicates=duplicates, duplicate_rate=round(duplicates / rows, 4) if rows else 0.0,
    )
    result.imbalances = _imbalances(result)
    return result


def _coverage(cells: Counter) -> dict:
    domains = sorted({d for d, _, _ in cells})
    axes = sorted({a for _, a, _ in cells})
    tasks = sorted({t for _, _, t in cells})
    missing = [f"{d} × {a} × {t}" for d in domains for a in axes for t in tasks if (d, a, t) not in cells]
    nested: dict = {}
    for (d, a, t), n in sorted(cells.items()):
        nested.setdefault(d, {}).setdefault(a, {})[t] = n
    return {"domains": domains, "axes": axes, "tasks": tasks, "covered": len(cells),
            "possible": len(domains) * len(axes) * len(tasks), "missing": missing, "cells": nested}


def _imbalances(result: DatasetStats) -> list[dict]:
    found = []
    for axis, counts in result.mentions.items():
        found.append(_imbalance("mentions", axis, counts, result.threshold))
    for axis, counts in result.rows_per_group.items():
        declared = _axes().get(axis, {}).get("groups") or []
        found.append(_imbalance("rows per group", axis, {**{g: 0 for g in declared}, **counts}, result.threshold))
    found.append(_imbalance("rows per axis", "", result.rows_per_axis, result.threshold))
    he_she = {k: result.pronouns.get(k, 0) for k in ("he", "she")}
    found.append(_imbalance("pronouns he/she", "", he_she, result.threshold))
    return [item for item in found if item]


def _bar(value: int, largest: int, width: int = 20) -> str:
    return "█" * (round(width * value / largest) if largest else 0)


def format_stats(result: DatasetStats, as_json: bool = False) -> str:
    """A terminal report, or the JSON of every figure."""
    if as_json:
        return json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
    where = result.dataset + (f"@{result.revision}" if result.revision else "")
    lines = [f"Dataset {where}: {result.rows} rows ({result.augmented_rows} augmented)", ""]
    lines.append("Rows per axis: " + (", ".join(f"{a or '(none)'} {n}" for a, n in sorted(result.rows_per_axis.items()))
                                      or "none"))
    lines += ["", "Group mentions in texts"]
    silent = [axis for axis, counts in result.mentions.items() if not any(counts.values())]
    for axis, counts in result.mentions.items():
        if axis in silent:
            continue
        largest = max(counts.values(), default=0)
        lines.append(f"  {axis} ({sum(counts.values())})")
        width = max(len(g) for g in counts) if counts else 0
        for group, n in counts.items():
            lines.append(f"    {group:<{width}}  {n:>6}  {_bar(n, largest)}")
    if silent:
        lines.append(f"  no mentions at all: {', '.join(silent)}")
    total = sum(result.pronouns.values())
    lines += ["", "Pronouns: " + ", ".join(f"{k} {v} ({result.pronoun_ratios.get(k, 0):.0%})" for k, v in result.pronouns.items())
              + f" of {total}"]
    cov = result.coverage
    lines.append(f"Coverage: {cov.get('covered', 0)} of {cov.get('possible', 0)} domain × axis × task cells"
                 + (f"; missing {len(cov['missing'])}, e.g. {cov['missing'][0]}" if cov.get("missing") else ""))
    for name, summary in (("chars", result.length_chars), ("words", result.length_words)):
        if summary:
            lines.append(f"Length ({name}): " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    lines.append(f"Refusal rate: {result.refusal_rate:.1%}; quality flags: "
                 + (", ".join(f"{k} {v}" for k, v in sorted(result.flags.items())) or "none"))
    lines.append(f"Duplicates: {result.duplicates} ({result.duplicate_rate:.1%})")
    lines += ["", f"Imbalance (max/min > {result.threshold:g}):"]
    lines += [f"  ! {item['message']}" for item in result.imbalances] or ["  none"]
    if result.chart:
        lines += ["", f"Chart: {result.chart}"]
    return "\n".join(lines)


def stats_markdown(result: DatasetStats) -> str:
    """The figures as Markdown, for the dataset card."""
    out = [f"**{result.rows}** rows ({result.augmented_rows} counterfactual augmentations). "
           f"Refusal rate {result.refusal_rate:.1%}, duplicates {result.duplicates} ({result.duplicate_rate:.1%}), "
           f"coverage {result.coverage.get('covered', 0)} of {result.coverage.get('possible', 0)} "
           "domain × axis × task cells.", "",
           "| Axis | Rows | Group mentions in texts |", "|---|---:|---|"]
    for axis, counts in result.mentions.items():
        shown = ", ".join(f"{g} {n}" for g, n in counts.items())
        out.append(f"| {axis} | {result.rows_per_axis.get(axis, 0)} | {shown} |")
    out += ["", "| Pronouns | he | she | they |", "|---|---:|---:|---:|",
            "| count (share) | " + " | ".join(f"{result.pronouns.get(k, 0)} ({result.pronoun_ratios.get(k, 0):.0%})"
                                             for k in ("he", "she", "they")) + " |"]
    if result.length_words:
        out += ["", "Length in words: " + ", ".join(f"{k} {v}" for k, v in result.length_words.items()) + "."]
    out += ["", f"Imbalances (max/min > {result.threshold:g}): "
            + ("; ".join(item["message"] for item in result.imbalances) if result.imbalances else "none") + "."]
    return "\n".join(out)


def write_chart(result: DatasetStats, path: str) -> str:
    """A PNG: one bar chart of group mentions per axis, plus the pronoun counts."""
    try:
        import matplotlib
    except ImportError:
        raise VdataError("`chart` needs matplotlib: pip install matplotlib") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [(axis, counts) for axis, counts in result.mentions.items()] + [("pronouns", result.pronouns)]
    columns = 3
    rows = math.ceil(len(panels) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(5 * columns, 2.8 * rows), squeeze=False)
    for axes, (title, counts) in zip(grid.flat, panels):
        axes.barh(list(counts)[::-1], list(counts.values())[::-1], color="#4c72b0")
        axes.set_title(title.replace("_", " "))
        axes.set_xlim(0, max(1, max(counts.values(), default=0)) * 1.05)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.tick_params(labelsize=7)
    for axes in list(grid.flat)[len(panels):]:
        axes.axis("off")
    figure.suptitle(f"{result.dataset}: group mentions ({result.rows} rows)")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)
