"""Embedded model throughput: `vdata generate --model local` beside llama.cpp itself.

Both sides get the same prompts (the `demo` spec's planned records), the same sampling
parameters and max_tokens, the same GGUF file, context size and thread count, in the same run:
- generate: the real CLI in a subprocess (llama.cpp's server + LiteLLM + dataset writing);
  generated tokens are the `output_tokens` column of the dataset it wrote;
- llama.cpp: `llama_cpp.Llama.create_chat_completion` in this process, one prompt after the other.
Tokens/s are reported twice: over generation only and end to end (including model load / server
start), since a short run pays start-up once.

    python bench/bench_local_model.py --records 12 --max-tokens 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from vdata_hub.local_model import DEFAULT_N_CTX, default_threads, embedded_model_path  # noqa: E402
from vdata_hub.prompts import plan_records  # noqa: E402
from vdata_hub.spec import apply_overrides, find_spec_file, load_spec  # noqa: E402


def bench_spec(folder: Path, records: int, max_tokens: int, concurrency: int) -> Path:
    spec = yaml.safe_load(find_spec_file("demo").read_text())
    spec.update(model="local", num_records=records, concurrency=concurrency)
    spec["sampling"]["max_tokens"] = max_tokens
    spec["quality"] = {"min_chars": 1}  # measure throughput, keep every reply
    path = folder / "bench-spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_generate(spec_path: Path, out: Path) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vdata_hub", "generate", str(out), str(spec_path), "--quiet",
                    "--no-donate-prompt"], check=True)
    wall = time.perf_counter() - started
    from datasets import load_from_disk

    rows = load_from_disk(str(out)).to_list()
    summary_path = out / "run_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    tokens = sum(row["output_tokens"] for row in rows)
    return {"records": len(rows), "output_tokens": tokens, "wall_s": wall, "summary_wall_s": summary.get("wall_s")}


def run_llama_cpp(spec_path: Path) -> dict:
    from llama_cpp import Llama

    loaded = load_spec(spec_path)
    planned = plan_records(loaded)
    sampling = loaded.spec.sampling
    started = time.perf_counter()
    llm = Llama(model_path=str(embedded_model_path()), n_ctx=DEFAULT_N_CTX, n_threads=default_threads(),
                n_threads_batch=default_threads(), verbose=False)
    loaded_at = time.perf_counter()
    tokens = 0
    for record in planned:
        messages = [{"role": "system", "content": record.system_prompt}, {"role": "user", "content": record.prompt}]
        reply = llm.create_chat_completion(messages=messages, temperature=sampling.temperature,
                                           top_p=sampling.top_p, max_tokens=sampling.max_tokens)
        tokens += reply["usage"]["completion_tokens"]
    done = time.perf_counter()
    return {"records": len(planned), "output_tokens": tokens, "wall_s": done - started, "gen_s": done - loaded_at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=2, help="generate's concurrency (the server queues)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vdata-bench-") as folder:
        spec_path = bench_spec(Path(folder), args.records, args.max_tokens, args.concurrency)
        apply_overrides(load_spec(spec_path))  # validate before timing anything
        raw = run_llama_cpp(spec_path)
        gen = run_generate(spec_path, Path(folder) / "out")
    command = f"python bench/bench_local_model.py --records {args.records} --max-tokens {args.max_tokens}"
    print(f"command: {command}")
    print(f"model: {embedded_model_path().name}, n_ctx {DEFAULT_N_CTX}, threads {default_threads()}, "
          f"{args.records} records, max_tokens {args.max_tokens}")
    print(f"llama.cpp direct : {raw['output_tokens']} tokens, {raw['output_tokens'] / raw['gen_s']:.1f} tokens/s "
          f"generating, {raw['output_tokens'] / raw['wall_s']:.1f} tokens/s incl. load ({raw['wall_s']:.1f} s)")
    line = (f"vdata generate   : {gen['output_tokens']} tokens in {gen['records']} records, "
            f"{gen['output_tokens'] / gen['wall_s']:.1f} tokens/s end to end ({gen['wall_s']:.1f} s)")
    if gen["summary_wall_s"]:
        run_s = gen["summary_wall_s"]
        line += f", {gen['output_tokens'] / run_s:.1f} tokens/s over the run ({run_s:.1f} s)"
    print(line)
    print(f"ratio (end to end): {gen['output_tokens'] / gen['wall_s'] / (raw['output_tokens'] / raw['wall_s']):.2f}")


if __name__ == "__main__":
    main()
