"""The duplicate index's run file: what is known about a set of rows on main, laid out so that a
reader fetches a small front part once and everything else by small range reads.

A run covers the rows of some contributions. Its rows are numbered in the order of their text
hashes. Little-endian, in this order:

    magic "VDXRUN01", u32 length of the header, the header (JSON: counts, parameters, section
    offsets, the contribution ids covered), then the sections:
    hashes       every row's 64-bit text hash, sorted, Elias-Fano coded without loss (about 5.4
                 bytes a row at 9 million rows): "is this text on main" and each row's id
    filters      per LSH band, the top bits of the (mixed) band keys of the rows that have a
                 signature, sorted, Elias-Fano coded with FILTER_LOW_BITS low bits (about 9.8
                 bits a key): "may a row of this run share this band key" (by chance: < 2/256)
    band_rows    per band, the row number (u32) of each filter entry, in the filter's order
    signatures   each row's MinHash signature (64 x u16), by row number

The front (header, hashes, filters) is what a reader downloads: about 25 bytes a row. A band hit
costs a range read in band_rows; a candidate worth verifying costs one in signatures. Nothing in a
run depends on time or order of arrival, so the same rows always give the same bytes (and name).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field

import numpy as np

from vdata_hub.repo.dedup import BANDS, EMPTY_BIN, SIGNATURE_BINS, band_keys

MAGIC = b"VDXRUN01"
FORMAT = 1
FILTER_LOW_BITS = 8
CACHED_ROWS = 4_000_000  # runs up to this size keep their band filters decoded (up to 256 MB)
SHINGLE_WORDS = 5  # the rules' default; a run records what it was built with


class IndexFormatError(ValueError):
    """A run file that this version cannot read."""


# --- Elias-Fano codes --------------------------------------------------------------------------

def _ef_encode(values: np.ndarray, high_bits: int, low_bytes: int) -> bytes:
    """Sorted uint64 values (only their top high_bits + 8 * low_bytes bits are kept): the unary
    coded high parts as a bit vector (bit high + i set for the i-th value), then the low bytes."""
    n = len(values)
    shift = 64 - high_bits
    high = (values >> np.uint64(shift)).astype(np.int64) if high_bits else np.zeros(n, np.int64)
    bits = np.zeros(n + (1 << high_bits), np.uint8)
    bits[high + np.arange(n)] = 1
    packed = np.packbits(bits, bitorder="little").tobytes()
    low = (values >> np.uint64(shift - 8 * low_bytes)) if low_bytes else np.zeros(n, np.uint64)
    low_part = low.astype("<u8").view(np.uint8).reshape(n, 8)[:, :low_bytes].tobytes()
    return struct.pack("<I", len(packed)) + packed + low_part


def _ef_decode(data: memoryview, n: int, high_bits: int, low_bytes: int) -> np.ndarray:
    """The kept top bits of each value, as uint64 (high part, then the low bytes)."""
    (packed_length,) = struct.unpack_from("<I", data, 0)
    bits = np.unpackbits(np.frombuffer(data, np.uint8, packed_length, 4), bitorder="little")
    high = (np.flatnonzero(bits)[:n] - np.arange(n)).astype(np.uint64)
    low = np.zeros((n, 8), np.uint8)
    low[:, :low_bytes] = np.frombuffer(data, np.uint8, n * low_bytes, 4 + packed_length).reshape(n, low_bytes)
    return (high << np.uint64(8 * low_bytes)) | low.view("<u8").reshape(n)


def _ef_size(n: int, high_bits: int, low_bytes: int) -> int:
    return 4 + (n + (1 << high_bits) + 7) // 8 + n * low_bytes


def _hash_high_bits(n: int) -> int:
    """High bits for the lossless hash code: byte-aligned low parts, the smallest total size."""
    return min((8, 16, 24, 32, 40), key=lambda high: _ef_size(n, high, (64 - high) // 8))


def _filter_high_bits(n: int) -> int:
    """One or two keys per high value: 1.5 to 2 bits a key for the unary part, and a query key
    passes a band's filter by chance with a probability under 2/256."""
    return max(1, min(40, int(np.floor(np.log2(max(n, 2))))))


# --- building ------------------------------------------------------------------------------------

