"""Scale benchmark (issue #13): a dataset repo of thousands of merged contributions, through the Hub
API against the project's Hub emulator, with the real clients.

    python bench/bench_scale.py [--contributions 2000] [--early 200] [--rows 1000] [--target-mb 256]
                                [--simulate 10000] [--threshold 200] [--work DIR]

What it does, in one run (each measured operation in its own process, with a fresh client cache):

1. Builds repo R: `--contributions` merged contributions of `--rows` synthetic rows each (texts of
   ~2.2 KB, the design's 20 GB / 9 million rows; Zipf-distributed words, pronouns and group terms
   among them; full provenance; 8 bias axes, so one contributed shard per axis per contribution,
   and a manifest). Shards and manifests are written as `contribute` writes them and committed ten
   contributions (90 files) per commit, without pull requests: the build is not what is measured.
   The manifests' balance counts are computed on the first 50 contributions and reused after that
   (their size is what the card's figures depend on; their values are not checked here).
2. At `--early` and at `--contributions` contributions: `contribute` of 1,000 new rows (a real PR)
   and `review --pr` of that PR (checks and comment; the PR is then closed): wall time, peak RSS,
   bytes the emulator sent back (counted on the wire by a relay in front of it).
3. `card` (render, no push): bytes read and time, against the Parquet bytes on main.
4. `compact --direct` of the whole repo beside `Dataset.push_to_hub` of the same rows (a local Arrow
   file, to a new repo), in the same run: time and peak RSS of each.
5. After compaction: contribute and review again, the card, and `pull` of a selective query
   (bytes read against the Parquet bytes on main).
6. Simulates `--simulate` contributions with the compaction policy (`review --merge` compacts when
   an axis holds `--threshold` contributed shards), with repo.layout and repo.compact's own rules,
   and reports the largest folder and the number of files.
7. Extrapolates each figure to the design's 20 GB (9,000,000 rows).

Targets (issue #13): contribute and review time x1.5 at most from --early to --contributions, bytes
read < 5% of main; compact <= 2x push_to_hub, peak RSS < 1 GB; card < 1% of the data's bytes; pull
< 10%; < 10,000 entries in every folder.

Run from the repository root in the project's venv. It needs ~15 GB of free disk in --work (default
a temporary folder) and takes 30-60 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
TOKEN = "hf_bench_scale_token"
AXES = ["gender", "race_ethnicity", "religion", "age", "disability", "sexual_orientation", "nationality",
        "socioeconomic_status"]
DOMAINS = ["healthcare", "education", "finance", "housing", "employment", "law", "technology", "sports", "media",
           "family"]
TASKS = ["counter_stereotype_story", "neutral_description", "ambiguous_qa", "decision_dialogue", "neutral_rewrite"]
MODELS = ["openai/gpt-4o-mini", "gemini/gemini-2.5-flash", "anthropic/claude-haiku-4-5", "local"]
QUERY = "SELECT id, domain, \"group\", text FROM gender WHERE domain = 'healthcare' LIMIT 1000"
DESIGN_ROWS = 9_000_000  # the design's 20 GB at ~2.2 KB a row
BALANCE_SAMPLES = 50
COMMIT_CONTRIBUTIONS = 10  # 8 shards + 1 manifest each: 90 files a commit (the Hub: <= ~100)
FIRST_DAY = datetime(2025, 1, 1, tzinfo=timezone.utc)
SPAN_DAYS = 700


# -- synthetic rows -------------------------------------------------------------------------------

class Texts:
    """Texts of Zipf-distributed pseudo-words (zstd ratio about 3, like prose), with common words,
    pronouns and group terms among the frequent ones, built with Arrow kernels."""

    def __init__(self, seed: int = 0, vocabulary: int = 20_000):
        import numpy as np
        import pyarrow as pa

        from vdata_hub.generation.records import word_hashes

        self.rng = np.random.default_rng(seed)
        syllables = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "tu", "ve", "zo", "an", "el", "or", "is", "th",
                     "er", "in", "on", "at", "en", "ba", "de", "fo", "gu"]
        lengths = np.clip(self.rng.poisson(2.2, vocabulary) + 1, 1, 6)
        words = ["".join(syllables[j] for j in self.rng.integers(0, len(syllables), n)) for n in lengths]
        common = ["the", "a", "of", "and", "to", "in", "was", "that", "with", "for", "on", "as", "at", "by"]
        pronouns = ["he", "she", "they", "her", "his", "their", "him", "them"]
        terms = ["woman", "man", "nurse", "person", "Muslim", "Christian", "Jewish", "Black", "White", "Asian",
                 "teenager", "older", "blind", "deaf", "wheelchair", "user", "gay", "lesbian", "bisexual",
                 "American", "Indian", "Chinese", "low-income", "working-class", "homelessness", "nonbinary"]
        words[:len(common) + len(pronouns)] = common + pronouns
        words[100:100 + len(terms)] = terms  # group terms: frequent, not the most frequent
        self.vocabulary = pa.array(words, pa.string())
        self.hashes = word_hashes(pa.array([w.lower() for w in words], pa.string()))
        ranks = np.arange(1, vocabulary + 1)
        weights = 1.0 / ranks ** 1.05
        self.cdf = np.cumsum(weights / weights.sum())

    def make(self, count: int, words_per_text: int = 330):
        """(texts, text hashes) of `count` new texts (~2.2 KB each)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from vdata_hub.generation.records import text_hashes

        counts = self.rng.integers(int(words_per_text * 0.7), int(words_per_text * 1.3), count)
        picks = np.searchsorted(self.cdf, self.rng.random(int(counts.sum())))
        picks = np.minimum(picks, len(self.vocabulary) - 1)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        texts = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), self.vocabulary.take(pa.array(picks))), " ")
        rows = np.repeat(np.arange(count), counts)
        hashes = text_hashes(texts, words=(None, rows), token_hash=self.hashes[picks])
        return texts, hashes

    def signatures(self, texts):
        """The MinHash signatures contribute and review compute for these texts (the index's rows)."""
        from vdata_hub.repo import dedup, index_format

        return dedup.text_signatures(texts, index_format.SHINGLE_WORDS)[1]


