"""Hub semantics over the store: repos, revisions, commits, trees, upload modes and merges.

A commit holds a full snapshot ``{path: [sha256, size, git_oid, is_lfs]}``; refs are full git ref
names (``refs/heads/main``, ``refs/tags/v1``, ``refs/pr/3``) pointing at commit oids.
"""

import base64
import fnmatch
import hashlib
import json
import posixpath
import re
import time
import uuid
from dataclasses import dataclass

import yaml

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


def create_repo(store, repo_type, namespace, name, private, author):
    """A new repo whose first commit, by its creator, holds the default .gitattributes."""
    with store.lock:
        store.execute("INSERT INTO repos (type, namespace, name, private, created_at) VALUES (?, ?, ?, ?, ?)",
                      repo_type, namespace, name, int(private), now())
        repo = find_repo(store, repo_type, namespace, name)
        tree = {".gitattributes": inline_entry(store, DEFAULT_GITATTRIBUTES.encode())}
        write_commit(store, repo, "refs/heads/main", None, tree, "initial commit", "", author)
    return repo


def delete_repo(store, repo):
    with store.lock:
        for table in ("commits", "refs", "discussions"):
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
        rows = store.query("SELECT oid FROM commits WHERE repo_id = ? AND oid LIKE ?", repo.id, rev + "%")
        if len(rows) == 1:
            return rows[0]["oid"]
    raise revision_not_found(rev)


def commit_row(store, oid):
    return store.one("SELECT * FROM commits WHERE oid = ?", oid)


def history(store, oid):
    """Commits reachable from ``oid`` by first parent, newest first."""
    rows = []
    while oid:
        row = commit_row(store, oid)
        rows.append(row)
        oid = row["parent"]
    return rows


def write_commit(store, repo, ref, parent, tree, title, message, author):
    """Store a commit and move ``ref`` to it; returns the new oid."""
    date = now()
    seed = json.dumps([repo.id, parent, sorted(tree.items()), title, message, author, date, uuid.uuid4().hex])
    oid = hashlib.sha1(seed.encode()).hexdigest()
    with store.lock:
        store.execute("INSERT INTO commits (oid, repo_id, parent, title, message, author, date, tree) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", oid, repo.id, parent, title, message, author, date,
                      json.dumps(tree))
        set_ref(store, repo, ref, oid)
    return oid


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


def dir_json(path, tree, last_commit=None):
    prefix = path + "/"
    signature = "\n".join(f"{p} {e[2]}" for p, e in sorted(tree.items()) if p.startswith(prefix))
    item = {"type": "directory", "oid": hashlib.sha1(signature.encode()).hexdigest(), "size": 0, "path": path}
    if last_commit:
        item["lastCommit"] = last_commit
    return item


def directories(tree):
    dirs = set()
    for path in tree:
        parts = path.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return dirs


def list_tree(tree, path, recursive):
    """(kind, path) pairs under ``path``, directories first; EntryNotFound when it is no folder."""
    path = path.strip("/")
    dirs = directories(tree)
    if path and path not in dirs:
        raise entry_not_found(path)
    prefix = path + "/" if path else ""

    def wanted(p):
        return p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])

    return [("directory", d) for d in sorted(dirs) if wanted(d)] + [("file", f) for f in sorted(tree) if wanted(f)]


def entries_json(store, repo, head_oid, tree, items, expand):
    """Tree/paths-info JSON for (kind, path) pairs; with ``expand`` each gets the last commit touching it."""
    last = last_commits(store, head_oid, [p for _, p in items]) if expand else {}
    return [file_json(p, tree[p], last.get(p)) if kind == "file" else dir_json(p, tree, last.get(p))
            for kind, p in items]


def _path_value(tree, path):
    if path in tree:
        return tree[path]
    prefix = path + "/"
    return sorted((p, e[2]) for p, e in tree.items() if p.startswith(prefix))


def last_commits(store, head_oid, paths):
    """For each path, the newest first-parent commit that changed it."""
    found, pending = {}, set(paths)
    commits = history(store, head_oid)
    for i, row in enumerate(commits):
        if not pending:
            break
        tree = json.loads(row["tree"])
        parent_tree = json.loads(commits[i + 1]["tree"]) if i + 1 < len(commits) else {}
        for path in list(pending):
            if _path_value(tree, path) != _path_value(parent_tree, path):
                found[path] = {"id": row["oid"], "title": row["title"], "date": row["date"]}
                pending.discard(path)
    return found


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


def apply_operations(store, tree, operations):
    """New tree after NDJSON operations (file, lfsFile, deletedFile, deletedFolder)."""
    tree = dict(tree)
    for op in operations:
        key, value = op.get("key"), op.get("value") or {}
        path = clean_path(str(value.get("path", "")))
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, "BadRequest", f"Unsupported encoding for {path}")
            tree[path] = inline_entry(store, base64.b64decode(value.get("content", "")))
        elif key == "lfsFile":
            oid = value.get("oid", "")
            if not store.has_blob(oid):
                raise HubError(422, "LfsObjectNotFound", f"LFS object {oid} for {path} was never uploaded")
            size = store.blob_path(oid).stat().st_size
            if value.get("size") is not None and int(value["size"]) != size:
                raise HubError(422, "LfsSizeMismatch", f"LFS object {oid} has size {size}, not {value['size']}")
            tree[path] = lfs_entry(oid, size)
        elif key in ("deletedFile", "deletedFolder"):
            folder = path.rstrip("/")
            removed = [p for p in tree if p == folder or p.startswith(folder + "/")]
            if key == "deletedFolder" or path.endswith("/"):
                removed = [p for p in removed if p != folder]
            if not removed:
                raise entry_not_found(path, error=f"A file with this name doesn't exist: {path}")
            for p in removed:
                del tree[p]
        else:
            raise HubError(400, "BadRequest", f"Unknown commit operation key: {key!r}")
    return tree


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


def text_file(store, tree, path):
    entry = tree.get(path)
    if entry is None:
        return ""
    return store.read_blob(entry[0]).decode("utf-8", "replace")


# -- README metadata ---------------------------------------------------------------------------
def front_matter(text):
    """The YAML text between the leading '---' lines of a README, or None when there is none."""
    match = re.match(r"^---\s*\n(.*?\n)?---\s*(\n|$)", text, re.S)
    return None if match is None else (match.group(1) or "")


def card_data(store, tree):
    raw = front_matter(text_file(store, tree, "README.md"))
    if not raw:
        return None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


# -- merges ------------------------------------------------------------------------------------
def changed_paths(base, head):
    return {p for p in set(base) | set(head) if base.get(p) != head.get(p)}


def merge_trees(base, ours, theirs):
    """Three-way merge of snapshots: (merged tree, conflicting paths)."""
    merged, conflicts = dict(ours), []
    for path in sorted(changed_paths(base, theirs)):
        if ours.get(path) == base.get(path) or ours.get(path) == theirs.get(path):
            if theirs.get(path) is None:
                merged.pop(path, None)
            else:
                merged[path] = theirs[path]
        else:
            conflicts.append(path)
    return merged, conflicts
