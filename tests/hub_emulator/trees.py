"""Repository trees stored the way git stores them: one content-addressed object per directory.

A commit points at the oid of its root directory; a directory maps names to file entries
``[sha256, size, git_oid, is_lfs]`` (JSON lists) or to the oid (a string) of a subdirectory. A commit
therefore rewrites only the directories on the paths it changes, and comparing two trees skips every
subdirectory whose oid is equal on both sides: a commit, a diff or a merge costs what it changes, not
the size of the repo.

A large directory (``data/<axis>/`` of a dataset with thousands of contributions) is split into
buckets by a hash of the name, each bucket its own object, so that adding one file rewrites one
bucket and the bucket list instead of copying all 10,000 entries. Objects are immutable, so parsed
ones are kept in a bounded LRU cache.
"""

import collections
import hashlib
import json
import threading
import zlib

BUCKET_SIZE = 48  # average entries per bucket; a directory up to this size is a single object
BUCKET_KIND, INDEX_KIND = b"B", b"I"


def bucket_count(size):
    """Buckets for a directory of ``size`` entries: a power of two keeping buckets near BUCKET_SIZE."""
    count = 1
    while size > count * BUCKET_SIZE:
        count *= 2
    return count


def bucket_of(name, count):
    return zlib.crc32(name.encode()) & (count - 1)


def is_dir(entry):
    return isinstance(entry, str)


class Objects:
    """Parsed tree objects by oid, read from and written to the store, with an LRU cache bounded by
    the number of entries it holds (a bucket is ~50, a bucket list up to a few hundred)."""

    def __init__(self, store, budget=400_000):
        self.store = store
        self.budget = budget
        self.cache = collections.OrderedDict()
        self.held = 0
        self.lock = threading.Lock()

    def get(self, oid):
        with self.lock:
            hit = self.cache.get(oid)
            if hit is not None:
                self.cache.move_to_end(oid)
                return hit
        data = self.store.get_object(oid)
        if data is None:
            raise KeyError(f"missing tree object {oid}")
        data = zlib.decompress(data)
        parsed = (data[:1], json.loads(data[1:]))
        self._remember(oid, parsed)
        return parsed

    def put(self, kind, value):
        data = kind + json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        oid = hashlib.sha1(data).hexdigest()
        self.store.put_object(oid, zlib.compress(data, 1))  # hex digests: half the size on disk
        self._remember(oid, (kind, value))
        return oid

    def _remember(self, oid, parsed):
        cost = len(parsed[1]) if parsed[0] == BUCKET_KIND else len(parsed[1]["b"])
        with self.lock:
            if oid in self.cache:
                return
            self.cache[oid] = parsed
            self.held += cost + 1
            while self.held > self.budget and len(self.cache) > 1:
                _, (kind, value) = self.cache.popitem(last=False)
                self.held -= (len(value) if kind == BUCKET_KIND else len(value["b"])) + 1


class Dir:
    """One directory: its entries spread over buckets that load on first use. A Dir from ``load``
    is shared and read-only; ``copy()`` gives one to change, copying only the buckets it writes."""

    def __init__(self, objects, bucket_oids, size, buckets=None):
        self.objects = objects
        self.bucket_oids = bucket_oids  # None for a bucket changed since it was loaded
        self.buckets = buckets if buckets is not None else [None] * len(bucket_oids)
        self.size = size
        self.owned = set()

    @classmethod
    def load(cls, objects, oid):
        if oid is None:
            return cls(objects, [None], 0, [{}])
        kind, value = objects.get(oid)
        if kind == BUCKET_KIND:
            return cls(objects, [oid], len(value), [value])
        return cls(objects, list(value["b"]), value["n"])

    def copy(self):
        twin = Dir(self.objects, list(self.bucket_oids), self.size, list(self.buckets))
        twin.owned = set()
        for i in self.owned:  # never share a bucket someone may still write
            twin.buckets[i] = dict(self.buckets[i])
            twin.owned.add(i)
        return twin

    def _bucket(self, i, write=False):
        bucket = self.buckets[i]
        if bucket is None:
            bucket = self.buckets[i] = self.objects.get(self.bucket_oids[i])[1]
        if write and i not in self.owned:
            bucket = self.buckets[i] = dict(bucket)
            self.owned.add(i)
            self.bucket_oids[i] = None
        return bucket

    def get(self, name):
        return self._bucket(bucket_of(name, len(self.bucket_oids))).get(name)

    def set(self, name, entry):
        bucket = self._bucket(bucket_of(name, len(self.bucket_oids)), write=True)
        if name not in bucket:
            self.size += 1
        bucket[name] = entry

    def delete(self, name):
        i = bucket_of(name, len(self.bucket_oids))
        if name not in self._bucket(i):
            return None
        self.size -= 1
        return self._bucket(i, write=True).pop(name)

    def items(self):
        """All (name, entry) pairs, sorted by name."""
        return sorted(pair for i in range(len(self.bucket_oids)) for pair in self._bucket(i).items())

    def changed_names(self, other):
        """Names whose entry may differ between two saved directories (whole buckets are skipped when equal)."""
        if len(self.bucket_oids) != len(other.bucket_oids):
            names = {n for n, _ in self.items()} | {n for n, _ in other.items()}
        else:
            names = set()
            for i, (mine, theirs) in enumerate(zip(self.bucket_oids, other.bucket_oids)):
                if mine is None or mine != theirs:
                    names.update(self._bucket(i))
                    names.update(other._bucket(i))
        return sorted(n for n in names if self.get(n) != other.get(n))

    def save(self):
        """Write the changed buckets (re-splitting when the size calls for another bucket count); the oid."""
        count = bucket_count(self.size)
        if count != len(self.bucket_oids):
            entries = self.items()
            self.buckets = [{} for _ in range(count)]
            for name, entry in entries:
                self.buckets[bucket_of(name, count)][name] = entry
            self.bucket_oids, self.owned = [None] * count, set(range(count))
        for i, oid in enumerate(self.bucket_oids):
            if oid is None:
                self.bucket_oids[i] = self.objects.put(BUCKET_KIND, self.buckets[i])
        self.owned = set()  # saved buckets are cached objects now: copy before writing again
        if count == 1:
            return self.bucket_oids[0]
        return self.objects.put(INDEX_KIND, {"n": self.size, "b": self.bucket_oids})