def contribution_table(texts: Texts, number: int, rows: int, when: datetime):
    """One contribution's rows with full provenance."""
    import numpy as np
    import pyarrow as pa

    from vdata_hub.generation.records import ARROW_SCHEMA
    from vdata_hub.generation.spec import canonical_json as to_json
    from vdata_hub.repo.stats import _axes

    rng = texts.rng
    text, text_hash = texts.make(rows)
    axis = np.array(AXES)[rng.integers(0, len(AXES), rows)]
    groups = {a: _axes()[a]["groups"] for a in AXES}
    group = [groups[a][int(g) % len(groups[a])] for a, g in zip(axis.tolist(), rng.integers(0, 64, rows))]
    domain = np.array(DOMAINS)[rng.integers(0, len(DOMAINS), rows)]
    task = np.array(TASKS)[rng.integers(0, len(TASKS), rows)]
    model = MODELS[number % len(MODELS)]
    output_tokens = rng.integers(300, 500, rows)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    prompts = [f"Write a {t.replace('_', ' ')} set in {d}, about {g}, in about 350 words. Avoid stereotypes "
               f"about {a.replace('_', ' ')}; make the person specific, competent and ordinary. Variant {i}."
               for i, (t, d, g, a) in enumerate(zip(task.tolist(), domain.tolist(), group, axis.tolist()))]
    from vdata_hub.generation.records import row_ids

    columns = {
        "id": row_ids(text_hash),
        "text": text, "prompt": pa.array(prompts),
        "system_prompt": pa.array(["You write fair, specific, stereotype-free prose."] * rows),
        "template": pa.array(task.tolist()), "template_sha": pa.array(["a" * 64] * rows),
        "variables": pa.array([to_json({"domain": d, "group": g}) for d, g in zip(domain.tolist(), group)]),
        "bias_axis": pa.array(axis.tolist()), "domain": pa.array(domain.tolist()), "task": pa.array(task.tolist()),
        "group": pa.array(group), "model": pa.array([model] * rows),
        "params": pa.array([to_json({"temperature": 0.8, "max_tokens": 600})] * rows),
        "input_tokens": pa.array(rng.integers(60, 120, rows)), "output_tokens": pa.array(output_tokens),
        "cost_usd": pa.array(output_tokens * 6e-7), "finish_reason": pa.array(["stop"] * rows),
        "created_at": pa.array([stamp] * rows), "generator_version": pa.array(["0.1.0"] * rows),
        "spec_sha": pa.array(["b" * 64] * rows), "augmented": pa.array([False] * rows),
        "source_id": pa.array([""] * rows),
        "plan_key": pa.array([f"bench-{number:05d}-{i:04d}-{uuid.uuid4().hex[:8]}" for i in range(rows)]),
        "flags": pa.array([[]] * rows, pa.list_(pa.string())),
        "text_hash": text_hash,
    }
    return pa.Table.from_pydict(columns, schema=ARROW_SCHEMA)


