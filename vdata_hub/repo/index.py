"""What is known about the rows already on main, for the duplicate checks of contribute and
review: the repo's duplicate index (runs under index/, format in repo.index_format), read with
range requests at one pinned commit.

Opening the index lists index/ and contributions/, checks that the runs cover every contribution
on main (else IndexStale: `vdata reindex` rebuilds it), and downloads each run's front (text
hashes and band filters, about 25 bytes a row; kept between runs, see front_cache_dir). Then

- `duplicates(hashes)` answers "is this text on main" locally;
- `near_duplicates(signatures, threshold)` finds, for each signature, a main row with an estimated
  similarity at or above the threshold: band filters locally, then for the few rows that hit at
  least `min_shared_bands` bands, range reads of the hit entries' row numbers and of the
  candidates' signatures (coalesced, a few in parallel).

`read_main_hashes` (every shard's text_hash column) is kept for checks that want the hashes of
the data itself, e.g. that a rewrite kept every row.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from vdata_hub import hub
from vdata_hub.errors import HubError, IndexStale
from vdata_hub.repo import dedup, index_format, layout

COALESCE_GAP = 4096  # range reads closer than this are fetched as one
READ_THREADS = 8


@dataclass
class IndexedRun:
    """One run of the index: its path, size, front, and how to fetch any byte range of it."""

    path: str
    size: int
    front: index_format.RunFront
    fetch: object  # fetch(start, end) -> bytes


@dataclass
class MainIndex:
    """The runs covering main at `revision`, with what reading them cost."""

    repo: str | None
    revision: str | None
    runs: list = field(default_factory=list)
    contributions: set = field(default_factory=set)  # covered contribution ids
    bytes_read: int = 0
    requests: int = 0
    bytes_total: int = 0  # size of the index files

    @property
    def rows(self) -> int:
        return sum(run.front.rows for run in self.runs)

    def duplicates(self, hashes: np.ndarray) -> np.ndarray:
        """Which text hashes (int64) are on main."""
        keys = np.asarray(hashes, np.int64).view(np.uint64)
        found = np.zeros(len(keys), bool)
        for run in self.runs:
            found |= dedup.contains(run.front.hashes, keys)
        return found

    def near_duplicates(self, signatures: np.ndarray, threshold: float) -> np.ndarray:
        """For each signature, the text hash (int64) of a main row whose estimated similarity
        reaches the threshold; 0 where there is none. Exact for thresholds where matching rows
        always share min_shared_bands bands (0.8: 4 of 16), whichever bands those are."""
        found = np.zeros(len(signatures), np.int64)
        if not len(signatures):
            return found
        keys = dedup.band_keys(signatures)
        min_bands = dedup.min_shared_bands(threshold)
        for run in self.runs:
            todo = np.flatnonzero(found == 0)
            if len(todo) and run.front.header["signed_rows"]:
                found[todo] = self._search(run, keys[todo], signatures[todo], threshold, min_bands)
        return found

    def _search(self, run: IndexedRun, keys: np.ndarray, signatures: np.ndarray, threshold: float,
                min_bands: int) -> np.ndarray:
        """Near duplicates in one run. A row whose keys hit fewer than min_bands band filters has
        none here. Otherwise a match shares min_bands of the H bands hit, so it is among the rows
        of any H - min_bands + 1 of them: the rows behind one hit band are read per round (one
        range read each, all rows at once), and their signatures compared; a row without a match
        then reads the other bands it needs in a second round. A near duplicate is usually found
        in the first round."""
        front = run.front
        spans = []  # per band: (first entry, end entry) of each query key in the band's filter
        for band in range(dedup.BANDS):
            entries, fingerprints = front.band_filter(band), front.fingerprints(keys[:, band])
            spans.append((np.searchsorted(entries, fingerprints, "left"), np.searchsorted(entries, fingerprints, "right")))
        hit = np.stack([end > first for first, end in spans], axis=1)
        found = np.zeros(len(keys), np.int64)
        bands = {q: np.flatnonzero(hit[q]).tolist() for q in np.flatnonzero(hit.sum(axis=1) >= min_bands).tolist()}
        rounds = {q: len(hit_bands) - min_bands + 1 for q, hit_bands in bands.items()}
        compared: dict = {}  # query -> main rows already compared
        while bands:
            # First one band per row (usually enough), then all the bands still needed at once.
            asked = [(q, hit_bands.pop(0)) for q, hit_bands in bands.items() for _ in range(
                1 if q not in compared else rounds[q])]
            data = self._read(run, [front.band_rows_range(band, int(spans[band][0][q]), int(spans[band][1][q]))
                                    for q, band in asked])
            pairs = sorted({(q, int(row)) for (q, _), rows in zip(asked, data) for row in np.frombuffer(rows, "<u4")
                            if int(row) not in compared.setdefault(q, set())})
            if pairs:
                query = np.array([q for q, _ in pairs])
                rows = np.array([row for _, row in pairs])
                scores = dedup.similarity(signatures[query], self._signatures(run, rows))
                for q, row, score in zip(query.tolist(), rows.tolist(), scores.tolist()):
                    compared[q].add(row)
                    if score >= threshold and not found[q]:
                        found[q] = front.hashes[row].astype(np.int64)
            for q, _ in asked:
                rounds[q] -= 1
                if q in bands and (found[q] or rounds[q] == 0):
                    del bands[q]
        return found

    def _signatures(self, run: IndexedRun, rows: np.ndarray) -> np.ndarray:
        data = self._read(run, [run.front.signature_range(int(row)) for row in rows])
        return np.frombuffer(b"".join(data), "<u2").reshape(-1, dedup.SIGNATURE_BINS).astype(np.uint16)

    def _read(self, run: IndexedRun, ranges: list) -> list:
        """The bytes of each (start, end) range, fetched as few coalesced range reads in parallel."""
        if not ranges:
            return []
        spans = []
        for start, end in sorted(set(ranges)):
            if spans and start - spans[-1][1] <= COALESCE_GAP:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        with ThreadPoolExecutor(min(READ_THREADS, len(spans))) as pool:
            fetched = list(pool.map(lambda span: run.fetch(span[0], span[1]), spans))
        self.requests += len(spans)
        self.bytes_read += sum(len(data) for data in fetched)
        starts = [span[0] for span in spans]
        result = []
        for start, end in ranges:
            k = int(np.searchsorted(starts, start, "right")) - 1
            result.append(fetched[k][start - starts[k]:end - starts[k]])
        return result


def local_index(runs: dict) -> MainIndex:
    """A MainIndex over run files held in memory ({path: bytes})."""
    index = MainIndex(repo=None, revision=None)
    for path, data in sorted(runs.items()):
        front = index_format.parse_front(data[:index_format.front_end(index_format.parse_header(data))])
        index.runs.append(IndexedRun(path=path, size=len(data), front=front,
                                     fetch=lambda start, end, data=data: data[start:end]))
        index.contributions.update(front.contributions)
        index.bytes_total += len(data)
    return index


def memory_index(hashes: np.ndarray, signatures: np.ndarray | None = None, contributions=()) -> MainIndex:
    """A MainIndex over rows given in memory (text hashes, and signatures when near duplicates
    of them are wanted)."""
    if hashes is None or not len(hashes):
        return MainIndex(repo=None, revision=None)
    data = index_format.build_run(np.asarray(hashes, np.int64), signatures, contributions)
    return local_index({index_format.run_name(data): data})


# --- the index on the Hub ------------------------------------------------------------------------

@dataclass
class RepoState:
    """What one listing of a commit says about the index and what it must cover."""

    runs: dict  # index run path -> size
    other_index_files: list
    contributions: set  # contribution ids with a manifest on main
    has_data: bool
    run_digests: dict = field(default_factory=dict)  # index run path -> sha256 of its bytes (LFS files)


def repo_state(hf_api, repo: str, revision: str, token: str | None = None) -> RepoState:
    """The index runs and the contributions at `revision` (listing index/ and contributions/ only)."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    def listing(folder: str) -> list:
        try:
            return [entry for entry in hf_api.list_repo_tree(repo, path_in_repo=folder, recursive=True,
                                                             repo_type="dataset", revision=revision)
                    if getattr(entry, "size", None) is not None]
        except RemoteEntryNotFoundError:
            return []

    with hub.errors(repo, token, "reading the duplicate index"):
        top = {entry.path for entry in hf_api.list_repo_tree(repo, repo_type="dataset", revision=revision)}
        index_files = listing(layout.INDEX_DIR) if layout.INDEX_DIR in top else []
        manifests = listing(layout.CONTRIBUTIONS_DIR) if layout.CONTRIBUTIONS_DIR in top else []
    runs = {entry.path: entry.size for entry in index_files if layout.index_run_name(entry.path)}
    digests = {entry.path: entry.lfs.sha256 for entry in index_files
               if entry.path in runs and getattr(entry, "lfs", None) is not None}
    return RepoState(runs=runs, other_index_files=sorted(e.path for e in index_files if e.path not in runs),
                     contributions={cid for cid in map(lambda e: layout.manifest_id(e.path), manifests) if cid},
                     has_data=layout.DATA_DIR in top, run_digests=digests)


