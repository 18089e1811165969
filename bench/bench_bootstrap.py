"""Bootstrap intervals over the full StereoSet dev set and over CrowS-Pairs: time for N resamples
(the issue's target: 1,000 resamples of StereoSet dev under 5 s). Scores are drawn at random with a
fixed seed: the time does not depend on them.

    python bench/bench_bootstrap.py --stereoset ../shared/data/stereoset/dev.json \\
        --crows-pairs ../shared/data/crows-pairs/crows_pairs_anonymized.csv --resamples 1000
"""

import argparse
import random
import sys
import time
from pathlib import Path

# This checkout's code, not a copy installed by `pip install .` from an older checkout (bench/ is
# sys.path[0] when a script runs, so an installed vdata_hub would otherwise win).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdata_hub.eval import crows_pairs_run  # noqa: E402
from vdata_hub.eval.crows_pairs_data import load_crows_pairs  # noqa: E402
from vdata_hub.eval.scoring import confidence_intervals  # noqa: E402
from vdata_hub.eval.stereoset_data import load_stereoset  # noqa: E402

TEST_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stereoset", default=str(TEST_DATA / "stereoset" / "dev-subset.json"))
    parser.add_argument("--crows-pairs", default=str(TEST_DATA / "crows-pairs" / "crows_pairs_subset.csv"))
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = random.Random(0)
    examples = load_stereoset(args.stereoset)
    score_of = {s.id: rng.random() for rows in examples.values() for e in rows for s in e.sentences}
    pairs = load_crows_pairs(args.crows_pairs)
    rows = [{"index": p.index, "bias_type": p.bias_type, "stereo_antistereo": p.direction,
             "sent_more_score": rng.random(), "sent_less_score": rng.random()} for p in pairs]
    print(f"command: python {' '.join(sys.argv)}")
    n = sum(len(v) for v in examples.values())
    for name, run in (("StereoSet", lambda: confidence_intervals(examples, score_of, args.resamples)),
                      ("CrowS-Pairs", lambda: crows_pairs_run.confidence_intervals(rows, args.resamples))):
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        size = f"{n} examples, 11 cells" if name == "StereoSet" else f"{len(rows)} pairs"
        print(f"{name}: {args.resamples} resamples over {size}: "
              f"{min(times):.2f} s best of {args.repeat} ({', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
