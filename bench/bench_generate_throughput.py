"""Throughput of `generate` beside a minimal raw async HTTP client, same server, same requests.

For each concurrency, the same planned prompts are sent, one client after the other, to one fake
OpenAI-compatible server (`python -m tests.fake_llm`, its own process):
- raw aiohttp: a semaphore, one POST per record, the JSON parsed: the floor any client pays;
- raw LiteLLM (with --litellm): bare `litellm.acompletion` calls under a semaphore in this
  process, no retries, limits or journal: what one process of LiteLLM can do;
- generate with each `--workers` value (0: the requests are sent from the generating process
  itself, as before worker processes existed; N: from N worker processes).
Targets (issue #15): at 0.2 s latency and concurrency 256, generate with 2 workers >= 1.7x its
records/s with 1; with log-normal latencies (median 2 s, long tail) at concurrency 64, 256 and
1024, generate >= 90% of the raw client.

    python bench/bench_generate_throughput.py --latency 0.2 --concurrency 256 --workers 0 1 2
    python bench/bench_generate_throughput.py --latency 2 --latency-sigma 0.75 --concurrency 64 256 1024 --workers 2

Records/s is over each client's request loop (generate: from the moment its workers have loaded
LiteLLM to the last reply); "end to end" adds generate's start-up and dataset build. CPU ms per
record is CPU time over the same loop divided by the records: this process's (all threads) for
the raw clients; for generate, `loop_cpu_s` of its run summary (the generating process and its
worker processes, from the end of their start-up to the last reply). The fake server's CPU is
not counted. With
--latency-sigma, the server draws each reply's latency from a log-normal with median --latency,
re-seeded before each client, so every client meets the same latencies in order of arrival.
Timings need a quiet machine: the load average before and after each client is printed with it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def start_server(port: int, latency: float, sigma: float = 0.0) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "tests.fake_llm", "--port", str(port), "--latency", str(latency),
                               "--latency-sigma", str(sigma)], cwd=ROOT)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("fake server did not start")


def reseed_latencies(port: int) -> None:
    """The same log-normal draws for the next client as for the one before."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/control", data=json.dumps({"latency_seed": 1}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def write_spec(folder: Path, num_records: int, concurrency: int, model: str, timeout_s: float) -> Path:
    spec = {"model": model, "templates": ["counter_stereotype_story"],
            "variables": {"domain": ["healthcare", "hiring and work", "education"], "bias_axis": ["gender", "age"]},
            "num_records": num_records, "concurrency": concurrency,
            "retries": {"max_attempts": 3, "backoff_base_s": 0.1, "timeout_s": timeout_s}}
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


async def raw_litellm(base_url: str, spec_path: Path, concurrency: int, timeout_s: float) -> tuple[int, float]:
    """LiteLLM's own cost: acompletion under a semaphore, no retries, limits or journal."""
    from vdata_hub.generation.llm_call import import_litellm

    litellm = import_litellm()
    bodies = request_bodies(spec_path)
    gate = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(body):
        nonlocal ok
        async with gate:
            reply = await litellm.acompletion(**{**body, "model": "openai/" + body["model"]}, api_base=base_url,
                                              api_key="x", timeout=timeout_s, max_retries=0, num_retries=0)
            ok += bool(reply.choices[0].message.content)

    started = time.monotonic()
    await asyncio.gather(*(one(body) for body in bodies))
    return ok, time.monotonic() - started


async def raw_client(base_url: str, spec_path: Path, concurrency: int, timeout_s: float) -> tuple[int, float]:
    """The floor: aiohttp, a semaphore, one POST per planned record, JSON parsed, nothing else."""
    import aiohttp

    bodies = request_bodies(spec_path)
    gate = asyncio.Semaphore(concurrency)
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": "Bearer x"},
                                     timeout=timeout) as session:
        async def one(body):
            nonlocal ok
            async with gate:
                async with session.post(f"{base_url}/chat/completions", json=body) as reply:
                    data = await reply.json()
                    ok += bool(data["choices"][0]["message"]["content"])

        started = time.monotonic()
        await asyncio.gather(*(one(body) for body in bodies))
        return ok, time.monotonic() - started


def run_generate(base_url: str, spec_path: Path, out: Path, workers: int):
    from vdata_hub.generation.generate import generate

    started = time.monotonic()
    summary = generate(out=str(out), spec=str(spec_path), api_base=base_url, api_key="x", workers=workers)
    return summary, time.monotonic() - started


