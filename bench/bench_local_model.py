"""Embedded model throughput: `vdata generate --model local` beside llama.cpp itself.

Both sides get the same prompts (the `demo` spec's planned records), the same sampling
parameters and max_tokens, the same GGUF file, context size and thread count, in the same run:
- generate: the real CLI in a subprocess (llama.cpp's server + LiteLLM + dataset writing);
  generated tokens are the `output_tokens` column of the dataset it wrote;
- llama.cpp: `llama_cpp.Llama.create_chat_completion` in this process, one prompt after the other.
Tokens/s are reported twice: in steady state (the tokens of records 2..N over the time from the
first reply to the last: no start-up, no first-request warm-up; generate's side from the
records' `created_at`, to the second) and end to end (including imports, model load or server
start and, for generate, writing the dataset), since a short run pays start-up once.

    python bench/bench_local_model.py --records 12 --max-tokens 128
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from vdata_hub.generation.local_model import DEFAULT_N_CTX, default_threads, embedded_model_path  # noqa: E402
from vdata_hub.generation.prompts import plan_records  # noqa: E402
from vdata_hub.generation.spec import apply_overrides, find_spec_file, load_spec  # noqa: E402


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

    rows = sorted(load_from_disk(str(out)).to_list(), key=lambda row: row["created_at"])
    tokens = sum(row["output_tokens"] for row in rows)
    span = (datetime.fromisoformat(rows[-1]["created_at"]) - datetime.fromisoformat(rows[0]["created_at"]))
    steady = sum(row["output_tokens"] for row in rows[1:]) / span.total_seconds()
    return {"records": len(rows), "output_tokens": tokens, "wall_s": wall, "steady": steady}


def run_llama_cpp(spec_path: Path) -> dict:
    from llama_cpp import Llama

    from vdata_hub.generation.llama_server import disable_extra_buffers

    disable_extra_buffers()  # as the server does (AMX kernels crash on some VMs)

    loaded = load_spec(spec_path)
    planned = plan_records(loaded)
    sampling = loaded.spec.sampling
    started = time.perf_counter()
    llm = Llama(model_path=str(embedded_model_path()), n_ctx=DEFAULT_N_CTX, n_threads=default_threads(),
                n_threads_batch=default_threads(), verbose=False)
    tokens = []
    first_reply_at = None
    for record in planned:
        messages = [{"role": "system", "content": record.system_prompt}, {"role": "user", "content": record.prompt}]
        reply = llm.create_chat_completion(messages=messages, temperature=sampling.temperature,
                                           top_p=sampling.top_p, max_tokens=sampling.max_tokens)
        tokens.append(reply["usage"]["completion_tokens"])
        first_reply_at = first_reply_at or time.perf_counter()
    done = time.perf_counter()
    return {"records": len(planned), "output_tokens": sum(tokens), "wall_s": done - started,
            "steady": sum(tokens[1:]) / (done - first_reply_at)}


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
    for name, side in (("llama.cpp direct", raw), ("vdata generate", gen)):
        print(f"{name:17}: {side['output_tokens']} tokens in {side['records']} records, "
              f"{side['steady']:.1f} tokens/s steady, "
              f"{side['output_tokens'] / side['wall_s']:.1f} tokens/s end to end ({side['wall_s']:.1f} s)")
    print(f"generate / llama.cpp: {gen['steady'] / raw['steady']:.2f} steady, "
          f"{(gen['output_tokens'] / gen['wall_s']) / (raw['output_tokens'] / raw['wall_s']):.2f} end to end")


if __name__ == "__main__":
    main()
