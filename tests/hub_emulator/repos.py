"""Hub semantics over the store: repos, revisions, commits, trees, upload modes, merges and limits.

A commit points at a root tree (see ``trees.py``: one object per directory, file entries
``[sha256, size, git_oid, is_lfs]``); refs are full git ref names (``refs/heads/main``,
``refs/tags/v1``, ``refs/pr/3``) pointing at commit oids. Each commit also records its depth in
first-parent history, its file count and size, and (table ``changes``) the paths it changed, so
that ``lastCommit`` and the repo's storage are lookups instead of walks over the whole history.
"""

import base64
import fnmatch
import hashlib
import posixpath
import re
import time
import uuid
from dataclasses import dataclass

import yaml

from . import trees
from .errors import HubError, entry_not_found, revision_not_found

DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.lz4 *.mds *.mlmodel *.model "
        "*.msgpack *.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors "
        "saved_model/**/* *.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents* "
        "*.mp3 *.ogg *.wav *.jpg *.jpeg *.png *.webp *.gguf"
    ).split()
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
REF_NAME_RE = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[^\s~^:?*\[\\\x00-\x1f\x7f]+(?<![/.])$")


def now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class Repo:
    id: int
    type: str
    namespace: str
    name: str
    private: bool
    gated: object
    created_at: str

    @property
    def repo_id(self):
        return f"{self.namespace}/{self.name}"

    def web_url(self, origin):
        prefix = "" if self.type == "model" else f"{self.type}s/"
        return f"{origin}/{prefix}{self.repo_id}"


def _repo(row):
    return Repo(row["id"], row["type"], row["namespace"], row["name"], bool(row["private"]), row["gated"] or False,
                row["created_at"])


def find_repo(store, repo_type, namespace, name):
    row = store.one("SELECT * FROM repos WHERE type = ? AND lower(namespace) = lower(?) AND lower(name) = lower(?)",
                    repo_type, namespace, name)
    return _repo(row) if row else None


def all_repos(store, repo_type):
    return [_repo(row) for row in store.query("SELECT * FROM repos WHERE type = ? ORDER BY id DESC", repo_type)]


def find_alias(store, repo_type, ids):
    """The repo an old id (a canonical one like `gpt2`, or a moved repo's) now redirects to, or None."""
    namespace, name = ids if len(ids) == 2 else ("", ids[0])
    row = store.one("SELECT r.* FROM aliases a JOIN repos r ON r.id = a.repo_id WHERE a.type = ? AND "
                    "lower(a.namespace) = lower(?) AND lower(a.name) = lower(?)", repo_type, namespace, name)
    return _repo(row) if row else None


def add_alias(store, repo, ids):
    namespace, name = ids if len(ids) == 2 else ("", ids[0])
    store.execute("INSERT INTO aliases (type, namespace, name, repo_id) VALUES (?, ?, ?, ?)", repo.type, namespace,
                  name, repo.id)


def drop_alias(store, repo_type, ids):
    store.execute("DELETE FROM aliases WHERE type = ? AND lower(namespace) = lower(?) AND lower(name) = lower(?)",
                  repo_type, *ids)


def move_repo(store, repo, new_ids):
    """Give ``repo`` the id ``new_ids``; its old id becomes an alias (and the new one stops being one)."""
    drop_alias(store, repo.type, new_ids)
    store.execute("UPDATE repos SET namespace = ?, name = ? WHERE id = ?", *new_ids, repo.id)
    add_alias(store, repo, [repo.namespace, repo.name])


def create_repo(store, repo_type, namespace, name, private, author):
    """A new repo whose first commit, by its creator, holds the default .gitattributes."""
    with store.transaction():
        drop_alias(store, repo_type, [namespace, name])  # a moved repo's old name, taken again
        store.execute("INSERT INTO repos (type, namespace, name, private, created_at) VALUES (?, ?, ?, ?, ?)",
                      repo_type, namespace, name, int(private), now())
        repo = find_repo(store, repo_type, namespace, name)
        builder = trees.Builder(store.objects, None)
        builder.add(".gitattributes", inline_entry(store, DEFAULT_GITATTRIBUTES.encode()))
        write_commit(store, repo, "refs/heads/main", None, builder.write(), "initial commit", "", author)
    return repo


def delete_repo(store, repo):
    with store.transaction():
        for table in ("commits", "refs", "discussions", "changes", "repo_blobs", "aliases"):
            store.execute(f"DELETE FROM {table} WHERE repo_id = ?", repo.id)
        store.execute("DELETE FROM repos WHERE id = ?", repo.id)


# -- refs and revisions ------------------------------------------------------------------------
def get_ref(store, repo, ref):
    row = store.one("SELECT oid FROM refs WHERE repo_id = ? AND name = ?", repo.id, ref)
    return row["oid"] if row else None


def set_ref(store, repo, ref, oid):
    store.execute("INSERT OR REPLACE INTO refs (repo_id, name, oid) VALUES (?, ?, ?)", repo.id, ref, oid)


def delete_ref(store, repo, ref):
    store.execute("DELETE FROM refs WHERE repo_id = ? AND name = ?", repo.id, ref)


def list_refs(store, repo):
    return {row["name"]: row["oid"] for row in store.query("SELECT name, oid FROM refs WHERE repo_id = ?", repo.id)}


def full_ref(store, repo, rev):
    """The ref name a revision designates (branch before tag), or None for a commit id or unknown name."""
    if rev.startswith("refs/"):
        return rev if get_ref(store, repo, rev) else None
    for ref in (f"refs/heads/{rev}", f"refs/tags/{rev}"):
        if get_ref(store, repo, ref):
            return ref
    return None


def resolve_revision(store, repo, rev):
    """Commit oid for a branch, tag, ``refs/...`` name or (prefix of a) commit id; RevisionNotFound otherwise."""
    rev = rev or "main"
    ref = full_ref(store, repo, rev)
    if ref:
        return get_ref(store, repo, ref)
    if re.fullmatch(r"[0-9a-f]{7,40}", rev):
        rows = store.query("SELECT oid FROM commits WHERE repo_id = ? AND oid >= ? AND oid < ? LIMIT 2",
                           repo.id, rev, rev + "g")
        if len(rows) == 1:
            return rows[0]["oid"]
    raise revision_not_found(rev)


def commit_row(store, oid):
    return store.one("SELECT * FROM commits WHERE oid = ?", oid)


def root_of(store, oid):
    return commit_row(store, oid)["tree"]


def history(store, oid, limit):
    """Up to ``limit`` commits from ``oid`` down its first parents, newest first."""
    rows = []
    while oid and len(rows) < limit:
        row = commit_row(store, oid)
        rows.append(row)
        oid = row["parent"]
    return rows


def write_commit(store, repo, ref, parent, root, title, message, author, limits=None):
    """Store a commit of tree ``root`` on top of ``parent`` and move ``ref`` to it; returns the new oid.

    The Hub's limits on folders (and the optional ones on the repo) are checked here, so a commit,
    a pull request and a merge meet them alike."""
    with store.transaction():
        parent_row = commit_row(store, parent) if parent else None
        changes = trees.diff(store.objects, parent_row["tree"] if parent_row else None, root)
        added = sum(old is None for old, new in changes.values())
        removed = sum(new is None for old, new in changes.values())
        files = (parent_row["files"] if parent_row else 0) + added - removed
        size = (parent_row["size"] if parent_row else 0) + sum(
            (new[1] if new else 0) - (old[1] if old else 0) for old, new in changes.values())
        check_limits(store, ref, root, changes, files, limits or {})
        depth = parent_row["depth"] + 1 if parent_row else 0
        date = now()
        oid = hashlib.sha1(f"{repo.id} {parent} {root} {title} {date} {uuid.uuid4().hex}".encode()).hexdigest()
        store.execute("INSERT INTO commits (oid, repo_id, parent, depth, title, message, author, date, tree, files, "
                      "size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", oid, repo.id, parent, depth, title, message,
                      author, date, root, files, size)
        touched = {path for changed in changes for path in (changed, *ancestors(changed))}
        store.db.executemany("INSERT INTO changes (repo_id, path, depth, oid) VALUES (?, ?, ?, ?)",
                             [(repo.id, path, depth, oid) for path in touched])
        store.db.executemany(
            "INSERT OR IGNORE INTO repo_blobs (repo_id, sha256, size, is_lfs, path, ref, pushed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(repo.id, new[0], new[1], int(new[3]), path, ref, date) for path, (_, new) in changes.items() if new])
        set_ref(store, repo, ref, oid)
    store.links[oid] = (parent, depth)
    return oid


def ancestors(path):
    """The folders holding ``path``: ``a/b/c`` -> ``a/b``, ``a``."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


def check_limits(store, ref, root, changes, files, limits):
    """400 as the Hub answers a push with a folder over its entry limit; the optional limits likewise."""
    folder_limit = limits.get("max_entries_per_folder")
    if folder_limit:
        grown = {folder for path, (old, _) in changes.items() if old is None for folder in (*ancestors(path), "")}
        offending = [f for f in sorted(grown) if trees.dir_size(store.objects, trees.lookup(store.objects, root, f))
                     > folder_limit]
        if offending:
            raise HubError(400, "BadRequest", "Your push was rejected because it contains too many files per "
                           f"directory. Each directory in your git repo can only contain up to {folder_limit} files. "
                           f"Offending reference: {ref} Offending directories: "
                           + ", ".join(f"/{f}/" if f else "/" for f in offending))
    repo_limit = limits.get("max_files_per_repo")
    if repo_limit and files > repo_limit:
        raise HubError(400, "BadRequest", f"This commit would leave {files} files in the repo, over the emulator's "
                       f"limit of {repo_limit} (max_files_per_repo; the Hub recommends fewer than 100k files per repo)")


def storage_used(store, repo):
    """Bytes of every distinct file ever committed to the repo, on any ref: what history and pull
    request refs keep stored (the Hub's ``usedStorage``)."""
    return store.one("SELECT coalesce(sum(size), 0) AS n FROM repo_blobs WHERE repo_id = ?", repo.id)["n"]


# -- tree entries ------------------------------------------------------------------------------
def lfs_pointer(sha256, size):
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def inline_entry(store, data):
    sha256, git_oid = store.put_bytes(data)
    return [sha256, len(data), git_oid, False]


def lfs_entry(sha256, size):
    pointer = lfs_pointer(sha256, size)
    git_oid = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
    return [sha256, size, git_oid, True]


def file_json(path, entry, last_commit=None):
    sha256, size, git_oid, is_lfs = entry
    item = {"type": "file", "oid": git_oid, "size": size, "path": path}
    if is_lfs:
        item["lfs"] = {"oid": sha256, "size": size, "pointerSize": len(lfs_pointer(sha256, size))}
    if last_commit:
        item["lastCommit"] = last_commit
    return item


def dir_json(path, oid, last_commit=None):
    item = {"type": "directory", "oid": oid, "size": 0, "path": path}
    if last_commit:
        item["lastCommit"] = last_commit
    return item


def lookup(store, root, path):
    return trees.lookup(store.objects, root, path.strip("/"))


def list_tree(store, root, path, recursive):
    """(kind, path, entry) under ``path``, directories first; EntryNotFound when it is no folder."""
    path = path.strip("/")
    oid = trees.lookup(store.objects, root, path)
    if not trees.is_dir(oid):
        raise entry_not_found(path)
    return trees.listing(store.objects, oid, path, recursive)


def entries_json(store, repo, head_oid, items, expand):
    """Tree/paths-info JSON for (kind, path, entry) triples; with ``expand`` each gets its last commit."""
    last = last_commits(store, repo, head_oid, [p for _, p, _ in items]) if expand else {}
    return [file_json(p, e, last.get(p)) if kind == "file" else dir_json(p, e, last.get(p)) for kind, p, e in items]


def last_commits(store, repo, head_oid, paths):
    """For each path, the newest commit in ``head_oid``'s first-parent history that changed it (or,
    for a folder, anything under it): the candidates come from ``changes``, newest first, and the first
    one on the history wins. The history is walked (in memory) only as far down as the answers lie."""
    head_depth = link(store, head_oid)[1]
    chain, lowest = {head_depth: head_oid}, (head_oid, head_depth)

    def on_history(depth, oid):
        nonlocal lowest
        while lowest[1] > depth:
            parent = link(store, lowest[0])[0]
            if parent is None:
                break
            lowest = (parent, link(store, parent)[1])
            chain[lowest[1]] = parent
        return chain.get(depth) == oid

    found = {}
    for path in paths:
        for candidate in store.query("SELECT depth, oid FROM changes WHERE repo_id = ? AND path = ? AND depth <= ? "
                                     "ORDER BY depth DESC", repo.id, path, head_depth):
            if on_history(candidate["depth"], candidate["oid"]):
                row = commit_row(store, candidate["oid"])
                found[path] = {"id": row["oid"], "title": row["title"], "date": row["date"]}
                break
    return found


def link(store, oid):
    """(parent, depth) of a commit, kept in memory: walking thousands of commits costs microseconds each."""
    known = store.links.get(oid)
    if known is None:
        row = store.one("SELECT parent, depth FROM commits WHERE oid = ?", oid)
        known = store.links[oid] = (row["parent"], row["depth"])
    return known


# -- commits -----------------------------------------------------------------------------------
def clean_path(path):
    """Repo-relative path; a path starting with '..' is refused like the Hub does (422)."""
    if path.startswith(".."):
        raise HubError(422, "InvalidPath", f"Invalid path in repo: {path}")
    path = path.lstrip("/")
    while path.startswith("./"):
        path = path[2:]
    if not path or path == ".":
        raise HubError(422, "InvalidPath", f"Invalid path in repo: {path!r}")
    return path


def apply_operations(store, root, operations, max_operations=None):
    """(new root, operation count) after NDJSON operations (file, lfsFile, deletedFile, deletedFolder).

    ``deletedFile`` of a folder removes the folder (as on the Hub); a path ending in ``/`` or a
    ``deletedFolder`` only matches a folder."""
    builder, count = trees.Builder(store.objects, root), 0
    for op in operations:
        count += 1
        if max_operations and count > max_operations:
            raise HubError(400, "BadRequest", f"This commit has more than {max_operations} operations, the "
                           "emulator's max_files_per_commit (the Hub recommends at most 100 files per commit)")
        key, value = op.get("key"), op.get("value") or {}
        path = clean_path(str(value.get("path", "")))
        try:
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, "BadRequest", f"Unsupported encoding for {path}")
                builder.add(path, inline_entry(store, base64.b64decode(value.get("content", ""))))
            elif key == "lfsFile":
                builder.add(path, stored_lfs_entry(store, path, value))
            elif key in ("deletedFile", "deletedFolder"):
                folder_only = key == "deletedFolder" or path.endswith("/")
                if not builder.delete(path.rstrip("/"), folder_only):
                    raise entry_not_found(path, error=f"A file with this name doesn't exist: {path}")
            else:
                raise HubError(400, "BadRequest", f"Unknown commit operation key: {key!r}")
        except ValueError as err:  # a file where a folder is needed, or the reverse
            raise HubError(400, "BadRequest", str(err)) from None
    return builder.write(), count


def stored_lfs_entry(store, path, value):
    oid = value.get("oid", "")
    if not store.has_blob(oid):
        raise HubError(422, "LfsObjectNotFound", f"LFS object {oid} for {path} was never uploaded")
    size = store.blob_path(oid).stat().st_size
    if value.get("size") is not None and int(value["size"]) != size:
        raise HubError(422, "LfsSizeMismatch", f"LFS object {oid} has size {size}, not {value['size']}")
    return lfs_entry(oid, size)


# -- upload modes ------------------------------------------------------------------------------
def _pattern_matches(pattern, path):
    if "/" not in pattern.strip("/"):
        return fnmatch.fnmatch(posixpath.basename(path), pattern.strip("/"))
    return fnmatch.fnmatch(path, pattern.lstrip("/").replace("**/", "*"))


def lfs_patterns(gitattributes):
    return [line.split()[0] for line in gitattributes.splitlines()
            if line.strip() and not line.startswith("#") and "filter=lfs" in line.split()[1:]]


def ignore_patterns(gitignore):
    return [line.strip() for line in gitignore.splitlines() if line.strip() and not line.startswith("#")]


def upload_mode(path, size, sample, patterns):
    """'lfs' for LFS-tracked names, files of 10 MB or more and binary samples; 'regular' otherwise."""
    if size == 0:
        return "regular"
    if size >= LFS_SIZE_THRESHOLD or b"\0" in sample or any(_pattern_matches(p, path) for p in patterns):
        return "lfs"
    return "regular"


def is_ignored(path, patterns):
    return any(_pattern_matches(p, path) or path.startswith(p.strip("/") + "/") for p in patterns)


def text_file(store, root, path):
    entry = trees.lookup(store.objects, root, path)
    if entry is None or trees.is_dir(entry):
        return ""
    return store.read_blob(entry[0]).decode("utf-8", "replace")


# -- README metadata ---------------------------------------------------------------------------
def front_matter(text):
    """The YAML text between the leading '---' lines of a README, or None when there is none."""
    match = re.match(r"^---\s*\n(.*?\n)?---\s*(\n|$)", text, re.S)
    return None if match is None else (match.group(1) or "")


def card_data(store, root):
    raw = front_matter(text_file(store, root, "README.md"))
    if not raw:
        return None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


# -- merges ------------------------------------------------------------------------------------
def changed_paths(store, base_root, head_root):
    return trees.diff(store.objects, base_root, head_root)


def merge_trees(store, base_root, ours_root, theirs_root, save=True):
    """Three-way merge of trees: (merged root, conflicting paths)."""
    return trees.merge(store.objects, base_root, ours_root, theirs_root, save=save)
