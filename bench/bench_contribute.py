"""Benchmark `vdata contribute` against the Hub emulator.

1. Contributing N rows (default 200,000): wall time and peak RSS of `contribute` beside
   `Dataset.push_to_hub(create_pr=True)` of the same rows to the same emulator, each in its own
   process (peak RSS from /proc/self/status VmHWM), in the same run.
2. The duplicate check against a main branch of M rows (default 1,000,000): main is built with
   plain commits, its duplicate index with `vdata reindex` (timed), then the N rows are contributed
   onto it: bytes of main read (counted at the HTTP level from the responses' Content-Length, and
   by the index reader itself) against the total size of main's shards.

Run from the repository root:
    .venv/bin/python bench/bench_contribute.py [--rows 200000] [--main-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_bench_write_token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(endpoint: str, home: str) -> dict:
    return {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN, "HF_HOME": home, "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT)}


def make_table(rows: int, seed: int):
    """Rows shaped like generated ones: ~100-word texts, prompts, provenance."""
    import numpy as np
    import pyarrow as pa

    from vdata_hub.generation.records import ARROW_SCHEMA, row_ids, text_hashes

    rng = np.random.default_rng(seed)
    vocabulary = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "tu", "ve", "zo")
                  for b in map(str, range(600))]
    lengths = rng.integers(60, 140, rows)
    picks = rng.integers(0, len(vocabulary), int(lengths.sum())).tolist()
    texts, at = [], 0
    for length in lengths.tolist():
        texts.append(" ".join(vocabulary[i] for i in picks[at:at + length]).capitalize() + ".")
        at += length
    axes = np.array(["gender", "religion", "race", "profession", "age", "disability"])[rng.integers(0, 6, rows)]
    plan_keys = [f"{seed:02d}-{i:08d}" for i in range(rows)]
    text_array = pa.array(texts, pa.string())
    hashes = text_hashes(text_array)
    columns = {
        "id": row_ids(hashes.to_numpy()), "plan_key": pa.array(plan_keys), "text": text_array,
        "prompt": pa.array([f"Write a short story, about 120 words, in which a person from group {i % 48} "
                            f"works as a {('nurse', 'engineer', 'pilot', 'teacher')[i % 4]} and the story avoids "
                            f"stereotypes about them. Make it concrete and kind. Variant {i}." for i in range(rows)]),
        "system_prompt": pa.array(["You write fair, specific, stereotype-free prose."] * rows),
        "template": pa.array(["counter_stereotype_story"] * rows), "template_sha": pa.array(["a" * 64] * rows),
        "variables": pa.array([json.dumps({"group": f"group-{i % 48}", "profession": "nurse"}) for i in range(rows)]),
        "bias_axis": pa.array(axes.tolist()), "domain": pa.array(["healthcare"] * rows),
        "task": pa.array(["story"] * rows), "group": pa.array([f"group-{i % 48}" for i in range(rows)]),
        "model": pa.array(["openai/gpt-4o-mini"] * rows), "params": pa.array(['{"temperature":0.9}'] * rows),
        "input_tokens": pa.array(rng.integers(40, 80, rows)), "output_tokens": pa.array(lengths * 4 // 3),
        "cost_usd": pa.array(lengths * 1e-6), "finish_reason": pa.array(["stop"] * rows),
        "created_at": pa.array(["2026-11-29T00:00:00Z"] * rows), "generator_version": pa.array(["0.1.0"] * rows),
        "spec_sha": pa.array(["b" * 64] * rows), "augmented": pa.array([False] * rows),
        "source_id": pa.array([""] * rows), "flags": pa.array([[]] * rows, pa.list_(pa.string())),
        "text_hash": hashes,
    }
    return pa.Table.from_pydict(columns, schema=ARROW_SCHEMA)


def run_child(args: list[str], env: dict, script: str = __file__) -> dict:
    """Run this script (or another bench script) in a child process; return its JSON result plus
    wall time and peak RSS."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    if "profile" in args:
        print(proc.stderr[-12000:], flush=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 2)
    return result


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's peak from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_result(extra: dict) -> None:
    peak = peak_rss_mib()
    print(json.dumps({**extra, "peak_rss_mib": round(peak, 1)}))


def child_push(out: str, repo: str) -> None:
    from datasets import load_from_disk

    dataset = load_from_disk(out)
    start = time.perf_counter()
    dataset.push_to_hub(repo, create_pr=True)
    child_result({"op_s": round(time.perf_counter() - start, 2)})


def served_bytes(pattern: str) -> dict:
    """Counts GET /resolve/ responses whose URL contains `pattern` (bytes: their Content-Length)."""
    from huggingface_hub.utils import get_session

    from vdata_hub.hub import use_timeouts

    use_timeouts()  # vdata's client factory first: setting it later would drop the hook with the old client
    served = {"bytes": 0, "requests": 0}

    def count(response):
        url = str(response.request.url)
        if "/resolve/" in url and pattern in url and response.request.method == "GET":
            served["bytes"] += int(response.headers.get("content-length", 0))
            served["requests"] += 1

    get_session().event_hooks["response"].append(count)
    return served


