"""Throughput of `generate` beside a minimal raw async HTTP client, same server, same requests.

A third column runs bare `litellm.acompletion` calls under a semaphore: every generate call goes
through LiteLLM, so that is generate's ceiling, and the gap between it and generate is what the
orchestration (limits, retries, journal, progress) costs.

The fake OpenAI-compatible server runs in its own process with a fixed latency; for each
concurrency both clients send the same planned prompts. Target: generate >= 90% of raw.

    python bench/bench_generate_throughput.py [--latency 0.2] [--concurrency 8 64 256] [--rounds 12]
        [--min-records 240] [--model openai/fake-model]

Each client also reports its CPU time per record (`time.process_time()` of this process, all
threads: LiteLLM prepares each request in a worker thread), since on a small machine CPU per
call, not latency, is what caps the LiteLLM-based clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"


def start_server(port: int, latency: float) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "tests.fake_llm", "--port", str(port), "--latency", str(latency)],
                              cwd=ROOT)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("fake server did not start")


def write_spec(folder: Path, num_records: int, concurrency: int, model: str) -> Path:
    spec = {"model": model, "templates": ["counter_stereotype_story"],
            "variables": {"domain": ["healthcare", "hiring and work", "education"], "bias_axis": ["gender", "age"]},
            "num_records": num_records, "concurrency": concurrency,
            "retries": {"max_attempts": 3, "backoff_base_s": 0.1, "timeout_s": 60}}
    path = folder / f"spec-{concurrency}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def request_bodies(spec_path: Path) -> list[dict]:
    from vdata_hub.generation.prompts import iter_planned_records
    from vdata_hub.generation.spec import load_spec

    loaded = load_spec(spec_path)
    sampling = loaded.spec.sampling
    return [{"model": loaded.spec.model.split("/", 1)[1], "temperature": sampling.temperature, "top_p": sampling.top_p,
             "max_tokens": sampling.max_tokens,
             "messages": [{"role": "system", "content": p.system_prompt}, {"role": "user", "content": p.prompt}]}
            for p in iter_planned_records(loaded)]


async def raw_litellm(base_url: str, spec_path: Path, concurrency: int) -> tuple[int, float]:
    """LiteLLM's own cost: acompletion under a semaphore, no retries, limits or journal."""
    from vdata_hub.generation.llm import import_litellm

    litellm = import_litellm()
    bodies = request_bodies(spec_path)
    gate = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(body):
        nonlocal ok
        async with gate:
            reply = await litellm.acompletion(**{**body, "model": "openai/" + body["model"]}, api_base=base_url,
                                              api_key="x", timeout=60, max_retries=0, num_retries=0)
            ok += bool(reply.choices[0].message.content)

    started = time.monotonic()
    await asyncio.gather(*(one(body) for body in bodies))
    return ok, time.monotonic() - started


async def raw_client(base_url: str, spec_path: Path, concurrency: int) -> tuple[int, float]:
    """The floor: aiohttp, a semaphore, one POST per planned record, JSON parsed, nothing else."""
    import aiohttp

    bodies = request_bodies(spec_path)
    gate = asyncio.Semaphore(concurrency)
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": "Bearer x"}) as session:
        async def one(body):
            nonlocal ok
            async with gate:
                async with session.post(f"{base_url}/chat/completions", json=body) as reply:
                    data = await reply.json()
                    ok += bool(data["choices"][0]["message"]["content"])

        started = time.monotonic()
        await asyncio.gather(*(one(body) for body in bodies))
        return ok, time.monotonic() - started


def run_generate(base_url: str, spec_path: Path, out: Path):
    from vdata_hub.generation.generate import generate

    started = time.monotonic()
    summary = generate(out=str(out), spec=str(spec_path), api_base=base_url, api_key="x")
    return summary, time.monotonic() - started


def timed(function, *args):
    """(result, CPU seconds of this process while it ran)."""
    cpu = time.process_time()
    result = function(*args)
    return result, time.process_time() - cpu


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--rounds", type=int, default=12, help="records = rounds × concurrency")
    parser.add_argument("--min-records", type=int, default=240,
                        help="at least this many records per concurrency (a short run at 8 is mostly noise)")
    parser.add_argument("--port", type=int, default=18790)
    parser.add_argument("--model", default="openai/fake-model",
                        help="an openai/ model name (the fake server answers any); a priced one such as "
                             "openai/gpt-4o-mini makes LiteLLM price each reply as in a real run")
    args = parser.parse_args()
    server = start_server(args.port, args.latency)
    base_url = f"http://127.0.0.1:{args.port}/v1"
    from vdata_hub.generation.llm import import_litellm

    litellm = import_litellm()  # import time and LiteLLM's lazy first-call set-up are not throughput
    asyncio.run(litellm.acompletion(model=args.model, messages=[{"role": "user", "content": "hi"}],
                                    api_base=base_url, api_key="x", max_retries=0))
    rows = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for concurrency in args.concurrency:
                records = max(args.rounds * concurrency, args.min_records)
                spec_path = write_spec(Path(folder), records, concurrency, args.model)
                load_before = load()
                (ok, raw_s), raw_cpu = timed(asyncio.run, raw_client(base_url, spec_path, concurrency))
                (ok_litellm, litellm_s), litellm_cpu = timed(asyncio.run, raw_litellm(base_url, spec_path, concurrency))
                (summary, total_s), generate_cpu = timed(run_generate, base_url, spec_path,
                                                         Path(folder) / f"out-{concurrency}")
                raw_rate, litellm_rate = ok / raw_s, ok_litellm / litellm_s
                cpu_ms = tuple(1000 * cpu / max(1, n) for cpu, n in
                               ((raw_cpu, ok), (litellm_cpu, ok_litellm), (generate_cpu, summary.records)))
                rows.append((concurrency, summary.records, raw_rate, litellm_rate, summary.records_per_s,
                             summary.records / total_s, cpu_ms, f"{load_before} → {load()}"))
                print(f"concurrency {concurrency}: raw aiohttp {raw_rate:.1f} rec/s, raw LiteLLM {litellm_rate:.1f}, "
                      f"generate {summary.records_per_s:.1f} ({100 * summary.records_per_s / raw_rate:.0f}% of raw, "
                      f"{100 * summary.records_per_s / litellm_rate:.0f}% of LiteLLM), end to end incl. dataset "
                      f"build {summary.records / total_s:.1f} rec/s; CPU ms/record raw {cpu_ms[0]:.2f}, "
                      f"LiteLLM {cpu_ms[1]:.2f}, generate {cpu_ms[2]:.2f}; load {rows[-1][-1]}", flush=True)
    finally:
        server.terminate()
        server.wait()
    print(f"\nmodel {args.model}, latency {args.latency} s, {os.cpu_count()} CPUs; command: python bench/bench_generate_throughput.py "
          + " ".join(sys.argv[1:]))
    print("| concurrency | records | raw aiohttp rec/s | raw LiteLLM rec/s | generate rec/s | generate / raw aiohttp "
          "| generate / raw LiteLLM | generate end to end rec/s | CPU ms/record raw / LiteLLM / generate | load |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for concurrency, records, raw_rate, litellm_rate, rate, total, cpu_ms, load_range in rows:
        print(f"| {concurrency} | {records} | {raw_rate:.1f} | {litellm_rate:.1f} | {rate:.1f} | "
              f"{100 * rate / raw_rate:.0f}% | {100 * rate / litellm_rate:.0f}% | {total:.1f} | "
              f"{' / '.join(f'{value:.1f}' for value in cpu_ms)} | {load_range} |")


if __name__ == "__main__":
    main()
