"""Batched CrowS-Pairs scoring vs one sentence a pass (bias-bench's generative procedure: one
forward pass per sentence, softmax, probabilities read token by token), same model, same run:
per-sentence score differences, identical decisions, and the speed-up.

    python bench/bench_crows_pairs_batched.py --model local --data ../shared/data/crows-pairs/crows_pairs_anonymized.csv \\
        --max-examples 200 --threads 1

`--model tiny` is the tests' random 2-layer GPT-2 (see bench_stereoset_batched.py); `local` is
SmolLM2-135M. `--threads` sets torch's threads for both sides.
"""

import argparse
import math
import sys
import time
from pathlib import Path

# This checkout's code, not a copy installed by `pip install .` from an older checkout (bench/ is
# sys.path[0] when a script runs, so an installed vdata_hub would otherwise win).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdata_hub.eval.crows_pairs_data import load_crows_pairs  # noqa: E402
from vdata_hub.eval.crows_pairs_run import evaluate_pairs  # noqa: E402
from vdata_hub.eval.likelihood import intrasentence_logprobs, official_intrasentence_scores  # noqa: E402
from vdata_hub.eval.models import load_model  # noqa: E402

from bench_stereoset_batched import TEST_DATA, code_version, cpu_model, tiny_gpt2  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--data", default=str(TEST_DATA / "crows-pairs" / "crows_pairs_subset.csv"))
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(tiny_gpt2() if args.model == "tiny" else args.model, args.device)
    pairs = load_crows_pairs(args.data, args.max_examples)
    sentences = [s for p in pairs for s in (p.sent_more, p.sent_less)]
    intrasentence_logprobs(lm.model, lm.tokenizer, sentences[:8], 8, lm.device)  # warm-up, model probes

    started = time.perf_counter()
    reference = [math.log(score) for score in official_intrasentence_scores(lm.model, lm.tokenizer, sentences,
                                                                            lm.device)]
    one_a_pass = time.perf_counter() - started
    started = time.perf_counter()
    distinct = sorted(set(sentences))  # what `vdata eval crows-pairs` does: each distinct sentence once
    logprobs = intrasentence_logprobs(lm.model, lm.tokenizer, distinct, args.batch_size, lm.device)
    score_of = {s: sum(lp) / len(lp) for s, lp in zip(distinct, logprobs)}
    batched_scores = [score_of[s] for s in sentences]
    batched = time.perf_counter() - started

    def rows(scores):
        return [{"index": p.index, "bias_type": p.bias_type, "stereo_antistereo": p.direction,
                 "sent_more_score": scores[2 * k], "sent_less_score": scores[2 * k + 1]} for k, p in enumerate(pairs)]

    differing = sum((a["sent_more_score"] > a["sent_less_score"]) != (b["sent_more_score"] > b["sent_less_score"])
                    for a, b in zip(rows(reference), rows(batched_scores)))
    diff = max(abs(a - b) for a, b in zip(reference, batched_scores))
    print(f"command: python {' '.join(sys.argv)}")
    print(f"model: {args.model} on {lm.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(pairs)} pairs, {len(sentences)} sentences ({len(distinct)} distinct); batch size {args.batch_size}")
    print(f"one sentence a pass {one_a_pass:.2f} s, batched {batched:.2f} s, speed-up {one_a_pass / batched:.1f}x")
    print(f"code: {code_version()}; cpu: {cpu_model()}; load average at the end "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"max |mean log-prob difference|: {diff:.2e}; pairs with a different decision: {differing}; "
          f"identical results: {evaluate_pairs(rows(reference)) == evaluate_pairs(rows(batched_scores))}")


if __name__ == "__main__":
    main()
