"""The folder a benchmark run writes (StereoSet, CrowS-Pairs): results.json, scores.jsonl (one row
per scored example) and run.json (what ran), written and read back the same way for both, so
`eval report --reuse` can pick up any finished stage."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FinishedRun:
    """A benchmark's results, the folder they are in, and what ran (run.json)."""

    results: dict
    output: Path
    meta: dict = field(default_factory=dict)

    @classmethod
    def load(cls, output):
        """A finished run read back from its folder (results.json and run.json)."""
        out = Path(output)
        return cls(results=json.loads((out / "results.json").read_text(encoding="utf-8")), output=out,
                   meta=json.loads((out / "run.json").read_text(encoding="utf-8")))


def write_run(out: Path, results: dict, rows: list[dict], meta: dict) -> None:
    """results.json, scores.jsonl and run.json into `out` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    with (out / "scores.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_rows(output) -> list[dict]:
    """The per-example rows of a finished run (its scores.jsonl)."""
    lines = (Path(output) / "scores.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]
