"""StereoSet examples (from the Hub or the original JSON file) and predictions files in
StereoSet's official format, so results join with other tools by sentence id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vdata_hub.errors import EvalError

STEREOSET_REPO = "McGill-NLP/stereoset"
TASKS = ("intrasentence", "intersentence")
LABELS = ("stereotype", "anti-stereotype", "unrelated")
# McGill-NLP/stereoset stores gold labels as a ClassLabel.
HUB_LABELS = {0: "anti-stereotype", 1: "stereotype", 2: "unrelated"}


@dataclass(frozen=True)
class Sentence:
    id: str
    text: str
    gold_label: str


@dataclass(frozen=True)
class Example:
    id: str
    task: str
    target: str
    bias_type: str
    context: str
    sentences: tuple[Sentence, ...]

    def sentence(self, gold_label: str) -> Sentence:
        return next(s for s in self.sentences if s.gold_label == gold_label)


def load_stereoset(data: str | None = None, max_examples: int | None = None,
                   tasks: tuple[str, ...] = TASKS, shard: str | None = None) -> dict[str, list[Example]]:
    """Examples per task: `data` is a JSON file in the original layout, a Hub dataset id with
    the McGill-NLP/stereoset layout, or None for McGill-NLP/stereoset itself. `shard` ("I/K" or
    "I,J/K") keeps the examples whose position in their task is I (or J) modulo K."""
    if data is None:
        examples = _from_hub(STEREOSET_REPO, tasks)
    elif Path(data).is_file():
        examples = _from_json(Path(data), tasks)
    elif "/" in str(data) and not Path(data).exists() and not str(data).endswith(".json"):
        examples = _from_hub(str(data), tasks)
    else:
        raise EvalError(f"StereoSet data {data!r} is neither a JSON file nor a Hub dataset id; "
                        "pass --data dev.json (original layout) or leave it out for McGill-NLP/stereoset")
    limit = None if max_examples is None else int(max_examples)
    keep = parse_shard(shard)
    return {task: [_checked(e) for i, e in enumerate(rows[:limit]) if keep(i)] for task, rows in examples.items()}


def parse_shard(shard: str | None):
    """"I/K" or "I,J/K" -> a test on an example's position (so a long run can be split into
    pieces and their predictions files scored together afterwards)."""
    if shard is None:
        return lambda i: True
    try:
        picked, total = str(shard).split("/")
        k = int(total)
        indices = {int(i) for i in picked.split(",")}
        if k < 1 or not all(0 <= i < k for i in indices):
            raise ValueError
    except ValueError:
        raise EvalError(f"--shard {shard!r} is not I/K or I,J/K with 0 <= I < K (e.g. 0/4)") from None
    return lambda i: i % k in indices


def _from_json(path: Path, tasks) -> dict[str, list[Example]]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        data = payload["data"]
        return {task: [_example(task, row, row["sentences"]) for row in data[task]] for task in tasks}
    except (ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"{path} is not StereoSet's original JSON layout "
                        f"({{'data': {{'intrasentence': [...], 'intersentence': [...]}}}}): {exc}") from exc


def _from_hub(repo: str, tasks) -> dict[str, list[Example]]:
    import datasets

    examples = {}
    for task in tasks:
        try:
            rows = datasets.load_dataset(repo, task, split="validation")
        except Exception as exc:  # network, missing repo or config: all mean "cannot get StereoSet"
            raise EvalError(f"cannot load StereoSet {task} from the Hub ({repo}): {exc}; "
                            "pass --data FILE with StereoSet's JSON to run offline") from exc
        examples[task] = [_example(task, row, _hub_sentences(row["sentences"])) for row in rows]
    return examples


def _hub_sentences(columns: dict) -> list[dict]:
    """The Hub stores sentences column-wise ({"sentence": [...], "id": [...], "gold_label": [...]})."""
    return [{"id": sid, "sentence": text, "gold_label": HUB_LABELS.get(label, label)}
            for sid, text, label in zip(columns["id"], columns["sentence"], columns["gold_label"])]


def _example(task: str, row: dict, sentences: list[dict]) -> Example:
    return Example(id=str(row["id"]), task=task, target=str(row["target"]), bias_type=str(row["bias_type"]),
                   context=str(row["context"]),
                   sentences=tuple(Sentence(str(s["id"]), str(s["sentence"]), str(s["gold_label"]))
                                   for s in sentences))


def _checked(example: Example) -> Example:
    labels = sorted(s.gold_label for s in example.sentences)
    if labels != sorted(LABELS):
        raise EvalError(f"StereoSet example {example.id} has gold labels {labels}; "
                        "each example needs one stereotype, one anti-stereotype and one unrelated sentence")
    return example


def write_predictions(path: str | Path, scores: dict[str, list[tuple[str, float]]]) -> Path:
    """StereoSet's official predictions file: {"intrasentence": [{"id", "score"}], ...}."""
    payload = {task: [{"id": sid, "score": float(score)} for sid, score in rows] for task, rows in scores.items()}
    path = Path(path)
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def read_predictions(path) -> dict[str, dict[str, float]]:
    """Sentence id -> score per task, from a file in StereoSet's official predictions format, or
    several (a list, or paths joined by commas), e.g. one per --shard piece of a run."""
    paths = path.split(",") if isinstance(path, str) else [path] if isinstance(path, Path) else list(path)
    merged: dict[str, dict[str, float]] = {}
    for one in paths:
        for task, scores in _read_one_predictions(one).items():
            known = merged.setdefault(task, {})
            clash = next((sid for sid, score in scores.items() if known.get(sid, score) != score), None)
            if clash is not None:
                raise EvalError(f"sentence {clash} has two different scores in {', '.join(map(str, paths))}; "
                                "merge only predictions files of the same model")
            known.update(scores)
    return merged


def _read_one_predictions(path: str | Path) -> dict[str, dict[str, float]]:
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        tasks = {task: {str(row["id"]): float(row["score"]) for row in payload[task]}
                 for task in TASKS if task in payload}
    except FileNotFoundError as exc:
        raise EvalError(f"predictions file {path} not found") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"{path} is not a StereoSet predictions file "
                        f"({{'intrasentence': [{{'id': ..., 'score': ...}}], ...}}): {exc}") from exc
    if not tasks:
        raise EvalError(f"{path} has neither 'intrasentence' nor 'intersentence' predictions")
    return tasks


def references(examples: list[Example]) -> list[dict]:
    """One reference per sentence, the input the `evaluate` module takes beside the scores."""
    return [{"id": s.id, "example_id": e.id, "task": e.task, "target": e.target, "bias_type": e.bias_type,
             "gold_label": s.gold_label} for e in examples for s in e.sentences]


def examples_from_references(refs: list[dict]) -> dict[str, list[Example]]:
    """Inverse of `references`: rebuild examples (without texts) from per-sentence references."""
    grouped: dict[tuple[str, str], dict] = {}
    for ref in refs:
        key = (ref["task"], ref["example_id"])
        entry = grouped.setdefault(key, {"row": ref, "sentences": []})
        entry["sentences"].append(Sentence(ref["id"], "", ref["gold_label"]))
    examples: dict[str, list[Example]] = {}
    for (task, example_id), entry in grouped.items():
        row = entry["row"]
        examples.setdefault(task, []).append(_checked(Example(example_id, task, row["target"], row["bias_type"],
                                                              "", tuple(entry["sentences"]))))
    return examples