def build_run(hashes: np.ndarray, signatures: np.ndarray | None, contributions,
              shingle_words: int = SHINGLE_WORDS) -> bytes:
    """The run file of these rows (text hashes as int64, signatures as (rows, 64) uint16 or None
    for none) covering these contribution ids."""
    hashes = np.asarray(hashes, np.int64)
    if signatures is None:
        signatures = np.full((len(hashes), SIGNATURE_BINS), EMPTY_BIN, np.uint16)
    order = np.argsort(hashes.view(np.uint64), kind="stable")
    sorted_hashes = hashes.view(np.uint64)[order]
    signatures = np.ascontiguousarray(signatures[order], dtype="<u2")
    n = len(hashes)
    hash_high = _hash_high_bits(n)
    hash_section = _ef_encode(sorted_hashes, hash_high, (64 - hash_high) // 8)

    signed = np.flatnonzero(signatures[:, 0] != EMPTY_BIN).astype(np.uint32)
    filter_high = _filter_high_bits(len(signed))
    filters, band_rows = [], []
    for band in range(BANDS):  # one band's keys at a time: 8 bytes a row, not 128
        keys = band_keys(signatures[signed, 4 * band:4 * band + 4])[:, 0]
        band_order = np.argsort(keys, kind="stable")
        filters.append(_ef_encode(keys[band_order], filter_high, FILTER_LOW_BITS // 8))
        band_rows.append(signed[band_order].astype("<u4").tobytes())
    sections = {"hashes": hash_section, "filters": b"".join(filters), "band_rows": b"".join(band_rows),
                "signatures": signatures.tobytes()}
    header = {"format": FORMAT, "rows": n, "signed_rows": int(len(signed)), "bands": BANDS,
              "signature_bins": SIGNATURE_BINS, "shingle_words": shingle_words, "hash_high_bits": hash_high,
              "filter_high_bits": filter_high, "filter_low_bits": FILTER_LOW_BITS,
              "filter_bytes": [len(part) for part in filters], "contributions": sorted(set(contributions))}
    # Offsets depend on the header's length, which depends on the offsets' digits: settle it.
    offsets: dict = {}
    for _ in range(4):
        header["sections"] = offsets
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        position, new = len(MAGIC) + 4 + len(text), {}
        for name, data in sections.items():
            new[name] = [position, len(data)]
            position += len(data)
        if new == offsets:
            break
        offsets = new
    return MAGIC + struct.pack("<I", len(text)) + text + b"".join(sections.values())


def run_name(data: bytes) -> str:
    """A run's name: a hash of its bytes (the same rows always give the same name)."""
    return hashlib.sha256(data).hexdigest()[:16]


# --- reading -------------------------------------------------------------------------------------

def probe_bytes(size: int) -> int:
    """How much of a run of `size` bytes to read first: its front is 11 to 12.5% of it (24 to 27
    of about 218 bytes a row), plus room for the header, so one request usually gets it all."""
    return min(size, size * 13 // 100 + 8192)


def header_length(prefix: bytes) -> int:
    """Bytes of the magic, length and header, from the first 12 bytes of a run."""
    if prefix[:len(MAGIC)] != MAGIC:
        raise IndexFormatError("not a vdata index run (bad magic)")
    return len(MAGIC) + 4 + struct.unpack_from("<I", prefix, len(MAGIC))[0]


def parse_header(prefix: bytes) -> dict:
    end = header_length(prefix)
    header = json.loads(bytes(prefix[len(MAGIC) + 4:end]))
    if header.get("format") != FORMAT or header.get("bands") != BANDS or header.get("signature_bins") != SIGNATURE_BINS:
        raise IndexFormatError(f"index run format {header.get('format')} with {header.get('bands')} bands is not "
                               f"this version's ({FORMAT}, {BANDS} bands)")
    return header


def front_end(header: dict) -> int:
    """Where the front (header, hashes, filters) ends."""
    start, length = header["sections"]["filters"]
    return start + length


@dataclass
class RunFront:
    """A run's header, its decoded hashes (by row number) and its band filters (decoded lazily)."""

    header: dict
    hashes: np.ndarray  # uint64, sorted: row number i has text hash hashes[i]
    filter_data: memoryview
    _filters: list = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.header["rows"]

    @property
    def contributions(self) -> list:
        return self.header["contributions"]

    def band_filter(self, band: int) -> np.ndarray:
        """The band's kept key bits (sorted; uint32 when they fit). Kept decoded for runs of up
        to CACHED_ROWS rows (64 bytes a row); larger ones are decoded at each use."""
        if self._filters and self._filters[band] is not None:
            return self._filters[band]
        start = sum(self.header["filter_bytes"][:band])
        decoded = _ef_decode(self.filter_data[start:start + self.header["filter_bytes"][band]],
                             self.header["signed_rows"], self.header["filter_high_bits"],
                             self.header["filter_low_bits"] // 8)
        if self.header["filter_high_bits"] + self.header["filter_low_bits"] <= 32:
            decoded = decoded.astype(np.uint32)
        if self.header["signed_rows"] <= CACHED_ROWS:
            self._filters = self._filters or [None] * BANDS
            self._filters[band] = decoded
        return decoded

    def fingerprints(self, keys: np.ndarray) -> np.ndarray:
        """Query band keys cut to the bits a filter keeps (the filter's dtype)."""
        shift = 64 - self.header["filter_high_bits"] - self.header["filter_low_bits"]
        kept = np.asarray(keys, np.uint64) >> np.uint64(shift)
        return kept.astype(np.uint32) if shift >= 32 else kept

    def band_rows_range(self, band: int, start: int, stop: int) -> tuple[int, int]:
        """Byte range of band_rows entries start..stop of a band."""
        offset = self.header["sections"]["band_rows"][0] + 4 * (band * self.header["signed_rows"] + start)
        return offset, offset + 4 * (stop - start)

    def signature_range(self, row: int) -> tuple[int, int]:
        offset = self.header["sections"]["signatures"][0] + 2 * SIGNATURE_BINS * row
        return offset, offset + 2 * SIGNATURE_BINS


def parse_front(front: bytes) -> RunFront:
    """A RunFront from the first front_end(header) bytes of a run."""
    header = parse_header(front)
    if len(front) < front_end(header):
        raise IndexFormatError("index run cut short")
    data = memoryview(front)
    start, length = header["sections"]["hashes"]
    high = header["hash_high_bits"]
    hashes = _ef_decode(data[start:start + length], header["rows"], high, (64 - high) // 8)
    start, length = header["sections"]["filters"]
    return RunFront(header=header, hashes=hashes, filter_data=data[start:start + length])


def read_signatures(data: bytes, header: dict) -> np.ndarray:
    """All signatures of a whole run file, by row number."""
    start, length = header["sections"]["signatures"]
    return np.frombuffer(data, "<u2", length // 2, start).reshape(-1, SIGNATURE_BINS).astype(np.uint16)
