"""Benchmark the duplicate checks against main through the index: bytes of main read and wall
time of `contribute` of R new rows and of `review` of an R-row pull request, on repos with K
merged contributions, against the Hub emulator.

Reads are measured cold (VDATA_INDEX_CACHE=off: every run's front is downloaded, as for a
first-time contributor); a contribute with the fronts cached is timed too.

Main is built as `review --merge` leaves it: each contribution is one commit with its shards,
its manifest and its index run (the run `review` would commit), and full tiers of runs are
merged after each commit, exactly as `review --merge` does. Rows are shaped like generated
ones (bench_contribute.make_table). Each measured operation runs in its own process; bytes of
main read are the Content-Length of every GET of a file under index/ or data/ at main's commit
(the PR's own shards, which review downloads, are not main's), against the size of main's
shards.

Run from the repository root:
    .venv/bin/python bench/bench_dedup_index.py [--contributions 20,200] [--rows-per-contribution 1000] [--rows 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from bench_contribute import TOKEN, child_result, environment, free_port, run_child  # noqa: E402


def child(args: list[str], env: dict) -> dict:
    return run_child(args, env, script=__file__)


def served_from_main(repo: str) -> dict:
    """Counts GETs of main's files (not refs/pr/*) under index/ and data/."""
    from huggingface_hub.utils import get_session

    from vdata_hub.hub import use_timeouts

    use_timeouts()  # vdata's client factory first: setting it later would drop the hook with the old client
    served = {"bytes": 0, "requests": 0}

    def count(response):
        url = str(response.request.url)
        if response.request.method != "GET" or "/resolve/" not in url or "refs%2Fpr" in url or "refs/pr" in url:
            return
        if "/index/" in url or "/data/" in url:
            served["bytes"] += int(response.headers.get("content-length", 0))
            served["requests"] += 1

    get_session().event_hooks["response"].append(count)
    return served


def child_contribute(out: str, repo: str, dry_run: str) -> None:
    from vdata_hub.repo.contribute import contribute

    served = served_from_main(repo)
    start = time.perf_counter()
    result = contribute(out, repo=repo, dry_run=dry_run == "dry")
    child_result({"op_s": round(time.perf_counter() - start, 3), "accepted": result.report.accepted,
                  "pr": result.pr_url, "stages_s": {k: round(v, 3) for k, v in result.seconds.items()},
                  "runs": len(result.main_index.runs), "main_bytes_read": served["bytes"],
                  "main_requests": served["requests"]})


def child_review(repo: str, pr: str, profile: str = "") -> None:
    from vdata_hub.repo.review import review

    served = served_from_main(repo)
    start = time.perf_counter()
    if profile:  # where the time goes, to stderr
        import cProfile
        import pstats

        with cProfile.Profile() as profiler:
            [result] = review(repo=repo, pr=int(pr))
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    else:
        [result] = review(repo=repo, pr=int(pr))
    child_result({"op_s": round(time.perf_counter() - start, 3), "passed": result.passed,
                  "main_bytes_read": served["bytes"], "main_requests": served["requests"]})