def child_contribute(out: str, repo: str) -> None:
    from vdata_hub.repo.contribute import contribute

    served = served_bytes("/index/")
    start = time.perf_counter()
    result = contribute(out, repo=repo)
    index = result.main_index
    child_result({"op_s": round(time.perf_counter() - start, 2), "pr": result.pr_url,
                  "accepted": result.report.accepted,
                  "stages_s": {k: round(v, 2) for k, v in result.seconds.items()},
                  "index": {"runs": len(index.runs), "rows": index.rows, "bytes_read": index.bytes_read,
                            "requests": index.requests, "bytes_total": index.bytes_total,
                            "bytes_served_http": served["bytes"], "resolve_requests": served["requests"]}})


def child_baseline() -> None:
    import datasets  # noqa: F401 -- the imports both sides pay

    from vdata_hub.repo import contribute  # noqa: F401
    child_result({})


def child_reindex(repo: str) -> None:
    from vdata_hub.repo.reindex import reindex

    start = time.perf_counter()
    result = reindex(repo)
    child_result({"op_s": round(time.perf_counter() - start, 2), "rows": result.rows, "shards": result.shards,
                  "bytes_read": result.bytes_read})


def shard_bytes(repo: str) -> int:
    from huggingface_hub import HfApi

    return sum(e.size for e in HfApi().list_repo_tree(repo, path_in_repo="data", recursive=True, repo_type="dataset")
               if getattr(e, "size", None) is not None)


def build_main(repo: str, rows: int, work: Path) -> None:
    """Fill main with `rows` rows in the contribute layout (10 contributions), one commit each."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from vdata_hub.repo.card import init_repo
    from vdata_hub.repo.contribute import write_shards

    init_repo(repo)
    api = HfApi()
    per = rows // 10
    for part in range(10):
        table = make_table(per, seed=10 + part)
        cid = f"{part:016x}"
        folder = work / f"main-{part}"
        folder.mkdir(parents=True)
        shards, _ = write_shards(table.to_batches(max_chunksize=8192), folder, cid)
        api.create_commit(repo, [CommitOperationAdd(p, str(local)) for p, (local, _) in shards.items()],
                          commit_message=f"main part {part}", repo_type="dataset")


def parent(rows: int, main_rows: int) -> None:
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="bench-contribute-"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = environment(endpoint, str(work / "hf-home"))
    os.environ.update({k: v for k, v in env.items() if k.startswith(("HF_", "PYTHONPATH"))})
    from tests.hub_emulator.fixtures import start_emulator

    (work / "hub").mkdir()
    server = start_emulator(port, work / "hub", [f"bench:{TOKEN}"], ["org:bench"], timeout=60)
    try:
        from datasets import Dataset
        from datasets.table import InMemoryTable

        from vdata_hub.repo.card import init_repo

        out = str(work / "out")
        Dataset(InMemoryTable(make_table(rows, seed=1))).save_to_disk(out)
        size = sum(f.stat().st_size for f in Path(out).glob("*.arrow"))
        print(f"dataset: {rows} rows, {size / 2**20:.0f} MiB of Arrow", flush=True)
        baseline = run_child(["baseline"], env)
        push_repo, contribute_repo = f"org/push-{uuid.uuid4().hex[:6]}", f"org/contrib-{uuid.uuid4().hex[:6]}"
        init_repo(push_repo)
        init_repo(contribute_repo)
        push = run_child(["push", out, push_repo], env)
        contributed = run_child(["contribute", out, contribute_repo], env)
        print(json.dumps({"baseline_import_rss_mib": baseline["peak_rss_mib"], "push_to_hub": push,
                          "contribute": contributed}, indent=1), flush=True)
        print(f"contribute / push_to_hub time: {contributed['op_s'] / push['op_s']:.2f}x "
              f"(peak RSS {contributed['peak_rss_mib']:.0f} vs {push['peak_rss_mib']:.0f} MiB)", flush=True)

        main_repo = f"org/main-{uuid.uuid4().hex[:6]}"
        build_main(main_repo, main_rows, work)
        indexed = run_child(["reindex", main_repo], env)
        print(f"reindex of {indexed['rows']} rows in {indexed['shards']} shards: {indexed['op_s']} s, "
              f"peak RSS {indexed['peak_rss_mib']:.0f} MiB", flush=True)
        onto_main = run_child(["contribute", out, main_repo], env)
        index, total = onto_main["index"], shard_bytes(main_repo)
        print(json.dumps({"onto_main": onto_main, "main_shard_bytes": total}, indent=1))
        print(f"contribute {rows} rows onto the {main_rows}-row main: {onto_main['op_s']} s, "
              f"peak RSS {onto_main['peak_rss_mib']:.0f} MiB; read {index['bytes_served_http'] / 2**20:.1f} MiB of "
              f"main's index in {index['resolve_requests']} requests ({index['bytes_served_http'] / total:.2%} of "
              f"{total / 2**20:.1f} MiB of shards)", flush=True)
    finally:
        server.terminate()
        server.wait()
        import shutil

        shutil.rmtree(work, ignore_errors=True)  # a million-row main is about a GB


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("push", "contribute", "reindex", "baseline"):
        sys.path.insert(0, str(ROOT))
        command, *args = sys.argv[1:]
        {"push": child_push, "contribute": child_contribute, "reindex": child_reindex,
         "baseline": child_baseline}[command](*args)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--main-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"command: .venv/bin/python bench/bench_contribute.py --rows {args.rows} --main-rows {args.main_rows}")
    parent(args.rows, args.main_rows)


if __name__ == "__main__":
    main()