def lookup(objects, root, path):
    """The entry at ``path`` (a file entry or a directory oid; the root oid for ""), or None."""
    entry = root
    for name in path.split("/") if path else ():
        if not is_dir(entry):
            return None
        entry = Dir.load(objects, entry).get(name)
        if entry is None:
            return None
    return entry


def dir_size(objects, oid):
    return Dir.load(objects, oid).size


def walk(objects, oid, prefix=""):
    """(path, entry) for every file and directory below the directory ``oid``, depth first, sorted."""
    for name, entry in Dir.load(objects, oid).items():
        yield prefix + name, entry
        if is_dir(entry):
            yield from walk(objects, entry, f"{prefix}{name}/")


def listing(objects, oid, path, recursive):
    """(kind, path, entry) under the directory ``oid`` found at ``path``: directories first, then files."""
    prefix = f"{path}/" if path else ""
    if recursive:
        items = list(walk(objects, oid, prefix))
    else:
        items = [(prefix + name, entry) for name, entry in Dir.load(objects, oid).items()]
    dirs = [("directory", p, e) for p, e in items if is_dir(e)]
    return sorted(dirs, key=lambda t: t[1]) + sorted((("file", p, e) for p, e in items if not is_dir(e)),
                                                     key=lambda t: t[1])


def diff(objects, old, new, prefix=""):
    """{path: (old entry, new entry)} for every file that differs between two directories (oids or None)."""
    changes = {}
    if old == new:
        return changes
    before, after = Dir.load(objects, old), Dir.load(objects, new)
    for name in before.changed_names(after):
        was, now = before.get(name), after.get(name)
        path = prefix + name
        if is_dir(was) or is_dir(now):
            changes.update(diff(objects, was if is_dir(was) else None, now if is_dir(now) else None, path + "/"))
        if not is_dir(was) and not is_dir(now):
            changes[path] = (was, now)
        elif was is not None and not is_dir(was):
            changes[path] = (was, None)
        elif now is not None and not is_dir(now):
            changes[path] = (None, now)
    return changes


def merge(objects, base, ours, theirs, prefix="", save=True):
    """Three-way merge of directories (oids or None): (merged oid or None when empty, conflicting paths).

    With ``save=False`` only the conflicts are computed and nothing is written."""
    if theirs == base or ours == theirs:
        return ours, []
    if ours == base:
        return theirs, []
    old, mine, other = Dir.load(objects, base), Dir.load(objects, ours), Dir.load(objects, theirs)
    merged, conflicts = mine.copy(), []
    for name in old.changed_names(other):
        was, have, want = old.get(name), mine.get(name), other.get(name)
        if have == was or have == want:
            result = want
        elif is_dir(have) and is_dir(want) and (was is None or is_dir(was)):
            result, inner = merge(objects, was, have, want, f"{prefix}{name}/", save)
            conflicts += inner
        else:
            conflicts.append(prefix + name)
            continue
        if result is None:
            merged.delete(name)
        else:
            merged.set(name, result)
    if conflicts or not save:
        return ours, conflicts
    return (merged.save() if merged.size or not prefix else None), []


class Builder:
    """Applies file additions and deletions to a tree, copying only the directories on changed paths."""

    def __init__(self, objects, root):
        self.objects = objects
        self.dirs = {"": Dir.load(objects, root).copy()}

    def _dir(self, path, create):
        if path in self.dirs:
            return self.dirs[path]
        parent_path, _, name = path.rpartition("/")
        parent = self._dir(parent_path, create)
        if parent is None:
            return None
        entry = parent.get(name)
        if entry is None and not create:
            return None
        if entry is not None and not is_dir(entry):
            if not create:
                return None
            raise ValueError(f"{path} is a file, so it cannot hold {path}/...")
        folder = Dir.load(self.objects, entry).copy()
        if entry is None:
            parent.set(name, "")  # placeholder until write() stores the new folder
        self.dirs[path] = folder
        return folder

    def add(self, path, entry):
        parent_path, _, name = path.rpartition("/")
        parent = self._dir(parent_path, create=True)
        if is_dir(parent.get(name)):
            raise ValueError(f"{path} is a folder, so it cannot be written as a file")
        parent.set(name, entry)

    def delete(self, path, folder_only=False):
        """Remove the file or folder at ``path``; False when there is none (or it is a file and ``folder_only``)."""
        parent_path, _, name = path.rpartition("/")
        parent = self._dir(parent_path, create=False)
        entry = parent.get(name) if parent is not None else None
        if entry is None or (folder_only and not is_dir(entry)):
            return False
        parent.delete(name)
        for key in [k for k in self.dirs if k == path or k.startswith(path + "/")]:
            del self.dirs[key]
        return True

    def write(self):
        """Store the changed directories, deepest first, dropping the ones left empty; the new root oid."""
        for path in sorted(self.dirs, key=lambda p: p.count("/") + bool(p), reverse=True):
            if not path:
                continue
            parent_path, _, name = path.rpartition("/")
            folder, parent = self.dirs[path], self.dirs[parent_path]
            if folder.size:
                parent.set(name, folder.save())
            else:
                parent.delete(name)
        return self.dirs[""].save()
