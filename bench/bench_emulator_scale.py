"""Benchmark: the Hub emulator holding a dataset with thousands of merged contribution PRs.

    python bench/bench_emulator_scale.py [--contributions 2000] [--checkpoints 200,2000] [--rows 1000]
                                         [--samples 15] [--emulator-root PATH]

Builds, through huggingface_hub against a fresh emulator, a dataset repo the way contributors and a
maintainer grow it: each contribution is one `create_commit(create_pr=True)` adding 1-4 synthetic
Parquet shards of --rows rows under data/<axis>/ plus contributions/<id>.json; a maintainer merges
them --review-batch at a time (`merge_pull_request`, so most merges are three-way merges onto a main
that moved since the PR was opened). At each checkpoint it times the calls the project's tools make (median of
--samples, seconds per call): tree listings, paths-info, HEAD and range reads of a shard, commit and
discussion listings, repo info, opening and merging a PR; at the end one compaction commit deletes
every shard and adds one large shard per axis. It measures the emulator, not vdata: the figures
say whether an operation slows down as the repo grows. The emulator's peak memory (VmHWM) and
its data folder's size are printed beside them.

--emulator-root runs the emulator of another checkout (e.g. a `git worktree` of an older commit)
to compare.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

AXES = ["gender", "age", "religion", "disability"]
WORDS = ("the a nurse doctor teacher engineer said that she he they was were very good careful tired late early "
         "because patient student client manager asked answered again today always never").split()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shard_bytes(contribution, axis, rows, rng):
    """A small Parquet shard with distinct content (ids and texts), as a contribution's one axis."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [" ".join(rng.choices(WORDS, k=rng.randint(12, 30))) for _ in range(rows)]
    table = pa.table({"id": [f"{contribution}-{axis}-{i}" for i in range(rows)], "bias_axis": [axis] * rows,
                      "text": texts})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def contribute(api, repo, number, rows, rng):
    """Open one contribution PR (1-4 shards + manifest): (PR number, seconds, rows)."""
    from huggingface_hub import CommitOperationAdd

    contribution = f"{number:016x}"
    axes = rng.sample(AXES, rng.randint(1, len(AXES)))
    operations = [CommitOperationAdd(f"data/{axis}/{contribution}.parquet", shard_bytes(contribution, axis, rows, rng))
                  for axis in axes]
    manifest = {"id": contribution, "rows": {axis: rows for axis in axes}}
    operations.append(CommitOperationAdd(f"contributions/{contribution}.json", json.dumps(manifest).encode()))
    start = time.perf_counter()
    pr = api.create_commit(repo, operations, commit_message=f"Contribution {contribution}", repo_type="dataset",
                           create_pr=True)
    return pr.pr_num, time.perf_counter() - start, rows * len(axes)


def merge(api, repo, number):
    start = time.perf_counter()
    api.merge_pull_request(repo, number, repo_type="dataset")
    return time.perf_counter() - start


def timed(call, samples):
    runs = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def probe(api, repo, endpoint, token, samples, rng):
    """Median seconds of the read calls the tools make, on the repo as it is now."""
    from huggingface_hub import HfFileSystem, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import get_session

    shards = [e.path for e in api.list_repo_tree(repo, "data/gender", repo_type="dataset")]
    picks = rng.sample(shards, min(50, len(shards)))
    url = hf_hub_url(repo, picks[0], repo_type="dataset")
    auth = {"authorization": f"Bearer {token}"}
    headers = {**auth, "range": "bytes=-8"}
    fs = HfFileSystem(endpoint=endpoint, token=token, skip_instance_cache=True)

    def footer():
        import pyarrow.parquet as pq

        with fs.open(f"datasets/{repo}/{rng.choice(picks)}", "rb", block_size=16 << 10) as f:
            pq.read_metadata(f)

    return {
        "tree data/gender (one folder)": timed(lambda: list(api.list_repo_tree(repo, "data/gender",
                                                                                repo_type="dataset")), samples),
        "tree recursive (whole repo)": timed(lambda: list(api.list_repo_tree(repo, recursive=True,
                                                                              repo_type="dataset")), 3),
        "tree data/gender expand (first page)": timed(lambda: next(iter(api.list_repo_tree(
            repo, "data/gender", expand=True, repo_type="dataset"))), samples),
        "paths-info (50 paths)": timed(lambda: api.get_paths_info(repo, picks, repo_type="dataset"), samples),
        "HEAD resolve": timed(lambda: get_hf_file_metadata(url, token=token), samples),
        "range read (8 bytes)": timed(lambda: get_session().get(url, headers=headers).raise_for_status(), samples),
        "footer via HfFileSystem": timed(footer, samples),
        "commits (first page)": timed(lambda: get_session().get(
            f"{endpoint}/api/datasets/{repo}/commits/main", headers=auth).raise_for_status(), samples),
        "commits (all pages)": timed(lambda: api.list_repo_commits(repo, repo_type="dataset"), 3),
        "discussions (first page)": timed(lambda: next(iter(api.get_repo_discussions(repo, repo_type="dataset"))),
                                          samples),
        "discussions (all pages)": timed(lambda: list(api.get_repo_discussions(repo, repo_type="dataset")), 3),
        "PR details": timed(lambda: api.get_discussion_details(repo, 2, repo_type="dataset"), samples),
        "dataset_info (siblings)": timed(lambda: api.dataset_info(repo), samples),
        "dataset_info expand=usedStorage": timed(lambda: api.dataset_info(repo, expand=["usedStorage"]), samples),
    }


