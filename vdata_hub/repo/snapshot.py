"""One commit of a vdata repo as a listing: every file's path, size and content id, pinned to the
commit so that everything read afterwards (manifests, records, shards) comes from the same state.

Card, compact and archive start from a Snapshot; the small JSON files they need (manifests,
compaction and archive records) are fetched in parallel by `read_json`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from vdata_hub import hub
from vdata_hub.errors import HubError
from vdata_hub.repo import layout

JSON_READ_THREADS = 8


@dataclass(frozen=True)
class RepoFile:
    size: int
    oid: str  # sha256 of an LFS file, git blob id otherwise: equal oids, equal contents


@dataclass
class Snapshot:
    repo: str
    commit: str
    files: dict[str, RepoFile] = field(default_factory=dict)

    def shards(self) -> list[str]:
        return sorted(path for path in self.files if layout.is_shard(path))

    def shards_by_axis(self) -> dict[str, list[str]]:
        return layout.shards_by_axis(self.files)

    def manifests(self) -> dict[str, str]:
        """{contribution id: manifest path}; a sharded path wins over a legacy one."""
        found: dict[str, str] = {}
        for path in sorted(self.files, key=lambda p: p.count("/")):
            cid = layout.manifest_id(path)
            if cid is not None:
                found[cid] = path
        return found

    def compaction_records(self) -> list[str]:
        return sorted(path for path in self.files if layout.is_compaction_record(path))

    def archive_records(self) -> list[str]:
        return sorted(path for path in self.files if layout.is_archive_record(path))

    def size(self, paths=None) -> int:
        return sum(self.files[path].size for path in (self.files if paths is None else paths))

    def url(self, path: str) -> str:
        return f"hf://datasets/{self.repo}@{self.commit}/{path}"


def snapshot(hf_api, repo: str, revision: str = "main", token: str | None = None) -> Snapshot:
    """The files of `repo` at `revision`, pinned to the commit the revision points at now."""
    with hub.errors(repo, token, "listing the repo", revision):
        # One request, not retried and bounded in time, first: a Hub that cannot be reached is one
        # quick error (the tree listing below retries for half a minute).
        commit = hub.dataset_info(hf_api, repo, revision).sha
        files = {}
        for entry in hf_api.list_repo_tree(repo, recursive=True, repo_type="dataset", revision=commit):
            if not hasattr(entry, "blob_id"):
                continue  # a folder
            lfs = getattr(entry, "lfs", None)
            files[entry.path] = RepoFile(size=entry.size, oid=lfs.sha256 if lfs else entry.blob_id)
    return Snapshot(repo=repo, commit=commit, files=files)


def fetch_bytes(hf_api, repo: str, commit: str, path: str) -> bytes:
    """A file of a commit, in one GET (no HEAD first, no cache: files addressed by commit never
    change, and the small files read here are read once)."""
    from huggingface_hub import constants, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    url = hf_hub_url(repo, path, repo_type="dataset", revision=commit, endpoint=constants.ENDPOINT)
    response = http_backoff("GET", url, headers=build_hf_headers(token=hf_api.token),
                            timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT)
    hf_raise_for_status(response)
    return response.content


def read_json(hf_api, snap: Snapshot, paths, token: str | None = None) -> dict[str, dict]:
    """{path: parsed JSON} of small files of the snapshot, fetched in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    def one(path: str):
        content = fetch_bytes(hf_api, snap.repo, snap.commit, path)
        try:
            return path, json.loads(content.decode("utf-8"))
        except ValueError:
            raise HubError(f"{path} on {snap.repo} is not valid JSON; fix or remove it") from None

    paths = list(paths)
    if not paths:
        return {}
    with hub.errors(snap.repo, token, "reading manifests and records"):
        with ThreadPoolExecutor(max_workers=min(JSON_READ_THREADS, len(paths))) as pool:
            return dict(pool.map(one, paths))


def json_bytes(document: dict) -> bytes:
    """How manifests and records are written: one top-level key a line, each value compact (the
    card reads thousands of them; indenting their nested counts would double their size)."""
    lines = [f"{json.dumps(key)}: {json.dumps(document[key], sort_keys=True, separators=(',', ':'))}"
             for key in sorted(document)]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def read_text(hf_api, snap: Snapshot, path: str, token: str | None = None) -> str | None:
    """A text file of the snapshot; None when it has no such file."""
    if path not in snap.files:
        return None
    with hub.errors(snap.repo, token, f"reading {path}"):
        return fetch_bytes(hf_api, snap.repo, snap.commit, path).decode("utf-8")
