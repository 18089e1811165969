"""Peak RSS of `generate` by record count: it must stay under 400 MB at 100,000 records and not
grow with the count (records stream to the journal; the plan is lazy; the dataset is built in
batches).

Each count runs `python -m vdata_hub generate` as its own process against the fake server with
no latency; peak RSS comes from the kernel (wait4's ru_maxrss), and RSS is sampled as the run
goes to show whether it climbs.

    python bench/bench_generate_memory.py [--records 20000 100000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_generate_throughput import start_server  # noqa: E402


def journal_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def measure(records: int, concurrency: int, base_url: str, folder: Path) -> dict:
    spec = {"model": "openai/fake-model", "templates": ["counter_stereotype_story"],
            "variables": {"domain": ["healthcare", "hiring and work", "education", "sports"],
                          "bias_axis": ["gender", "age", "religion"]},
            "num_records": records, "concurrency": concurrency}
    spec_path = folder / f"spec-{records}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    out = folder / f"out-{records}"
    command = [sys.executable, "-m", "vdata_hub", "generate", str(out), str(spec_path), "--api-base", base_url,
               "-k", "x", "-q"]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    watched = psutil.Process(process.pid)
    samples = {}  # fraction of records done -> RSS MB
    last_print = time.monotonic()
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # reaps it with its rusage
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            break
        try:
            rss = watched.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
        done = journal_lines(out / "progress.jsonl") / records
        quarter = min(4, int(done * 4))
        samples[quarter] = max(samples.get(quarter, 0), round(rss))
        if time.monotonic() - last_print >= 60:  # a long run shows its progress as it goes
            last_print = time.monotonic()
            print(f"  {records:,} records: {done:.0%} done, RSS {rss:.0f} MB", flush=True)
        time.sleep(1)
    if process.returncode != 0:
        raise RuntimeError(f"generate exited with {process.returncode}")
    peak = usage.ru_maxrss / 1024
    return {"records": records, "peak_rss_mb": round(peak), "wall_s": round(time.monotonic() - started, 1),
            "rss_by_quarter": [samples.get(q) for q in range(5)], "rows": journal_lines(out / "progress.jsonl")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--port", type=int, default=18791)
    args = parser.parse_args()
    server = start_server(args.port, 0.0)
    results = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            for records in args.records:
                result = measure(records, args.concurrency, f"http://127.0.0.1:{args.port}/v1", Path(folder))
                results.append(result)
                print(result, flush=True)
    finally:
        server.terminate()
        server.wait()
    print("\ncommand: python bench/bench_generate_memory.py " + " ".join(sys.argv[1:]))
    print("| records | peak RSS (MB) | RSS at 0/25/50/75/100% of records (MB) | wall (s) |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['records']:,} | {r['peak_rss_mb']} | {' / '.join(str(v) for v in r['rss_by_quarter'])} "
              f"| {r['wall_s']} |")


if __name__ == "__main__":
    main()