def peak_memory_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_mb(path, pattern="*"):
    return sum(p.stat().st_size for p in Path(path).rglob(pattern) if p.is_file()) / 1e6


def compact(api, repo, rows, rng):
    """One commit (as a PR, then merged) deleting every shard and adding one large shard per axis."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    shards = [e.path for e in api.list_repo_tree(repo, "data", recursive=True, repo_type="dataset")
              if e.path.endswith(".parquet")]
    operations = [CommitOperationDelete(path) for path in shards]
    operations += [CommitOperationAdd(f"data/{axis}/compacted-0000.parquet", shard_bytes("compacted", axis, rows, rng))
                   for axis in AXES]
    start = time.perf_counter()
    pr = api.create_commit(repo, operations, commit_message="Compact", repo_type="dataset", create_pr=True)
    opened = time.perf_counter()
    api.merge_pull_request(repo, pr.pr_num, repo_type="dataset")
    return len(shards), opened - start, time.perf_counter() - opened


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contributions", type=int, default=2000)
    parser.add_argument("--checkpoints", default="200,2000", help="contribution counts at which to probe")
    parser.add_argument("--rows", type=int, default=1000, help="rows per shard")
    parser.add_argument("--samples", type=int, default=15, help="calls per probe (median reported)")
    parser.add_argument("--review-batch", type=int, default=10,
                        help="PRs opened before a maintainer merges them all (merges after the first are 3-way)")
    parser.add_argument("--emulator-root", default=str(REPO_ROOT), help="checkout whose tests/hub_emulator runs")
    args = parser.parse_args(argv)
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if int(c) <= args.contributions})

    workdir = Path(tempfile.mkdtemp(prefix="bench-emulator-"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(HF_ENDPOINT=endpoint, HF_HOME=str(workdir / "hf-home"), HF_HUB_DISABLE_XET="1",
                      HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    os.environ.pop("HF_TOKEN", None)
    from tests.hub_emulator.fixtures import ALICE_TOKEN, start_emulator

    (workdir / "hub").mkdir()
    emulator = start_emulator(port, workdir / "hub", [f"alice:{ALICE_TOKEN}"], ["org:alice"],
                              root=Path(args.emulator_root))
    try:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=endpoint, token=ALICE_TOKEN)
        repo = "org/scale"
        api.create_repo(repo, repo_type="dataset")
        rng = random.Random(0)
        print(f"command: python bench/bench_emulator_scale.py {' '.join(sys.argv[1:])}".strip())
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min load average)")
        results, opens, merges, total_rows, started = {}, [], [], 0, time.perf_counter()
        waiting = []
        for number in range(1, args.contributions + 1):
            pr_num, opened, rows = contribute(api, repo, number, args.rows, rng)
            waiting.append(pr_num)
            opens.append(opened)
            total_rows += rows
            if len(waiting) == args.review_batch or number in checkpoints or number == args.contributions:
                merges += [merge(api, repo, pr_num) for pr_num in waiting]  # all but the first: 3-way merges
                waiting = []
            if number in checkpoints:
                window = slice(max(0, number - 50), number)
                probes = {"create_commit(create_pr) of a contribution": statistics.median(opens[window]),
                          "merge_pull_request": statistics.median(merges[window])}
                probes.update(probe(api, repo, endpoint, ALICE_TOKEN, args.samples, rng))
                results[number] = (probes, total_rows, peak_memory_mb(emulator.pid), folder_mb(workdir / "hub"),
                                   time.perf_counter() - started, folder_mb(workdir / "hub", "meta.sqlite3*"))
                print(f"... {number} contributions, {total_rows:,} rows, built in "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
        deleted, compact_open, compact_merge = compact(api, repo, 20 * args.rows, rng)
        report(results, deleted, compact_open, compact_merge, peak_memory_mb(emulator.pid))
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def report(results, deleted, compact_open, compact_merge, final_memory):
    counts = list(results)
    print(f"\n{'seconds per call (median)':<46}" + "".join(f"{c:>10}" for c in counts)
          + (f"{'ratio':>8}" if len(counts) > 1 else ""))
    for name in results[counts[0]][0]:
        values = [results[c][0][name] for c in counts]
        ratio = f"{values[-1] / values[0]:>7.1f}x" if len(values) > 1 and values[0] else ""
        print(f"{name:<46}" + "".join(f"{v:>10.4f}" for v in values) + ratio)
    print(f"{'rows in the repo':<46}" + "".join(f"{results[c][1]:>10,}" for c in counts))
    print(f"{'emulator peak memory (VmHWM, MB)':<46}" + "".join(f"{results[c][2]:>10.0f}" for c in counts))
    print(f"{'emulator data folder (MB)':<46}" + "".join(f"{results[c][3]:>10.0f}" for c in counts))
    print(f"{'  of which SQLite metadata (MB)':<46}" + "".join(f"{results[c][5]:>10.1f}" for c in counts))
    print(f"{'build time so far (s)':<46}" + "".join(f"{results[c][4]:>10.0f}" for c in counts))
    print(f"\ncompaction: one PR commit deleting {deleted} shards and adding {len(AXES)}: "
          f"create_commit {compact_open:.2f} s, merge {compact_merge:.2f} s; "
          f"emulator peak memory at the end {final_memory:.0f} MB")


if __name__ == "__main__":
    main()
