"""Where every file of a vdata dataset repo lives: the one place that builds and parses its paths.

    data/<axis>/contributed/<contribution_id>.parquet       rows of one contribution and one bias axis,
                                                             as `contribute` adds them
    data/<axis>/compacted-<first>-<last>-<digest>.parquet    rows of many contributions of one axis,
                                                             rewritten by `compact` (first/last: dates
                                                             of the oldest and newest contribution)
    contributions/<id[:2]>/<contribution_id>.json           a contribution's manifest (counts, tokens,
                                                             cost, balance counts); never rewritten
    compactions/<date>-<digest>.json                         what one compaction replaced, and the summed
                                                             manifests of the contributions it compacted
    archive/<date>-<digest>.json                             what one `archive` moved to which repo
    index/<run name>.vdx                                     a run of the duplicate index (repo.index_format;
                                                             written by review --merge and `vdata reindex`)
    README.md                                                the dataset card (configs: default + one per axis)
    eval/history.jsonl, eval/history.png                     one row per `vdata eval report --push`, and its chart

Older repos also hold data/<axis>/<contribution_id>.parquet and contributions/<contribution_id>.json:
both are still read (and compacted). The scheme keeps every folder under the Hub's 10,000 entries:
contributed shards are compacted once an axis holds `compact.DEFAULT_THRESHOLD` of them, compacted
shards are a few hundred MB each, and manifests are spread over 256 folders by the first two hex
digits of their id. docs/repo-layout.md explains the scheme and the Hub limits behind it.

Card, contribute, review, compact, archive, stats and pull ask this module instead of parsing paths
their own way, so a change of scheme is made here once.
"""

from __future__ import annotations

import re
from collections import Counter

DATA_DIR = "data"
CONTRIBUTED_DIR = "contributed"
CONTRIBUTIONS_DIR = "contributions"
COMPACTIONS_DIR = "compactions"
ARCHIVE_DIR = "archive"
INDEX_DIR = "index"
CARD_FILE = "README.md"
EVAL_HISTORY = "eval/history.jsonl"
EVAL_HISTORY_CHART = "eval/history.png"
AXIS_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"  # a bias axis is a folder name on the Hub
CONTRIBUTION_ID_PATTERN = r"[0-9a-f]{16}"
DATE_PATTERN = r"[0-9]{8}"  # YYYYMMDD
DIGEST_PATTERN = r"[0-9a-f]{12}"

# The Hub's recommendations for one repo (docs/repo-layout.md cites them).
MAX_FOLDER_ENTRIES = 10_000
MAX_REPO_FILES = 100_000
MAX_COMMIT_FILES = 100

_SHARD = re.compile(rf"^{DATA_DIR}/({AXIS_PATTERN})/(?:{CONTRIBUTED_DIR}/)?([^/]+)\.parquet$")
_CONTRIBUTED_SHARD = re.compile(
    rf"^{DATA_DIR}/({AXIS_PATTERN})/(?:{CONTRIBUTED_DIR}/)?({CONTRIBUTION_ID_PATTERN})\.parquet$")
_COMPACTED_SHARD = re.compile(
    rf"^{DATA_DIR}/({AXIS_PATTERN})/compacted-({DATE_PATTERN})-({DATE_PATTERN})-({DIGEST_PATTERN})\.parquet$")
_MANIFEST = re.compile(rf"^{CONTRIBUTIONS_DIR}/(?:[0-9a-f]{{2}}/)?({CONTRIBUTION_ID_PATTERN})\.json$")
_COMPACTION_RECORD = re.compile(rf"^{COMPACTIONS_DIR}/({DATE_PATTERN})-({DIGEST_PATTERN})\.json$")
_ARCHIVE_RECORD = re.compile(rf"^{ARCHIVE_DIR}/({DATE_PATTERN})-({DIGEST_PATTERN})\.json$")
_INDEX_RUN = re.compile(rf"^{INDEX_DIR}/([0-9a-f]{{16}})\.vdx$")


