"""Duplicate and near-duplicate decisions: exact duplicates by text hash or id, duplicates of
main by text hash, near duplicates by one-permutation MinHash with rotation densification and LSH
banding. Decisions are made run by run in row order, exactly as over the whole input at once.
"""

from __future__ import annotations

import numpy as np

from vdata_hub.repo.row_checks import CODE

SIGNATURE_BINS = 64  # 16-bit values: 128 bytes per row


# LSH: 16 bands of 4 bins; pairs above ~0.5 Jaccard become candidates, then are verified.
EMPTY_BIN = np.uint16(0xFFFF)


def minhash_signatures(token_hash: np.ndarray, rows: np.ndarray, n: int, k: int) -> np.ndarray:
    """MinHash signature per row over word k-shingles (one-permutation hashing into bins: the top
    6 bits of a shingle's 32-bit hash pick its bin, the low 16 bits are its value); rows with fewer
    than k words stay empty. 32-bit arithmetic, in place: this runs over every word."""
    if len(token_hash) < k:
        return np.full((n, SIGNATURE_BINS), EMPTY_BIN, np.uint16)
    count = len(token_hash) - k + 1
    words = (token_hash >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        h = words[:count].copy()
        for j in range(1, k):
            h *= np.uint32(0x01000193)
            h += words[j:j + count]
        h ^= h >> np.uint32(16)  # murmur3's finaliser
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    owner = rows[:count].astype(np.int32)
    owner[owner != rows[k - 1:k - 1 + count]] = n  # shingles across two texts go to a spare row
    slot = owner * np.int32(SIGNATURE_BINS) + (h >> np.uint32(26)).astype(np.int32)
    values = np.minimum(h.astype(np.uint16), np.uint16(EMPTY_BIN - 1))
    spare = np.full((n + 1, SIGNATURE_BINS), EMPTY_BIN, np.uint16)
    np.minimum.at(spare.reshape(-1), slot, values)
    return _densify(spare[:n])


def _densify(signatures: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next non-empty bin (cyclically), mixed with the distance, so
    short texts still compare (rotation densification). One step of distance at a time: the first
    step over the whole array fills most holes, the next ones only the rows still holding some."""
    empty = signatures == EMPTY_BIN
    hole = empty & ~empty.all(axis=1)[:, None]  # rows with no shingle at all stay empty
    if not hole.any():
        return signatures
    original = signatures.copy()
    rows = None  # None: every row
    distance = 0
    while rows is None or len(rows):
        distance += 1
        source = np.roll(original if rows is None else original[rows], -distance, axis=1)  # bin i + distance
        left = hole if rows is None else hole[rows]
        fill = left & (source != EMPTY_BIN)
        with np.errstate(over="ignore"):
            mixed = source[fill].astype(np.uint32) * np.uint32(0x9E3779B1) + np.uint32(distance * 0x85EBCA77 % 2**32)
        mixed = (mixed % np.uint32(0xFFF1)).astype(np.uint16)
        left &= ~fill
        if rows is None:
            signatures[fill] = mixed
            rows = np.flatnonzero(left.any(axis=1))
        else:
            block = signatures[rows]
            block[fill] = mixed
            signatures[rows] = block
            hole[rows] = left
            rows = rows[left.any(axis=1)]
    return signatures


class DuplicateDecisions:
    """What the rows decided so far leave behind for the next batch, so duplicates are decided
    batch by batch in row order, exactly as over the whole contribution at once:
    - duplicate: a later row with the same text hash or id as an earlier row that passed the
      per-row checks (the earlier one is kept);
    - duplicate_of_main: the text hash is already on main;
    - near_duplicate: LSH banding (16 bands of 4 bins) gives each row a candidate per band, the
      first live row with the same band; a candidate whose estimated Jaccard similarity reaches
      the threshold makes the row a near duplicate of it.
    Kept per distinct key: the text hash and the 16 band keys with their first row (12 bytes each,
    in FirstRows: about 200 bytes per row), and the ids in a set."""

    BANDS = SIGNATURE_BINS // 4

    def __init__(self, known: np.ndarray | None, signatures: np.ndarray, threshold: float):
        self.known = np.unique(np.asarray(known, np.int64)) if known is not None and len(known) else None
        self.signatures = signatures  # all rows' signatures, filled in before decide() is called
        self.threshold = threshold
        self.hashes = FirstRows()
        self.ids: set = set()
        self.bands = [FirstRows() for _ in range(self.BANDS)]

    def decide(self, start: int, reasons: np.ndarray, hashes: np.ndarray, ids: list) -> np.ndarray:
        """The final reasons of rows start.. given their per-row reasons (0 = passed so far)."""
        reasons = reasons.copy()
        live = np.flatnonzero(reasons == 0)
        if len(live) == 0:
            return reasons
        keys = hashes[live].view(np.uint64)
        later = self.hashes.first(keys, start + live) != start + live
        earlier, first = self.ids, {}
        for j, i in enumerate(live.tolist()):
            key = ids[i]
            if key in earlier or key in first:
                later[j] = True
            else:
                first[key] = i
        earlier.update(first)
        reasons[live[later]] = CODE["duplicate"]
        if self.known is not None:
            live = np.flatnonzero(reasons == 0)
            reasons[live[contains(self.known, hashes[live])]] = CODE["duplicate_of_main"]
        self._near(start, reasons)
        return reasons

    def _near(self, start: int, reasons: np.ndarray) -> None:
        sig = self.signatures[start:start + len(reasons)]
        live = np.flatnonzero((reasons == 0) & (sig[:, 0] != EMPTY_BIN))
        if len(live) == 0:
            return
        rows = start + live  # row numbers in the whole contribution
        keys = np.ascontiguousarray(sig[live]).view(np.uint64)  # (rows, bands): 4 16-bit bins as one key
        rep = np.stack([self.bands[band].first(keys[:, band], rows) for band in range(self.BANDS)], axis=1)
        other = rep != rows[:, None]
        if not other.any():
            return
        pairs = np.unique(np.stack([np.broadcast_to(rows[:, None], rep.shape)[other], rep[other]], axis=1), axis=0)
        similarity = (self.signatures[pairs[:, 0]] == self.signatures[pairs[:, 1]]).mean(axis=1)
        near = np.unique(pairs[similarity >= self.threshold, 0])
        reasons[near - start] = CODE["near_duplicate"]


class FirstRows:
    """64-bit key -> the first row that had it, as two sorted arrays (distinct keys, first rows).
    Adding a run of keys is one stable sort of the kept keys followed by the new ones: the kept
    ones are already one sorted run, so the sort costs about sorting the new keys plus a merge."""

    def __init__(self):
        self.keys, self.rows = np.zeros(0, np.uint64), np.zeros(0, np.int32)  # < 2**31 rows

    def first(self, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """For each key (in row order), the first row with that key among those seen before and
        these; then these are remembered."""
        kept = len(self.keys)
        new_order = np.argsort(keys)  # the new keys sorted (quicksort), then merged with the kept run
        every = np.concatenate([self.keys, keys[new_order]])
        order = np.argsort(every, kind="stable")  # two sorted runs: a merge
        ordered = every[order]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        begins = np.flatnonzero(starts)
        every_rows = np.concatenate([self.rows, rows[new_order].astype(np.int32)])
        first_row = np.minimum.reduceat(every_rows[order], begins)
        self.keys, self.rows = ordered[begins], first_row
        group = np.empty(len(every), np.int64)
        group[order] = np.cumsum(starts) - 1
        result = np.empty(len(keys), np.int64)
        result[new_order] = first_row[group[kept:]]
        return result


def contains(sorted_values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if len(sorted_values) == 0:
        return np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(sorted_values, keys), len(sorted_values) - 1)
    return sorted_values[at] == keys
