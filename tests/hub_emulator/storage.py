"""On-disk state of the emulator: content-addressed blobs plus SQLite metadata.

Blobs live under ``blobs/<aa>/<sha256>`` and are written by streaming to a temp file while hashing,
so a large upload never sits in memory. Metadata (repos, commits, refs, discussions) is in one SQLite
file guarded by one lock: the emulator serves tests, not production traffic. Trees are stored the
way git stores them, one content-addressed object per directory (see ``trees.py``); the other tables
are indexed for the lookups a repo with thousands of commits and pull requests makes.
"""

import contextlib
import hashlib
import os
import queue
import sqlite3
import tempfile
import threading
from pathlib import Path

from .trees import Objects

CHUNK = 1 << 20

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
    id INTEGER PRIMARY KEY, type TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    private INTEGER NOT NULL, gated TEXT, created_at TEXT NOT NULL, next_num INTEGER NOT NULL DEFAULT 1);
CREATE UNIQUE INDEX IF NOT EXISTS repos_key ON repos (type, lower(namespace), lower(name));
CREATE TABLE IF NOT EXISTS aliases (type TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    repo_id INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS aliases_key ON aliases (type, lower(namespace), lower(name));
CREATE TABLE IF NOT EXISTS commits (
    oid TEXT PRIMARY KEY, repo_id INTEGER NOT NULL, parent TEXT, depth INTEGER NOT NULL, title TEXT, message TEXT,
    author TEXT, date TEXT, tree TEXT NOT NULL, files INTEGER NOT NULL, size INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS commits_repo ON commits (repo_id, oid);
CREATE TABLE IF NOT EXISTS objects (oid TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (repo_id INTEGER NOT NULL, path TEXT NOT NULL, depth INTEGER NOT NULL, oid TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS changes_path ON changes (repo_id, path, depth);
CREATE TABLE IF NOT EXISTS repo_blobs (
    repo_id INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, is_lfs INTEGER NOT NULL,
    path TEXT NOT NULL, ref TEXT, pushed_at TEXT NOT NULL, PRIMARY KEY (repo_id, sha256)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refs (
    repo_id INTEGER NOT NULL, name TEXT NOT NULL, oid TEXT NOT NULL, PRIMARY KEY (repo_id, name));
CREATE TABLE IF NOT EXISTS discussions (
    repo_id INTEGER NOT NULL, num INTEGER NOT NULL, is_pr INTEGER NOT NULL, status TEXT NOT NULL,
    author TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (repo_id, num));
CREATE INDEX IF NOT EXISTS discussions_filter ON discussions (repo_id, is_pr, status, author);
"""

class BlobMismatch(ValueError):
    """Raised when streamed content does not match the announced sha256 or size."""


def _fill(read_into, view):
    """Read until ``view`` is full or the body ends; returns the byte count."""
    filled = 0
    while filled < len(view):
        n = read_into(view[filled:])
        if not n:
            break
        filled += n
    return filled


class ChunkHasher:
    """Feeds chunks to hashlib objects, in a worker thread when ``threaded`` (hashlib drops the GIL).

    Hashed buffers go back to a free list, so a long upload cycles through about ten 1 MiB buffers
    instead of allocating (and page-faulting in) a fresh one per chunk."""

    def __init__(self, hashers, threaded):
        self.hashers = hashers
        self.queue = queue.Queue(maxsize=8) if threaded else None
        self.worker = threading.Thread(target=self._run, daemon=True) if threaded else None
        self.free = queue.SimpleQueue()

    def buffer(self):
        try:
            return self.free.get_nowait()
        except queue.Empty:
            return bytearray(CHUNK)

    def __enter__(self):
        if self.worker:
            self.worker.start()
        return self

    def __exit__(self, *exc):
        if self.worker:
            self.queue.put(None)
            self.worker.join()

    def add(self, buffer, n):
        """Hash the first ``n`` bytes of ``buffer`` (one from ``self.buffer()``), then recycle it."""
        if self.queue is None:
            self._update(buffer, n)
        else:
            self.queue.put((buffer, n))

    def _run(self):
        while (item := self.queue.get()) is not None:
            self._update(*item)

    def _update(self, buffer, n):
        view = memoryview(buffer)[:n]
        for hasher in self.hashers:
            hasher.update(view)
        view.release()
        self.free.put(buffer)


class Store:
    """Blobs on disk and metadata rows; every metadata access goes through ``self.lock``."""

    def __init__(self, root):
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.root / "meta.sqlite3", check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        # No fsync per statement: a test server's state need not survive a power cut, and with the
        # default (synchronous=FULL, rollback journal) each commit waits for the disk several times.
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        has_tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'repos'").fetchone()[0]
        if has_tables and version != SCHEMA_VERSION:
            raise RuntimeError(f"{self.root} holds an older emulator's data (schema {version}, "
                               f"this one writes {SCHEMA_VERSION}): start it with a fresh --data folder")
        self.db.executescript(SCHEMA)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.objects = Objects(self)
        self.links = {}  # commit oid -> (parent oid, depth): see repos.link

    # -- blobs -------------------------------------------------------------------------------
    def blob_path(self, sha256):
        return self.blob_dir / sha256[:2] / sha256

    def has_blob(self, sha256):
        return self.blob_path(sha256).is_file()

    def put_stream(self, read_into, size, expected_sha256=None, git_oid=True):
        """Store ``size`` bytes pulled by ``read_into(memoryview) -> n``; return (sha256, git_sha1).

        Large bodies are hashed in a second thread while the first one receives and writes, so
        an upload costs about one pass of sha256 rather than receive + hash in sequence. The git
        blob sha1 is only needed for regular files: LFS uploads skip it (``git_oid=False``)."""
        hashers = [hashlib.sha256()] + ([hashlib.sha1(b"blob %d\0" % size)] if git_oid else [])
        fd, tmp = tempfile.mkstemp(dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "wb", buffering=0) as out, ChunkHasher(hashers, threaded=size > 4 * CHUNK) as hasher:
                left = size
                while left:
                    buffer, want = hasher.buffer(), min(CHUNK, left)
                    with memoryview(buffer)[:want] as view:
                        n = _fill(read_into, view)
                        if n < want:
                            raise BlobMismatch(f"body ended {left - n} bytes early")
                        out.write(view)
                    hasher.add(buffer, n)
                    left -= n
            digest = hashers[0].hexdigest()
            if expected_sha256 and digest != expected_sha256:
                raise BlobMismatch(f"content sha256 {digest} does not match oid {expected_sha256}")
            final = self.blob_path(digest)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            return digest, hashers[1].hexdigest() if git_oid else None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_bytes(self, data):
        view = memoryview(data)
        pos = 0

        def read_into(target):
            nonlocal pos
            n = min(len(target), len(view) - pos)
            target[:n] = view[pos:pos + n]
            pos += n
            return n

        return self.put_stream(read_into, len(data))

    def read_blob(self, sha256):
        return self.blob_path(sha256).read_bytes()

    # -- metadata ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self):
        """All statements inside (nested ones join the outer one) take effect together or not at all."""
        with self.lock:
            if self.db.in_transaction:
                yield
                return
            self.db.execute("BEGIN")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def query(self, sql, *args):
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def one(self, sql, *args):
        rows = self.query(sql, *args)
        return rows[0] if rows else None

    def execute(self, sql, *args):
        with self.lock:
            return self.db.execute(sql, args)

    def get_object(self, oid):
        row = self.one("SELECT data FROM objects WHERE oid = ?", oid)
        return None if row is None else bytes(row["data"])

    def put_object(self, oid, data):
        self.execute("INSERT OR IGNORE INTO objects (oid, data) VALUES (?, ?)", oid, data)