def timed(function, *args):
    """(result, CPU seconds of this process, all threads, while it ran)."""
    cpu = time.process_time()
    result = function(*args)
    return result, time.process_time() - cpu


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per reply (the median with --latency-sigma)")
    parser.add_argument("--latency-sigma", type=float, default=0.0, help="> 0: log-normal latencies with this sigma")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[256])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="generate runs, one per value")
    parser.add_argument("--litellm", action="store_true", help="also time bare litellm.acompletion in this process")
    parser.add_argument("--rounds", type=int, default=6, help="records = rounds × concurrency")
    parser.add_argument("--min-records", type=int, default=480,
                        help="at least this many records per concurrency (a short run at 8 is mostly noise)")
    parser.add_argument("--port", type=int, default=18790)
    parser.add_argument("--model", default="openai/fake-model",
                        help="an openai/ model name (the fake server answers any); a priced one such as "
                             "openai/gpt-4o-mini makes LiteLLM price each reply as in a real run")
    args = parser.parse_args()
    timeout_s = max(60.0, 30 * args.latency * (1 + 4 * args.latency_sigma))
    server = start_server(args.port, args.latency, args.latency_sigma)
    base_url = f"http://127.0.0.1:{args.port}/v1"
    if args.litellm or 0 in args.workers:  # import and LiteLLM's lazy first-call set-up are not throughput
        from vdata_hub.generation.llm_call import import_litellm

        asyncio.run(import_litellm().acompletion(model=args.model, messages=[{"role": "user", "content": "hi"}],
                                                 api_base=base_url, api_key="x", max_retries=0))
    rows = []  # (concurrency, client, records, rec/s, end-to-end rec/s or None, CPU ms/record, load)

    def measure(concurrency: int, client: str, function, *call_args) -> None:
        reseed_latencies(args.port)
        before = load()
        result, cpu = timed(function, *call_args)
        if client.startswith("generate"):
            summary, total_s = result
            records, rate, end_to_end = summary.records, summary.records_per_s, summary.records / total_s
            cpu = summary.loop_cpu_s  # without start-up (loading LiteLLM) and the dataset build
            per_record = 1000 / max(1, records)
            split = (f" ({per_record * (cpu - summary.worker_cpu_s):.2f} + {per_record * summary.worker_cpu_s:.2f})"
                     if summary.workers else "")
        else:
            (records, seconds), end_to_end, split = result, None, ""
            rate = records / seconds
        cpu_ms = f"{1000 * cpu / max(1, records):.2f}{split}"
        rows.append((concurrency, client, records, rate, end_to_end, cpu_ms, f"{before} → {load()}"))
        print(f"concurrency {concurrency}, {client}: {records} records, {rate:.1f} rec/s"
              + (f" ({end_to_end:.1f} end to end)" if end_to_end else "")
              + f", CPU {cpu_ms} ms/record, load {rows[-1][6]}", flush=True)

    try:
        with tempfile.TemporaryDirectory() as folder:
            for concurrency in args.concurrency:
                records = max(args.rounds * concurrency, args.min_records)
                spec_path = write_spec(Path(folder), records, concurrency, args.model, timeout_s)
                measure(concurrency, "raw aiohttp", asyncio.run, raw_client(base_url, spec_path, concurrency, timeout_s))
                if args.litellm:
                    measure(concurrency, "raw LiteLLM", asyncio.run,
                            raw_litellm(base_url, spec_path, concurrency, timeout_s))
                for workers in args.workers:
                    measure(concurrency, f"generate, {workers} workers", run_generate, base_url, spec_path,
                            Path(folder) / f"out-{concurrency}-{workers}", workers)
    finally:
        server.terminate()
        server.wait()
    latency = (f"log-normal latency, median {args.latency} s, sigma {args.latency_sigma}" if args.latency_sigma
               else f"latency {args.latency} s")
    print(f"\nmodel {args.model}, {latency}, {os.cpu_count()} CPUs; command: python bench/bench_generate_throughput.py "
          + " ".join(sys.argv[1:]))
    print("| concurrency | client | records | rec/s | % of raw aiohttp | × generate 1 worker | end to end rec/s "
          "| CPU ms/record (generate's process + workers) | load before → after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for concurrency, client, records, rate, end_to_end, cpu_ms, load_range in rows:
        raw = next(r[3] for r in rows if r[0] == concurrency and r[1] == "raw aiohttp")
        one = next((r[3] for r in rows if r[0] == concurrency and r[1] == "generate, 1 workers"), None)
        speedup = f"{rate / one:.2f}×" if one and client.startswith("generate") else ""
        print(f"| {concurrency} | {client.replace('1 workers', '1 worker')} | {records} | {rate:.1f} | "
              f"{100 * rate / raw:.0f}% | {speedup} | {f'{end_to_end:.1f}' if end_to_end else ''} | {cpu_ms} "
              f"| {load_range} |")


if __name__ == "__main__":
    main()
