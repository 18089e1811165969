"""Throughput of the content-side tools on synthetic rows: `stats` over a local dataset and
`counterfactuals` per row. Prints the figures and the command that produced them.

    python bench/bench_prompt_library.py --rows 20000
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from vdata_hub.generation.augment import counterfactuals
from vdata_hub.generation.prompts import plan_records
from vdata_hub.generation.records import Record, records_to_table
from vdata_hub.generation.spec import load_spec
from vdata_hub.repo.stats import stats

SENTENCES = [
    "{name} had worked at the clinic for twelve years when the scheduling system failed.",
    "She read the logs over lunch, called her brother and asked him whether her fix made sense.",
    "He thanked her in front of everyone, and his praise was brief; hers was the work.",
    "The {group_word} nurse and a colleague swapped shifts so the ward stayed covered.",
    "By morning the patients had their appointments back and the queue moved fast.",
    "Context: two applicants met the landlord on the same afternoon. Answer: Cannot be determined.",
    "They checked income statements and credit histories against the lender's criteria.",
]
GROUP_WORDS = ["Muslim", "Christian", "Black", "White", "deaf", "autistic", "Mexican", "wealthy", "teenage"]


def synthetic_rows(count: int) -> list[dict]:
    planned = plan_records(load_spec("full"))
    rng = random.Random(0)
    rows = []
    for index in range(count):
        plan = planned[index % len(planned)]
        text = " ".join(rng.choice(SENTENCES) for _ in range(8)).format(
            name=rng.choice(["Amina", "Kofi", "Mary", "James"]), group_word=rng.choice(GROUP_WORDS))
        rows.append(Record(
            id=f"{plan.id}{index}", text=text, prompt=plan.prompt, system_prompt=plan.system_prompt,
            template=plan.template, template_sha=plan.template_sha, variables=json.dumps(plan.variables),
            bias_axis=plan.bias_axis, domain=plan.domain, task=plan.task, group=plan.group, model="bench",
            params="{}", input_tokens=0, output_tokens=0, cost_usd=0.0, finish_reason="stop",
            created_at="2026-01-01T00:00:00Z").to_dict())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    from datasets import Dataset

    rows = synthetic_rows(args.rows)
    chars = sum(len(r["text"]) for r in rows) / len(rows)
    started = time.perf_counter()
    variants = [v for row in rows[:2000] for v in counterfactuals(row, None)]
    augment_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ds"
        Dataset(records_to_table(rows)).save_to_disk(str(path))
        started = time.perf_counter()
        result = stats(str(path))
        stats_s = time.perf_counter() - started
    print(f"command: python bench/bench_prompt_library.py --rows {args.rows}   (python {sys.version.split()[0]})")
    print(f"rows: {len(rows)}, mean text length {chars:.0f} chars")
    print(f"counterfactuals: 2000 rows -> {len(variants)} variants in {augment_s:.2f} s "
          f"({2000 / augment_s:.0f} rows/s)")
    print(f"stats: {result.rows} rows in {stats_s:.2f} s ({result.rows / stats_s:.0f} rows/s), "
          f"{len(result.imbalances)} imbalances flagged")


if __name__ == "__main__":
    main()
