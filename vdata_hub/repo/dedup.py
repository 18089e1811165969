"""Duplicate and near-duplicate decisions: exact duplicates by text hash or plan key, duplicates
and near duplicates of main through the repo's index, near duplicates inside a contribution by
one-permutation MinHash with rotation densification and LSH banding. Decisions are made run by run
in row order, exactly as over the whole input at once.
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


def text_signatures(text, shingle_words: int, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Text hashes (int64) and MinHash signatures of texts as stored on main: what contribute and
    review computed for them (reindex rebuilds the index with this)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from vdata_hub.generation.records import hash_word_sequences, text_words, word_hashes

    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    words, rows = text_words(text.fill_null(""))
    encoded = pc.dictionary_encode(words)
    token_hash = word_hashes(words, {} if cache is None else cache,
                             (encoded.dictionary.to_pylist(), np.asarray(encoded.indices, np.int64)))
    return (hash_word_sequences(len(text), rows, token_hash),
            minhash_signatures(token_hash, rows, len(text), shingle_words))


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


BANDS = SIGNATURE_BINS // 4


def band_keys(signatures: np.ndarray) -> np.ndarray:
    """(rows, BANDS) uint64: each band's 4 16-bit bins as one key, mixed (a bijection) so that
    every bit is uniform: MinHash bins are minimums, small values are common, and the index keeps
    only a key's top bits."""
    from vdata_hub.generation.records import mix64

    return mix64(np.ascontiguousarray(signatures, dtype="<u2").view("<u8").astype(np.uint64))


def min_shared_bands(threshold: float) -> int:
    """Bands that two signatures with estimated similarity >= threshold always share: at most
    64 - ceil(64 * threshold) bins differ, and each spoils one band. With 16 bands of 4 and the
    default 0.8, at least 4 bands are equal, so no near duplicate of a main row can be missed
    (below a threshold of 0.77 the banding only finds most of them)."""
    differing = SIGNATURE_BINS - int(np.ceil(SIGNATURE_BINS * threshold - 1e-9))
    return max(1, BANDS - differing)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Estimated Jaccard similarity of signature pairs: the share of equal bins."""
    return (a == b).mean(axis=1)


class NoMain:
    """Main with no rows (a new repo, or a check without main)."""

    def duplicates(self, hashes: np.ndarray) -> np.ndarray:
        return np.zeros(len(hashes), bool)

    def near_duplicates(self, signatures: np.ndarray, threshold: float) -> np.ndarray:
        return np.zeros(len(signatures), np.int64)


class DuplicateDecisions:
    """What the rows decided so far leave behind for the next batch, so duplicates are decided
    batch by batch in row order, exactly as over the whole contribution at once:
    - duplicate: a later row with the same text hash or plan key as an earlier row that passed
      the per-row checks (the earlier one is kept);
    - duplicate_of_main: the text hash is on main;
    - near_duplicate_of_main: the signature matches a main row's (estimated Jaccard similarity
      at least the threshold), found through `main` (repo.index.MainIndex);
    - near_duplicate: LSH banding (16 bands of 4 bins) gives each row a candidate per band, the
      first earlier row with the same band key among all rows that passed the per-row checks; a
      candidate whose estimated similarity reaches the threshold makes the row a near duplicate.
    Which rows are candidates does not depend on the other decisions, so a contribution decided
    again after its accepted rows reached main rejects every row (the accepted ones are then on
    main, the others have the same candidates as before).
    `matched[row]`: the text hash of the main row a row duplicates (0: none).
    Kept per distinct key: the text hash and the 16 band keys with their first row (12 bytes each,
    in FirstRows: about 200 bytes per row), and the plan keys in a set."""

    def __init__(self, main, signatures: np.ndarray, threshold: float):
        self.main = main if main is not None else NoMain()
        self.signatures = signatures  # all rows' signatures, filled in before decide() is called
        self.threshold = threshold
        self.matched = np.zeros(len(signatures), np.int64)
        self.hashes = FirstRows()
        self.keys: set = set()
        self.bands = [FirstRows() for _ in range(BANDS)]

    def decide(self, start: int, reasons: np.ndarray, hashes: np.ndarray, keys: list) -> np.ndarray:
        """The final reasons of rows start.. given their per-row reasons (0 = passed so far) and
        plan keys."""
        reasons = reasons.copy()
        passed = np.flatnonzero(reasons == 0)
        if len(passed) == 0:
            return reasons
        later = self.hashes.first(hashes[passed].view(np.uint64), start + passed) != start + passed
        earlier, first = self.keys, {}
        for j, i in enumerate(passed.tolist()):
            key = keys[i]
            if key in earlier or key in first:
                later[j] = True
            else:
                first[key] = i
        earlier.update(first)
        reasons[passed[later]] = CODE["duplicate"]
        live = np.flatnonzero(reasons == 0)
        on_main = live[self.main.duplicates(hashes[live])]
        reasons[on_main] = CODE["duplicate_of_main"]
        self.matched[start + on_main] = hashes[on_main]
        live = np.flatnonzero((reasons == 0) & (self.signatures[start:start + len(reasons), 0] != EMPTY_BIN))
        if len(live):
            near = self.main.near_duplicates(self.signatures[start + live], self.threshold)
            reasons[live[near != 0]] = CODE["near_duplicate_of_main"]
            self.matched[start + live[near != 0]] = near[near != 0]
        self._near(start, reasons, passed)
        return reasons

    def _near(self, start: int, reasons: np.ndarray, passed: np.ndarray) -> None:
        sig = self.signatures[start:start + len(reasons)]
        passed = passed[sig[passed, 0] != EMPTY_BIN]
        if len(passed) == 0:
            return
        rows = start + passed  # row numbers in the whole contribution
        keys = band_keys(sig[passed])
        rep = np.stack([self.bands[band].first(keys[:, band], rows) for band in range(BANDS)], axis=1)
        live = reasons[passed] == 0
        other = (rep != rows[:, None]) & live[:, None]
        if not other.any():
            return
        pairs = np.unique(np.stack([np.broadcast_to(rows[:, None], rep.shape)[other], rep[other]], axis=1), axis=0)
        similar = similarity(self.signatures[pairs[:, 0]], self.signatures[pairs[:, 1]]) >= self.threshold
        near = np.unique(pairs[similar, 0])
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
    """Which keys are in the sorted array."""
    if len(sorted_values) == 0:
        return np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(sorted_values, keys), len(sorted_values) - 1)
    return sorted_values[at] == keys