class Report:
    """The stand-in for a validation report that build_manifest reads."""

    def __init__(self, hashes):
        self.hashes, self.accepted = hashes, len(hashes)

    def accepted_hashes(self):
        return self.hashes

    def as_dict(self):
        return {"checked": self.accepted, "accepted": self.accepted, "rejected": {}, "scrubbed": {}, "flagged": {}}


def write_contribution(table, folder: Path, when: datetime, balance_cache: list):
    """Shards (one per axis) and manifest of one contribution, as `contribute` writes them."""
    import numpy as np
    import pyarrow.compute as pc

    from vdata_hub.repo import balance, layout, shard_format
    from vdata_hub.repo.contribute import _update_stats, build_manifest, contribution_hash
    from vdata_hub.repo.snapshot import json_bytes

    hashes = np.asarray(table.column("text_hash"), np.int64)
    cid = contribution_hash(hashes)
    stats = {name: __import__("collections").Counter() for name in ("bias_axis", "domain", "task", "model")}
    stats.update(spec_sha=set(), generator_version=set(), input_tokens=0, output_tokens=0, cost_usd=0.0,
                 balance=balance.empty())
    if len(balance_cache) < BALANCE_SAMPLES:
        for batch in table.to_batches(max_chunksize=8192):
            _update_stats(stats, batch)
        balance_cache.append(stats["balance"])
    else:  # the same statistics without counting mentions again (see the module docstring)
        saved = balance_cache[int(cid, 16) % BALANCE_SAMPLES]
        from vdata_hub.repo import balance as balance_module

        original = balance_module.count_batch
        balance_module.count_batch = lambda batch: balance.empty()
        try:
            for batch in table.to_batches(max_chunksize=8192):
                _update_stats(stats, batch)
        finally:
            balance_module.count_batch = original
        stats["balance"] = json.loads(json.dumps(saved))
    files = {}
    axes = table.column("bias_axis")
    for axis in sorted(set(axes.to_pylist())):
        local = folder / f"{cid}-{axis}.parquet"
        writer = shard_format.open_writer(local)
        writer.write_table(table.filter(pc.equal(axes, axis)))
        writer.close()
        files[layout.shard_path(axis, cid)] = local
    manifest = build_manifest(cid, stats, Report(hashes), "bench")
    manifest["created_at"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    files[layout.manifest_path(cid)] = json_bytes(manifest)
    return cid, files


def contribution_day(number: int, total: int) -> datetime:
    return FIRST_DAY + timedelta(days=SPAN_DAYS * number / max(1, total), hours=number % 24)


def build(api, repo: str, texts: Texts, start: int, stop: int, total: int, rows: int, work: Path, arrow_sink,
          balance_cache: list) -> None:
    """Contributions start..stop-1 committed to main, COMMIT_CONTRIBUTIONS per commit, each commit
    with the duplicate index's run of its rows; full tiers of runs are then merged as `review
    --merge` merges them, so index/ looks as it would after merging each contribution by review."""
    import numpy as np
    from huggingface_hub import CommitOperationAdd

    from vdata_hub.repo import index_format, layout
    from vdata_hub.repo.reindex import merge_runs

    clock = time.perf_counter()
    for first in range(start, stop, COMMIT_CONTRIBUTIONS):
        folder = work / f"build-{first}"
        folder.mkdir(parents=True)
        operations, hashes, signatures, cids = [], [], [], []
        for number in range(first, min(stop, first + COMMIT_CONTRIBUTIONS)):
            when = contribution_day(number, total)
            table = contribution_table(texts, number, rows, when)
            arrow_sink.write_table(table)
            cid, files = write_contribution(table, folder, when, balance_cache)
            operations += [CommitOperationAdd(path, str(content) if isinstance(content, Path) else content)
                           for path, content in files.items()]
            hashes.append(np.asarray(table.column("text_hash"), np.int64))
            signatures.append(texts.signatures(table.column("text")))
            cids.append(cid)
        run = index_format.build_run(np.concatenate(hashes), np.concatenate(signatures), cids)
        operations.append(CommitOperationAdd(layout.index_run_path(index_format.run_name(run)), run))
        api.create_commit(repo, operations, commit_message=f"bench: contributions {first}..{number}",
                          repo_type="dataset")
        merge_runs(repo, TOKEN, api)
        shutil.rmtree(folder)
        done = number + 1 - start
        if done % 100 == 0 or number + 1 == stop:
            rate = done / (time.perf_counter() - clock)
            print(f"  built {number + 1} contributions ({rate:.1f}/s)", flush=True)


# -- children: one measured operation each ---------------------------------------------------------

def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_downloads():
    """Bytes of file content the client fetched, by kind of path (a response hook on its session)."""
    from huggingface_hub.utils import get_session

    fetched = {"data": 0, "manifests_and_records": 0, "other": 0, "requests": 0}

    def hook(response):
        url = str(response.request.url)
        if "/resolve/" in url and response.request.method == "GET":
            size = int(response.headers.get("content-length", 0))
            kind = "data" if "/data/" in url else (
                "manifests_and_records" if any(k in url for k in ("/contributions/", "/compactions/", "/archive/"))
                else "other")
            fetched[kind] += size
        fetched["requests"] += 1

    get_session().event_hooks["response"].append(hook)
    return fetched


def child(op: str, args: list[str]) -> None:
    """One operation, timed without the imports every command pays."""
    import datasets  # noqa: F401

    from vdata_hub.query.pull import pull
    from vdata_hub.repo.card import card
    from vdata_hub.repo.compact import compact
    from vdata_hub.repo.contribute import contribute
    from vdata_hub.repo.review import review

    fetched = count_downloads()
    start, cpu = time.perf_counter(), cpu_seconds()
    extra = {}
    if op == "contribute":
        result = contribute(args[0], repo=args[1])
        extra = {"pr": int(result.pr_url.rsplit("/", 1)[1]), "stages_s": {k: round(v, 2) for k, v in result.seconds.items()}}
    elif op == "review":
        [result] = review(repo=args[0], pr=int(args[1]))
        extra = {"passed": result.passed, "summary": result.summary()}
    elif op == "card":
        extra = {"card_chars": len(card(args[0]))}
    elif op == "compact":
        result = compact(args[0], target_bytes=int(args[1]), direct=True)
        extra = {"summary": result.summary(), "replaced": len(result.replaced), "written": len(result.written),
                 "rows": result.rows, "bytes_read": result.bytes_read, "bytes_written": result.bytes_written,
                 "stages_s": {k: round(v, 2) for k, v in result.seconds.items()}}
    elif op == "push":
        from datasets import Dataset

        dataset = Dataset.from_file(args[0])
        start, cpu = time.perf_counter(), cpu_seconds()
        dataset.push_to_hub(args[1])
        extra = {"rows": dataset.num_rows}
    elif op == "pull":
        result = pull(args[0], repo=args[1], sql=QUERY)
        extra = {"rows": result.rows}
    seconds = time.perf_counter() - start
    print(json.dumps({"op_s": round(seconds, 2), "cpu_s": round(cpu_seconds() - cpu, 2),
                      "peak_rss_mib": round(peak_rss_mib(), 1), "fetched": fetched, **extra}))


def cpu_seconds() -> float:
    """CPU time of this process, all threads (on a shared machine, steadier than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Runner:
    """Runs children against the emulator, directly or through the counting relay."""

    def __init__(self, direct: str, relay, work: Path):
        self.direct, self.relay, self.work = direct, relay, work

    def run(self, op: str, *args, counted: bool = True) -> dict:
        endpoint = f"http://127.0.0.1:{self.relay.port}" if counted else self.direct
        home = self.work / f"home-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(home),
               "HF_DATASETS_CACHE": str(home / "datasets"), "HF_HUB_DISABLE_XET": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "PYTHONPATH": str(ROOT),
               "VDATA_CONFIG": str(self.work / "vdata-config.yaml")}
        before, clock = self.relay.received, time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "child", op, *map(str, args)], env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - clock
        shutil.rmtree(home, ignore_errors=True)
        if proc.returncode != 0:
            raise SystemExit(f"child {op} {args} failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["wall_s"] = round(wall, 2)
        if counted:
            result["bytes_on_wire"] = self.relay.received - before
        return result


def main_bytes(api, repo: str) -> tuple[int, int, int]:
    """(Parquet bytes on main, data files, all files) of `repo`."""
    from vdata_hub.repo.snapshot import snapshot

    snap = snapshot(api, repo, "main")
    return snap.size(snap.shards()), len(snap.shards()), len(snap.files)


def contribute_and_review(runner: Runner, api, repo: str, texts: Texts, rows: int, number: int, label: str,
                          results: dict) -> None:
    from datasets import Dataset
    from datasets.table import InMemoryTable

    out = runner.work / f"new-{number}"
    Dataset(InMemoryTable(contribution_table(texts, number, rows, datetime.now(timezone.utc)))).save_to_disk(str(out))
    data_bytes, shards, files = main_bytes(api, repo)
    contributed = runner.run("contribute", out, repo)
    reviewed = runner.run("review", repo, contributed["pr"])
    api.change_discussion_status(repo, contributed["pr"], "closed", repo_type="dataset")
    shutil.rmtree(out)
    results[label] = {"main_parquet_bytes": data_bytes, "main_data_files": shards, "main_files": files,
                      "contribute": contributed, "review": reviewed}
    for op in ("contribute", "review"):
        r = results[label][op]
        print(f"  {op:>10} at {label}: {r['op_s']:7.2f} s, peak RSS {r['peak_rss_mib']:6.0f} MiB, "
              f"read {r['bytes_on_wire'] / 2**20:8.2f} MiB on the wire = {r['bytes_on_wire'] / data_bytes:6.2%} of "
              f"main's {data_bytes / 2**20:,.0f} MiB of Parquet ({shards:,} data files)", flush=True)


def card_refresh(runner: Runner, api, repo: str, label: str, results: dict) -> None:
    data_bytes, _, _ = main_bytes(api, repo)
    result = runner.run("card", repo)
    results[label] = {**result, "main_parquet_bytes": data_bytes}
    print(f"  card at {label}: {result['op_s']:.2f} s, read {result['bytes_on_wire'] / 2**20:.2f} MiB on the wire = "
          f"{result['bytes_on_wire'] / data_bytes:.3%} of main's Parquet (target < 1%)", flush=True)


# -- the simulation of many contributions ----------------------------------------------------------

def simulate(contributions: int, threshold: int, target_bytes: int, shard_bytes: int) -> dict:
    """Paths of `contributions` contributions added one by one, compacted with compact's own rules
    whenever needs_compaction says so; the largest folder over the whole run and at the end."""
    import hashlib

    from vdata_hub.repo import layout
    from vdata_hub.repo.compact import needs_compaction, small_shards
    from vdata_hub.repo.snapshot import RepoFile, Snapshot

    data: dict[str, int] = {}
    other: set = set()
    largest = {"entries": 0, "folder": "", "after": 0}
    compactions = 0

    def check(after: int):
        counts = layout.folder_entries(list(data) + list(other))
        folder, entries = counts.most_common(1)[0]
        if entries > largest["entries"]:
            largest.update(entries=entries, folder=folder, after=after)
        return counts

    for number in range(contributions):
        cid = hashlib.sha256(str(number).encode()).hexdigest()[:16]
        for axis in AXES:
            data[layout.shard_path(axis, cid)] = shard_bytes
        other.add(layout.manifest_path(cid))
        snap = Snapshot(repo="sim", commit="", files={p: RepoFile(s, "") for p, s in data.items()})
        if needs_compaction(snap, threshold):
            check(number + 1)  # the fullest moment: just before the compaction
            compactions += 1
            for axis, paths in small_shards(data, target_bytes).items():
                total = sum(data.pop(p) for p in paths)
                for part in range(max(1, math.ceil(total / target_bytes))):
                    digest = hashlib.sha256(f"{compactions}-{axis}-{part}".encode()).hexdigest()[:12]
                    data[layout.compacted_shard_path(axis, "20250101", "20261231", digest)] = min(
                        target_bytes, total - part * target_bytes)
            other.add(layout.compaction_record_path("20261231", f"{compactions:012x}"))
    counts = check(contributions)
    return {"contributions": contributions, "threshold": threshold, "compactions": compactions,
            "largest_folder_ever": largest, "largest_folder_at_end": dict(zip(("folder", "entries"),
                                                                            counts.most_common(1)[0])),
            "files_at_end": len(data) + len(other), "data_files_at_end": len(data)}


# -- the run ---------------------------------------------------------------------------------------

def parent(args) -> None:
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    from bench_pull import CountingRelay, free_port

    port = free_port()
    direct = f"http://127.0.0.1:{port}"
    os.environ.update({"HF_ENDPOINT": direct, "HF_TOKEN": TOKEN, "HF_HOME": str(work / "hf-home"),
                       "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                       "VDATA_CONFIG": str(work / "vdata-config.yaml")})
    from tests.hub_emulator.fixtures import start_emulator

    (work / "hub").mkdir(exist_ok=True)
    server = start_emulator(port, work / "hub", [f"bench:{TOKEN}"], ["org:bench"], timeout=120)
    results: dict = {"args": vars(args), "started": datetime.now(timezone.utc).isoformat(),
                     "load_average_start": os.getloadavg()}
    try:
        import pyarrow as pa
        from huggingface_hub import HfApi

        from vdata_hub.generation.records import ARROW_SCHEMA
        from vdata_hub.repo.card import init_repo

        relay = CountingRelay(port)
        runner = Runner(direct, relay, work)
        api = HfApi()
        repo = f"org/scale-{uuid.uuid4().hex[:6]}"
        init_repo(repo)
        texts = Texts(seed=1)
        balance_cache: list = []
        arrow_path = work / "all-rows.arrow"
        with pa.OSFile(str(arrow_path), "wb") as sink, pa.ipc.new_stream(sink, ARROW_SCHEMA) as arrow_sink:
            print(f"building {repo}: {args.early} contributions of {args.rows} rows ...", flush=True)
            build(api, repo, texts, 0, args.early, args.contributions, args.rows, work, arrow_sink, balance_cache)
            from vdata_hub.repo.card import card

            card(repo, push=True)
            print(f"measuring at {args.early} contributions ...", flush=True)
            contribute_and_review(runner, api, repo, texts, args.rows, 10**6, f"{args.early}", results)
            card_refresh(runner, api, repo, f"card_{args.early}", results)
            print(f"building up to {args.contributions} contributions ...", flush=True)
            build(api, repo, texts, args.early, args.contributions, args.contributions, args.rows, work, arrow_sink,
                  balance_cache)
        card(repo, push=True)
        print(f"measuring at {args.contributions} contributions (not compacted) ...", flush=True)
        contribute_and_review(runner, api, repo, texts, args.rows, 10**6 + 1, f"{args.contributions}", results)
        card_refresh(runner, api, repo, f"card_{args.contributions}", results)

        print("compact beside push_to_hub of the same rows ...", flush=True)
        data_bytes, shards, _ = main_bytes(api, repo)
        push = runner.run("push", arrow_path, f"org/push-{uuid.uuid4().hex[:6]}", counted=False)
        compacted = runner.run("compact", repo, args.target_mb * 2**20, counted=False)
        results["compact"] = {"main_parquet_bytes_before": data_bytes, "data_files_before": shards,
                              "push_to_hub": push, "compact": compacted,
                              "ratio": round(compacted["op_s"] / push["op_s"], 2),
                              "cpu_ratio": round(compacted["cpu_s"] / max(0.01, push["cpu_s"]), 2)}
        print(f"  push_to_hub {push['rows']:,} rows: {push['op_s']:.1f} s ({push['cpu_s']:.1f} CPU-s), "
              f"peak RSS {push['peak_rss_mib']:.0f} MiB", flush=True)
        print(f"  compact {compacted['replaced']:,} shards -> {compacted['written']}: {compacted['op_s']:.1f} s "
              f"({compacted['cpu_s']:.1f} CPU-s), peak RSS {compacted['peak_rss_mib']:.0f} MiB; ratio "
              f"{results['compact']['ratio']}x wall, {results['compact']['cpu_ratio']}x CPU (target <= 2x), "
              f"stages {compacted['stages_s']}", flush=True)
        arrow_path.unlink()

        print(f"measuring at {args.contributions} contributions, compacted ...", flush=True)
        contribute_and_review(runner, api, repo, texts, args.rows, 10**6 + 2, f"{args.contributions}_compacted",
                              results)
        card_refresh(runner, api, repo, f"card_{args.contributions}_compacted", results)
        data_bytes, _, _ = main_bytes(api, repo)
        pulled = runner.run("pull", work / "pulled.jsonl", repo)
        results["pull"] = {**pulled, "main_parquet_bytes": data_bytes, "query": QUERY}
        print(f"  pull ({QUERY}): {pulled['op_s']:.2f} s, read {pulled['bytes_on_wire'] / 2**20:.2f} MiB = "
              f"{pulled['bytes_on_wire'] / data_bytes:.2%} of main's Parquet (target < 10%)", flush=True)
    finally:
        server.terminate()
        server.wait()
        results["load_average_end"] = os.getloadavg()

    shard_bytes = int(results["compact"]["main_parquet_bytes_before"] / max(1, results["compact"]["data_files_before"]))
    results["simulation"] = simulate(args.simulate, args.threshold, args.target_mb * 2**20, shard_bytes)
    sim = results["simulation"]
    print(f"simulated {args.simulate:,} contributions, compaction at {args.threshold} contributed shards per axis: "
          f"{sim['compactions']} compactions, largest folder ever {sim['largest_folder_ever']['entries']:,} entries "
          f"({sim['largest_folder_ever']['folder']}/), {sim['files_at_end']:,} files at the end (target < 10,000 "
          "entries per folder)", flush=True)
    results["extrapolation"] = extrapolate(results, args)
    print(json.dumps(results["extrapolation"], indent=1))
    out = work / "bench_scale.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"all figures: {out}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
        print("(work folder removed; pass --work DIR to keep it)")


def extrapolate(results: dict, args) -> dict:
    """Each figure at the design's 9,000,000 rows, from the measured ones (linear in what they grow with)."""
    early, late = results[str(args.early)], results[str(args.contributions)]
    compacted = results[f"{args.contributions}_compacted"]
    rows_late = args.contributions * args.rows
    scale = DESIGN_ROWS / rows_late
    parquet_per_row = late["main_parquet_bytes"] / rows_late
    design_contributions = DESIGN_ROWS / args.rows
    out = {"design_rows": DESIGN_ROWS, "parquet_bytes_per_row": round(parquet_per_row),
           "design_parquet_gib": round(DESIGN_ROWS * parquet_per_row / 2**30, 1)}
    # Uncompacted: linear in contributions through the two measured points. Compacted: the part
    # that reads main (contribute's check_main stage; review reads the same) grows with main's
    # rows, the rest (validating 1,000 rows, uploading, commenting) does not.
    reading = compacted["contribute"]["stages_s"].get("check_main", 0.0)
    for op in ("contribute", "review"):
        a, b = early[op]["op_s"], late[op]["op_s"]
        per_contribution = (b - a) / (args.contributions - args.early)
        out[f"{op}_s_uncompacted"] = round(b + per_contribution * (design_contributions - args.contributions), 1)
        out[f"{op}_s_compacted"] = round(compacted[op]["op_s"] + reading * (scale - 1), 1)
        out[f"{op}_bytes_share_compacted"] = round(compacted[op]["bytes_on_wire"] / compacted["main_parquet_bytes"], 4)
    comp = results["compact"]
    rate = comp["compact"]["bytes_read"] / comp["compact"]["op_s"]
    out["compact_all_at_once_s"] = round(DESIGN_ROWS * parquet_per_row / rate)
    out["compact_one_trigger_s"] = round(args.threshold * args.rows * parquet_per_row / rate
                                         + len(AXES) * args.target_mb * 2**20 * 0.5 / rate)
    card = results[f"card_{args.contributions}_compacted"]
    out["card_s_upper_bound"] = round(card["op_s"] * design_contributions / args.contributions, 1)
    out["card_bytes_share"] = round(card["bytes_on_wire"] / card["main_parquet_bytes"], 5)
    out["pull_bytes_share"] = round(results["pull"]["bytes_on_wire"] / results["pull"]["main_parquet_bytes"] / scale, 5)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contributions", type=int, default=2000)
    parser.add_argument("--early", type=int, default=200, help="the first measuring point, in contributions")
    parser.add_argument("--rows", type=int, default=1000, help="rows per contribution")
    parser.add_argument("--target-mb", type=int, default=256, help="compacted shard size")
    parser.add_argument("--threshold", type=int, default=200, help="compaction policy of the simulation")
    parser.add_argument("--simulate", type=int, default=10_000, help="contributions in the folder simulation")
    parser.add_argument("--work", help="working folder (kept); default: a temporary one, removed at the end")
    args = parser.parse_args()
    print("command: .venv/bin/python bench/bench_scale.py " + " ".join(sys.argv[1:]), flush=True)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    parent(args)


if __name__ == "__main__":
    main()