def stale_reason(state: RepoState, covered: set) -> str | None:
    """Why the index at this state cannot answer for main, or None when it can. It may cover more
    than main: the texts of contributions moved to an archive (or removed) stay known."""
    missing = state.contributions - covered
    if not state.runs and (state.contributions or state.has_data):
        return "has no duplicate index"
    if missing:
        return f"has a stale duplicate index ({len(missing)} contribution(s) on main are not in it)"
    return None


def stale_message(repo: str, reason: str) -> str:
    return (f"{repo} {reason}: a maintainer must run `vdata reindex --repo {repo}` "
            "(a repo made by hand, or a merge done on the website, leaves it so)")


def fetcher(repo: str, revision: str, path: str, token: str | None):
    """fetch(start, end) -> bytes of `path` at `revision` by an HTTP range request (retried)."""
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    url = hf_hub_url(repo, path, repo_type="dataset", revision=revision, endpoint=constants.ENDPOINT)
    headers = build_hf_headers(token=token)

    def fetch(start: int, end: int) -> bytes:
        if end <= start:
            return b""
        response = http_backoff("GET", url, headers={**headers, "range": f"bytes={start}-{end - 1}"},
                                timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
        hf_raise_for_status(response)
        return response.content
    return fetch


def open_index(repo: str, revision: str, token: str | None = None, hf_api=None, state: RepoState | None = None,
               reuse: MainIndex | None = None, check: bool = True) -> MainIndex:
    """The index of `repo` at `revision` (a commit id, so every read sees the same files).
    Raises IndexStale when it does not cover exactly the contributions on main (with `check`).
    Runs already read by `reuse` (runs are named by their bytes) are not read again."""
    hf_api = hf_api or hub.api(token)
    state = state or repo_state(hf_api, repo, revision, token)
    known = {run.path: run for run in (reuse.runs if reuse else [])}
    index = MainIndex(repo=repo, revision=revision)
    paths = sorted(state.runs)

    def read_front(path: str) -> tuple[IndexedRun, int, int]:
        """The run, and the requests and bytes its front cost."""
        fetch = fetcher(repo, revision, path, token)
        if path in known:
            return IndexedRun(path=path, size=known[path].size, front=known[path].front, fetch=fetch), 0, 0
        size = state.runs[path]
        cached = _cached_front(state.run_digests.get(path))
        if cached is not None:
            return IndexedRun(path=path, size=size, front=index_format.parse_front(cached), fetch=fetch), 0, 0
        prefix = fetch(0, index_format.probe_bytes(size))
        end = index_format.front_end(index_format.parse_header(prefix))
        front = prefix if end <= len(prefix) else prefix + fetch(len(prefix), end)
        _cache_front(state.run_digests.get(path), front[:end])
        run = IndexedRun(path=path, size=size, front=index_format.parse_front(front[:end]), fetch=fetch)
        return run, 1 + (end > len(prefix)), len(front)

    with hub.errors(repo, token, "reading the duplicate index"):
        try:
            with ThreadPoolExecutor(max(1, min(READ_THREADS, len(paths)))) as pool:
                read = list(pool.map(read_front, paths))
        except index_format.IndexFormatError as exc:
            raise IndexStale(stale_message(repo, f"has a duplicate index this version cannot read ({exc})")) from None
    index.runs = [run for run, _, _ in read]
    index.requests += sum(requests for _, requests, _ in read)
    index.bytes_read += sum(size for _, _, size in read)
    for run in index.runs:
        index.contributions.update(run.front.contributions)
        index.bytes_total += run.size
    if check and (reason := stale_reason(state, index.contributions)):
        raise IndexStale(stale_message(repo, reason))
    return index


def front_cache_dir():
    """Where fronts of index runs are kept between runs: $VDATA_INDEX_CACHE ("off": nowhere),
    else vdata-hub/index-fronts under huggingface_hub's HF_HOME. A run never changes (a new run
    is a new file), so a front read once is kept, named by the sha256 of its run's bytes."""
    import os
    from pathlib import Path

    from huggingface_hub import constants

    setting = os.environ.get("VDATA_INDEX_CACHE")
    if setting == "off":
        return None
    return Path(setting) if setting else Path(constants.HF_HOME) / "vdata-hub" / "index-fronts"


def _cached_front(digest: str | None) -> bytes | None:
    folder = front_cache_dir()
    if digest is None or folder is None:
        return None
    try:
        return (folder / f"{digest}.front").read_bytes()
    except OSError:
        return None


def _cache_front(digest: str | None, front: bytes) -> None:
    import os

    folder = front_cache_dir()
    if digest is None or folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{digest}.{os.getpid()}.tmp"
        tmp.write_bytes(front)
        os.replace(tmp, folder / f"{digest}.front")
    except OSError:
        pass  # a cache that cannot be written is only slower


# --- the text hashes of the data itself ---------------------------------------------------------

@dataclass
class MainHashes:
    """Text hashes of every row on main and what reading them cost."""

    hashes: np.ndarray
    files: int
    bytes_read: int
    bytes_total: int


class _CountingFile:
    """A file-like wrapper that counts the bytes actually read (the fsspec file does no read-ahead)."""

    def __init__(self, f):
        self.f, self.bytes_read = f, 0

    def read(self, size=-1):
        data = self.f.read(size)
        self.bytes_read += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.f, name)


