"""Client cost of a batch run: CPU per record and peak RSS of `vdata gen OUT SPEC --batch`
(target: peak RSS < 400 MB at 100,000 records), against the fake server's OpenAI batch API
through LiteLLM.

Two processes, as a user would run them: the first submits and returns (`--batch`), the second
waits for the batches and collects them into the dataset (`--batch --wait`). Each one's CPU
(user + system) and peak RSS come from the kernel (wait4's rusage); the fake server runs in its
own process and is not counted.

    python bench/bench_generate_batch.py [--records 100000] [--finish-s 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_generate_throughput import start_server  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def control(port: int, settings: dict) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/control", data=json.dumps(settings).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=30) as reply:
        return json.loads(reply.read())


def timed(command: list[str]) -> dict:
    """Run a command to its end; its wall time, CPU seconds and peak RSS (MB) from wait4."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])}... exited with {process.returncode}")
    return {"wall_s": round(time.monotonic() - started, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--finish-s", type=float, default=5.0, help="seconds the fake provider takes per batch")
    parser.add_argument("--port", type=int, default=None, help="the fake server's port (default: a free one)")
    args = parser.parse_args()
    args.port = args.port or free_port()  # a fixed port may hold another checkout's fake server
    server = start_server(args.port, 0.0)
    try:
        control(args.port, {"batch_finish_s": args.finish_s, "batch_finalizing_s": 1.0})
        with tempfile.TemporaryDirectory() as folder:
            spec = {"model": "openai/gpt-4o-mini", "templates": ["counter_stereotype_story"],
                    "variables": {"domain": ["healthcare", "hiring and work", "education", "sports"],
                                  "bias_axis": ["gender", "age", "religion"]},
                    "num_records": args.records, "batch": True, "batch_options": {"poll_s": 1.0}}
            spec_path = Path(folder) / "spec.yaml"
            spec_path.write_text(yaml.safe_dump(spec))
            base = [sys.executable, "-m", "vdata_hub", "gen", str(Path(folder) / "out"), str(spec_path),
                    "--api-base", f"http://127.0.0.1:{args.port}/v1", "-k", "x", "-q", "--no-donate-prompt"]
            submit = timed(base)
            collect = timed(base + ["--wait"])
            served = stats(args.port)
            summary = json.loads((Path(folder) / "out" / "run_summary.json").read_text())
    finally:
        server.terminate()
        server.wait()
    records = summary["records"]
    # a record answered twice was refused by the quality filters the first time and asked again,
    # as a real-time run would; a submission while an earlier one may still answer would show here too
    print(json.dumps({"submit": submit, "collect": collect, "records": records, "batches": served["batches"],
                      "answered_twice": len(served["batch_answered_twice"]),
                      "submitted_twice": len(served["batch_submitted_twice"])}))
    print(f"\ncommand: python bench/bench_generate_batch.py {' '.join(sys.argv[1:])}")
    print("| stage | records | wall (s) | CPU (s) | CPU per record (ms) | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for name, figures in (("submit (`--batch`)", submit), ("wait + collect (`--batch --wait`)", collect)):
        print(f"| {name} | {records:,} | {figures['wall_s']} | {figures['cpu_s']} | "
              f"{figures['cpu_s'] * 1000 / max(records, 1):.3f} | {figures['peak_rss_mb']} |")
    total_cpu = submit["cpu_s"] + collect["cpu_s"]
    print(f"| both | {records:,} | {submit['wall_s'] + collect['wall_s']:.1f} | {total_cpu:.2f} | "
          f"{total_cpu * 1000 / max(records, 1):.3f} | {max(submit['peak_rss_mb'], collect['peak_rss_mb'])} |")


if __name__ == "__main__":
    main()