def shard_path(axis: str, contribution_id: str) -> str:
    """The shard holding one contribution's rows of one axis."""
    return f"{DATA_DIR}/{axis}/{CONTRIBUTED_DIR}/{contribution_id}.parquet"


def compacted_shard_path(axis: str, first: str, last: str, digest: str) -> str:
    """A compacted shard; `first`/`last` are YYYYMMDD dates, `digest` 12 hex digits."""
    return f"{DATA_DIR}/{axis}/compacted-{first}-{last}-{digest}.parquet"


def config_pattern(axis: str = "*") -> str:
    """The `data_files` pattern of one axis's config (or, with "*", of the default config)."""
    return f"{DATA_DIR}/{axis}/**/*.parquet"


def manifest_path(contribution_id: str) -> str:
    return f"{CONTRIBUTIONS_DIR}/{contribution_id[:2]}/{contribution_id}.json"


def legacy_manifest_path(contribution_id: str) -> str:
    """Where repos made before the sharded manifest folders keep a manifest."""
    return f"{CONTRIBUTIONS_DIR}/{contribution_id}.json"


def compaction_record_path(date: str, digest: str) -> str:
    return f"{COMPACTIONS_DIR}/{date}-{digest}.json"


def archive_record_path(date: str, digest: str) -> str:
    return f"{ARCHIVE_DIR}/{date}-{digest}.json"


def index_run_path(name: str) -> str:
    """A run of the duplicate index, named by a hash of its bytes."""
    return f"{INDEX_DIR}/{name}.vdx"


def is_index_file(path: str) -> bool:
    """Anything under index/ (runs, and whatever a later format adds there)."""
    return path.startswith(f"{INDEX_DIR}/")


def index_run_name(path: str) -> str | None:
    match = _INDEX_RUN.match(path)
    return match.group(1) if match else None


def is_shard(path: str) -> bool:
    """Any Parquet data file of the dataset (a contributed shard or a compacted one)."""
    return _SHARD.match(path) is not None


def shard_axis(path: str) -> str | None:
    """The bias axis a data file belongs to; None for anything that is not a data file."""
    match = _SHARD.match(path)
    return match.group(1) if match else None


def contributed_shard(path: str) -> tuple[str, str] | None:
    """(axis, contribution id) of a shard as `contribute` writes it; None otherwise."""
    match = _CONTRIBUTED_SHARD.match(path)
    return (match.group(1), match.group(2)) if match else None


def compacted_shard(path: str) -> tuple[str, str, str, str] | None:
    """(axis, first date, last date, digest) of a compacted shard; None otherwise."""
    match = _COMPACTED_SHARD.match(path)
    return match.groups() if match else None


def manifest_id(path: str) -> str | None:
    """The contribution id of a manifest path (sharded or legacy); None for anything else."""
    match = _MANIFEST.match(path)
    return match.group(1) if match else None


def is_compaction_record(path: str) -> bool:
    return _COMPACTION_RECORD.match(path) is not None


def is_archive_record(path: str) -> bool:
    return _ARCHIVE_RECORD.match(path) is not None


def shards_by_axis(paths) -> dict[str, list[str]]:
    """{axis: sorted data file paths} of the paths that are data files."""
    axes: dict[str, list[str]] = {}
    for path in sorted(paths):
        axis = shard_axis(path)
        if axis is not None:
            axes.setdefault(axis, []).append(path)
    return axes


def folder_entries(paths) -> Counter:
    """{folder: entries directly inside it (files and sub-folders)} of a repo's file paths; the
    Hub recommends at most MAX_FOLDER_ENTRIES per folder."""
    entries: dict[str, set] = {}
    for path in paths:
        parts = path.split("/")
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth])
            entries.setdefault(folder, set()).add(parts[depth])
    return Counter({folder: len(names) for folder, names in entries.items()})
