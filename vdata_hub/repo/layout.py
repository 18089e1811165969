"""Where every file of a vdata dataset repo lives: the one place that builds and parses its paths.

    data/<bias_axis>/<contribution_id>.parquet   rows of one bias axis (records.ARROW_SCHEMA)
    contributions/<contribution_id>.json         a contribution's manifest (counts, tokens, cost)
    README.md                                    the dataset card (configs: default + one per axis)

Card, contribute, review, stats, pull and the Hub helpers ask this module instead of parsing
paths their own way, so a change of scheme (compaction, an index, an archive) is made here once.
"""

from __future__ import annotations

import re

DATA_DIR = "data"
CONTRIBUTIONS_DIR = "contributions"
CARD_FILE = "README.md"
AXIS_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"  # a bias axis is a folder name on the Hub
CONTRIBUTION_ID_PATTERN = r"[0-9a-f]{16}"

_SHARD = re.compile(rf"^{DATA_DIR}/({AXIS_PATTERN})/([^/]+)\.parquet$")
_CONTRIBUTED_SHARD = re.compile(rf"^{DATA_DIR}/({AXIS_PATTERN})/({CONTRIBUTION_ID_PATTERN})\.parquet$")
_MANIFEST = re.compile(rf"^{CONTRIBUTIONS_DIR}/({CONTRIBUTION_ID_PATTERN})\.json$")


def shard_path(axis: str, contribution_id: str) -> str:
    """The shard holding one contribution's rows of one axis."""
    return f"{DATA_DIR}/{axis}/{contribution_id}.parquet"


def manifest_path(contribution_id: str) -> str:
    return f"{CONTRIBUTIONS_DIR}/{contribution_id}.json"


def is_shard(path: str) -> bool:
    """Any Parquet data file of the dataset (a contributed shard or a later rewrite of them)."""
    return _SHARD.match(path) is not None


def shard_axis(path: str) -> str | None:
    """The bias axis a data file belongs to; None for anything that is not a data file."""
    match = _SHARD.match(path)
    return match.group(1) if match else None


def contributed_shard(path: str) -> tuple[str, str] | None:
    """(axis, contribution id) of a shard as `contribute` writes it; None otherwise."""
    match = _CONTRIBUTED_SHARD.match(path)
    return (match.group(1), match.group(2)) if match else None


def manifest_id(path: str) -> str | None:
    """The contribution id of a manifest path; None for anything else."""
    match = _MANIFEST.match(path)
    return match.group(1) if match else None


def shards_by_axis(paths) -> dict[str, list[str]]:
    """{axis: sorted data file paths} of the paths that are data files."""
    axes: dict[str, list[str]] = {}
    for path in sorted(paths):
        axis = shard_axis(path)
        if axis is not None:
            axes.setdefault(axis, []).append(path)
    return axes