def build_main(repo: str, contributions: int, rows: int, work: Path, start: int = 0) -> None:
    """Add contributions start..contributions-1 as review --merge leaves them."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from bench_contribute import make_table
    from vdata_hub.repo.contribute import ShardWriter, build_manifest, contribution_hash
    from vdata_hub.repo.reindex import contribution_run, merge_runs
    from vdata_hub.repo.validation import validate

    api = HfApi()
    for number in range(start, contributions):
        report = validate(make_table(rows, seed=1000 + number))
        cid = contribution_hash(report.accepted_hashes())
        folder = work / f"c{number}"
        folder.mkdir(parents=True)
        writer = ShardWriter(folder)
        for batch in report.accepted_batches():
            writer.write(batch)
        writer.close()
        manifest = build_manifest(cid, writer.stats, report, "bench")
        run_path, run = contribution_run(report, cid)
        operations = [CommitOperationAdd(path, str(local)) for path, (local, _) in writer.shards(cid).items()]
        operations += [CommitOperationAdd(f"contributions/{cid}.json", json.dumps(manifest).encode()),
                       CommitOperationAdd(run_path, run)]
        api.create_commit(repo, operations, commit_message=f"contribution {number}", repo_type="dataset")
        merge_runs(repo)


def main_size(repo: str) -> tuple[int, int, int]:
    """(bytes of data shards, bytes of index files, index files) on main."""
    from huggingface_hub import HfApi

    entries = [e for e in HfApi().list_repo_tree(repo, recursive=True, repo_type="dataset")
               if getattr(e, "size", None) is not None]
    data = sum(e.size for e in entries if e.path.startswith("data/"))
    index = [e.size for e in entries if e.path.startswith("index/")]
    return data, sum(index), len(index)


def measure(repo: str, contributions: int, rows: int, env: dict, work: Path, profile: bool = False) -> dict:
    from datasets import Dataset
    from datasets.table import InMemoryTable

    from bench_contribute import make_table

    out = str(work / f"new-{contributions}")
    Dataset(InMemoryTable(make_table(rows, seed=7))).save_to_disk(out)
    cold = {**env, "VDATA_INDEX_CACHE": "off"}  # a first-time contributor: every run front is read
    dry = child(["contribute", out, repo, "dry"], cold)
    fronts = {**env, "VDATA_INDEX_CACHE": str(work / f"fronts-{contributions}")}
    child(["contribute", out, repo, "dry"], fronts)  # fills the cache
    warm = child(["contribute", out, repo, "dry"], fronts)  # a contributor who contributed before
    opened = child(["contribute", out, repo, "open"], cold)
    reviewed = child(["review", repo, opened["pr"].rsplit("/", 1)[1]] + (["profile"] if profile else []), cold)
    data, index, files = main_size(repo)
    result = {"contributions": contributions, "main_shard_bytes": data, "index_bytes": index, "index_files": files,
              "contribute_s": dry["op_s"], "contribute_read": dry["main_bytes_read"],
              "contribute_requests": dry["main_requests"], "review_s": reviewed["op_s"],
              "review_read": reviewed["main_bytes_read"], "review_requests": reviewed["main_requests"],
              "contribute_open_s": opened["op_s"], "contribute_warm_s": warm["op_s"],
              "contribute_warm_read": warm["main_bytes_read"]}
    print(json.dumps(result), flush=True)
    print(f"{contributions} contributions, main {data / 2**20:.1f} MiB in shards, index {index / 2**20:.1f} MiB in "
          f"{files} file(s): contribute {rows} rows (dry run) {dry['op_s']:.2f} s reading "
          f"{dry['main_bytes_read'] / 2**20:.2f} MiB ({dry['main_bytes_read'] / data:.2%}) in {dry['main_requests']} "
          f"requests (with the fronts cached: {warm['op_s']:.2f} s, {warm['main_bytes_read'] / 2**20:.2f} MiB); "
          f"review of the {rows}-row PR {reviewed['op_s']:.2f} s reading "
          f"{reviewed['main_bytes_read'] / 2**20:.2f} MiB ({reviewed['main_bytes_read'] / data:.2%}) in "
          f"{reviewed['main_requests']} requests", flush=True)
    return result


def parent(sizes: list[int], rows_per: int, rows: int, emulator_root: str | None, profile: bool) -> None:
    import os

    from tests.hub_emulator.fixtures import start_emulator

    work = Path(tempfile.mkdtemp(prefix="bench-dedup-index-"))
    port = free_port()
    env = environment(f"http://127.0.0.1:{port}", str(work / "hf-home"))
    os.environ.update({k: v for k, v in env.items() if k.startswith(("HF_", "PYTHONPATH"))})
    (work / "hub").mkdir()
    server = start_emulator(port, work / "hub", [f"bench:{TOKEN}"], ["org:bench"], timeout=60,
                            root=Path(emulator_root) if emulator_root else ROOT)
    try:
        from vdata_hub.repo.card import init_repo

        repo = f"org/dedup-{uuid.uuid4().hex[:6]}"
        init_repo(repo)
        built = 0
        for size in sorted(sizes):
            clock = time.perf_counter()
            build_main(repo, size, rows_per, work, start=built)
            built = size
            print(f"built {size} contributions of {rows_per} rows ({time.perf_counter() - clock:.0f} s)", flush=True)
            measure(repo, size, rows, env, work, profile)
            from huggingface_hub import HfApi  # close the measured PR, so the next size starts clean

            for discussion in HfApi().get_repo_discussions(repo, repo_type="dataset", discussion_status="open"):
                HfApi().change_discussion_status(repo, discussion.num, "closed", repo_type="dataset")
    finally:
        server.terminate()
        server.wait()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("contribute", "review"):
        sys.path.insert(0, str(ROOT))
        command, *args = sys.argv[1:]
        {"contribute": child_contribute, "review": child_review}[command](*args)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contributions", default="20,200", help="sizes of main to measure at, in contributions")
    parser.add_argument("--rows-per-contribution", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000, help="rows of the contribution and PR measured")
    parser.add_argument("--emulator-root", help="a checkout whose tests/hub_emulator to run (default: this one)")
    parser.add_argument("--profile", action="store_true", help="print review's cProfile to stderr")
    args = parser.parse_args()
    print(f"command: .venv/bin/python bench/bench_dedup_index.py --contributions {args.contributions} "
          f"--rows-per-contribution {args.rows_per_contribution} --rows {args.rows}"
          + (f" --emulator-root {args.emulator_root}" if args.emulator_root else ""), flush=True)
    parent([int(size) for size in args.contributions.split(",")], args.rows_per_contribution, args.rows,
           args.emulator_root, args.profile)


if __name__ == "__main__":
    main()
