"""CrowS-Pairs sentence pairs, from the Hub copy (`nyu-mll/crows_pairs`) or the public CSV
(`crows_pairs_anonymized.csv`, CC BY-SA 4.0).

Each pair differs in the group it mentions: `sent_more` is the more stereotypical sentence,
`sent_less` the less stereotypical one; `stereo_antistereo` says whether `sent_more` states a
stereotype about a historically disadvantaged group (`stereo`) or `sent_less` violates one
(`antistereo`). Blodgett et al. (ACL 2021) found noise and reliability problems in this data:
report it beside other measures, never alone.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from vdata_hub.errors import EvalError

CROWS_PAIRS_REPO = "nyu-mll/crows_pairs"
BIAS_TYPES = ("race-color", "socioeconomic", "gender", "disability", "nationality", "sexual-orientation",
              "physical-appearance", "religion", "age")
DIRECTIONS = ("stereo", "antistereo")
COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


@dataclass(frozen=True)
class Pair:
    index: int          # the CSV's unnamed first column (the Hub copy's `id`)
    sent_more: str
    sent_less: str
    direction: str      # stereo | antistereo
    bias_type: str


def load_crows_pairs(data: str | None = None, max_examples: int | None = None,
                     bias_type: str | None = None) -> list[Pair]:
    """The pairs of `data` (a CSV file in the public layout, a Hub dataset id, or None for
    nyu-mll/crows_pairs), only those of `bias_type` if given, the first `max_examples` of them."""
    if bias_type is not None and bias_type not in BIAS_TYPES:
        raise EvalError(f"`bias_type` {bias_type!r} is not a CrowS-Pairs bias type ({', '.join(BIAS_TYPES)})")
    if data is None:
        pairs = _from_hub(CROWS_PAIRS_REPO)
    elif Path(data).is_file():
        pairs = _from_csv(Path(data))
    elif "/" in str(data) and not Path(data).exists() and not str(data).endswith(".csv"):
        pairs = _from_hub(str(data))
    else:
        raise EvalError(f"CrowS-Pairs data {data!r} is neither a CSV file nor a Hub dataset id; pass --data "
                        "crows_pairs_anonymized.csv or leave it out for nyu-mll/crows_pairs")
    pairs = [p for p in pairs if bias_type is None or p.bias_type == bias_type]
    return pairs if max_examples is None else pairs[:int(max_examples)]


def _from_csv(path: Path) -> list[Pair]:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing or not reader.fieldnames or reader.fieldnames[0] != "":
                raise EvalError(f"{path} is not CrowS-Pairs' CSV layout (an unnamed index column, then "
                                f"{', '.join(COLUMNS)}, ...)")
            return [_checked(Pair(int(row[""]), row["sent_more"], row["sent_less"], row["stereo_antistereo"],
                                  row["bias_type"]), path) for row in reader]
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read CrowS-Pairs CSV {path}: {exc}") from exc


def _from_hub(repo: str) -> list[Pair]:
    """The Hub copy stores `stereo_antistereo` and `bias_type` as class labels and the index as `id`."""
    import datasets

    try:
        rows = datasets.load_dataset(repo, split="test")
    except Exception as exc:  # network, missing repo or split: all mean "cannot get CrowS-Pairs"
        raise EvalError(f"cannot load CrowS-Pairs from the Hub ({repo}): {exc}; "
                        "pass --data FILE with crows_pairs_anonymized.csv to run offline") from exc

    def label(column: str, value):
        feature = rows.features[column]
        return feature.int2str(value) if hasattr(feature, "int2str") and isinstance(value, int) else str(value)

    return [_checked(Pair(int(row["id"]), row["sent_more"], row["sent_less"], label("stereo_antistereo",
                                                                                    row["stereo_antistereo"]),
                          label("bias_type", row["bias_type"])), repo) for row in rows]


def _checked(pair: Pair, source) -> Pair:
    if pair.direction not in DIRECTIONS or pair.bias_type not in BIAS_TYPES:
        raise EvalError(f"{source}: pair {pair.index} has stereo_antistereo {pair.direction!r} and bias_type "
                        f"{pair.bias_type!r}; expected one of {DIRECTIONS} and one of {BIAS_TYPES}")
    if not pair.sent_more.strip() or not pair.sent_less.strip():
        raise EvalError(f"{source}: pair {pair.index} has an empty sentence")
    return pair