def read_main_hashes(repo: str, token: str | None = None, revision: str = "main",
                     hf_api=None) -> MainHashes:
    """The `text_hash` column of every shard under data/ at `revision`, reading only that column
    (plus each file's footer) with exact HTTP range requests, never the texts."""
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem
    from huggingface_hub.errors import RemoteEntryNotFoundError

    hf_api = hf_api or hub.api(token)
    with hub.errors(repo, token, "reading main"):
        try:
            entries = [e for e in hf_api.list_repo_tree(repo, path_in_repo=layout.DATA_DIR, recursive=True,
                                                         repo_type="dataset", revision=revision)
                       if getattr(e, "size", None) is not None and layout.is_shard(e.path)]
        except RemoteEntryNotFoundError:
            entries = []
        fs = HfFileSystem(token=token, skip_instance_cache=True)
        parts, read, total = [], 0, 0
        for entry in entries:
            total += entry.size
            with fs.open(f"datasets/{repo}@{revision}/{entry.path}", "rb", cache_type="none") as raw:
                f = _CountingFile(raw)
                parquet = pq.ParquetFile(f, pre_buffer=False)
                if "text_hash" not in parquet.schema_arrow.names:
                    raise HubError(f"{entry.path} on {repo} has no text_hash column; it was not written by "
                                   "vdata contribute (ask a maintainer to re-shard it)")
                column = parquet.read(columns=["text_hash"]).column(0)
                parts.append(np.asarray(column.fill_null(0), np.int64))
                read += f.bytes_read
    hashes = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return MainHashes(hashes=hashes, files=len(entries), bytes_read=read, bytes_total=total)
