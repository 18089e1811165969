"""Benchmark: `vdata pull` with a selective query vs `datasets.load_dataset` + filter, same run.

    python bench/bench_pull.py [--megabytes 200] [--repeat 3] [--row-group-rows N]

Builds a dataset of >= --megabytes of Parquet in the Hub emulator (4 bias axes x 3 contributions,
shards written by `contribute.write_shards`, i.e. as `vdata contribute` writes them), then runs
the selective query (one axis, four columns, LIMIT 1000) both ways, each --repeat times with a
cold client cache.

Bytes are counted on the wire: the clients talk to a small TCP relay in front of the emulator and
every byte the emulator sends back (HTTP headers and bodies) is counted there, so both sides are
measured the same way, including the API calls, retries and over-reads of the client libraries.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

AXES = ["gender", "age", "religion", "disability"]
DOMAINS = ["healthcare", "education", "finance", "law", "technology"]
CONTRIBUTIONS = 3
QUERY = "SELECT id, domain, \"group\", text FROM gender WHERE domain = 'healthcare' LIMIT 1000"


class CountingRelay:
    """A TCP relay on 127.0.0.1 that forwards to the emulator and counts the bytes it sends back."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.received = 0
        self.bytes_per_second = 0  # 0: no cap; else the emulator's replies share a link of this speed
        self._free_at = 0.0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self._listener.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            # Forward each piece at once, as the emulator sends it (it sets TCP_NODELAY too): with
            # Nagle's algorithm on, a response's second small write (a body after its headers)
            # waited for the client's delayed ACK, ~40 ms per small request, an artefact of the relay.
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source, sink, count):
        try:
            while chunk := source.recv(1 << 16):
                if count:
                    self._count_and_throttle(len(chunk))
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


    def _count_and_throttle(self, size: int):
        with self._lock:
            self.received += size
            if not self.bytes_per_second:
                return
            self._free_at = max(self._free_at, time.monotonic()) + size / self.bytes_per_second
            wait = self._free_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_texts(rng, count: int, length: int) -> list[str]:
    """Texts of random lowercase words: about as incompressible as real prose after zstd."""
    import numpy as np

    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz     ", dtype=np.uint8)
    blob = letters[rng.integers(0, len(letters), size=count * length)].tobytes().decode("ascii")
    return [blob[i * length:(i + 1) * length] for i in range(count)]


def contribution_rows(rng, number: int, rows_per_axis: int) -> list[dict]:
    from vdata_hub.generation.records import Record
    from vdata_hub.generation.spec import canonical_json

    count = rows_per_axis * len(AXES)
    texts, prompts = random_texts(rng, count, 1400), random_texts(rng, count, 300)
    rows = []
    for i in range(count):
        axis, domain = AXES[i % len(AXES)], DOMAINS[int(rng.integers(0, len(DOMAINS)))]
        rows.append(Record(
            id=f"c{number}-{i:07d}", text=texts[i], prompt=prompts[i], system_prompt="You write short, neutral texts.",
            template="story", template_sha="a" * 64, variables=canonical_json({"domain": domain}), bias_axis=axis,
            domain=domain, task="story", group=f"{axis}-group-{i % 6}", model="openai/gpt-4o-mini",
            params=canonical_json({"temperature": 0.8}), input_tokens=120, output_tokens=300, cost_usd=0.0002,
            finish_reason="stop", created_at="2026-11-28T00:00:00Z").to_dict())
    return rows


def build_dataset(api, repo: str, megabytes: int, workdir: Path) -> int:
    """Write the contributions' shards as `contribute` does, commit them; return their total bytes."""
    import numpy as np
    from huggingface_hub import CommitOperationAdd

    from vdata_hub.repo.contribute import write_shards
    from vdata_hub.generation.records import records_to_table

    rng = np.random.default_rng(0)
    rows_per_axis = int(megabytes * 1.05e6 / 1030 / len(AXES) / CONTRIBUTIONS)
    operations, total = [], 0
    for number in range(CONTRIBUTIONS):
        table = records_to_table(contribution_rows(rng, number, rows_per_axis))
        folder = workdir / f"contribution-{number}"
        folder.mkdir()
        shards, _ = write_shards(table.to_batches(max_chunksize=8192), folder, f"contribution-{number:04d}")
        for path_in_repo, (local_path, _) in shards.items():
            total += local_path.stat().st_size
            operations.append(CommitOperationAdd(path_in_repo, str(local_path)))
    from vdata_hub.repo import layout

    card = f"---\nconfigs:\n- config_name: default\n  default: true\n  data_files: {layout.config_pattern()}\n"
    card += "".join(f"- config_name: {axis}\n  data_files: {layout.config_pattern(axis)}\n" for axis in AXES) + "---\n"
    operations.append(CommitOperationAdd("README.md", card.encode()))
    api.create_commit(repo, operations=operations, commit_message="benchmark data", repo_type="dataset")
    return total


def timed(relay, action):
    before, start = relay.received, time.perf_counter()
    result = action()
    return time.perf_counter() - start, relay.received - before, result


def run_pull(repo: str, token: str, workdir: Path):
    from vdata_hub.query.pull import pull

    out = workdir / "pulled.jsonl"
    result = pull(str(out), repo=repo, sql=QUERY, token=token)
    out.unlink()
    return result.rows


def run_load_config(repo: str, token: str, workdir: Path):
    """load_dataset of the axis' config (its shards only), then the domain filter."""
    return load_and_filter(repo, "gender", lambda axis, domain: domain == "healthcare", token, workdir)


def run_load_all(repo: str, token: str, workdir: Path):
    """load_dataset of the default config (every shard), then the axis and domain filter."""
    return load_and_filter(repo, "default", lambda axis, domain: axis == "gender" and domain == "healthcare",
                           token, workdir)


def load_and_filter(repo, config, keep, token, workdir: Path):
    import datasets

    cache = Path(tempfile.mkdtemp(dir=workdir, prefix="hf-cache-"))
    try:
        loaded = datasets.load_dataset(repo, config, split="train", token=token, cache_dir=str(cache))
        selected = loaded.filter(keep, input_columns=["bias_axis", "domain"])
        selected = selected.select_columns(["id", "domain", "group", "text"]).select(range(1000))
        return len(selected)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(Path(os.environ["HF_HOME"]) / "hub", ignore_errors=True)


SIDES = {"pull": run_pull,
         "load_dataset(repo, 'gender') + filter": run_load_config,
         "load_dataset(repo) + filter": run_load_all}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=200, help="Parquet size of the dataset to build")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median reported)")
    parser.add_argument("--bandwidth-mbps", default="0",
                        help="comma-separated link speeds to simulate in the relay, in Mbit/s; 0 = localhost, no cap")
    parser.add_argument("--row-group-rows", type=int, default=None,
                        help="override contribute.ROW_GROUP_ROWS for the shards (default: contribute's)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    emulator_port = free_port()
    from tests.hub_emulator.fixtures import ALICE_TOKEN, start_emulator

    (workdir / "hub").mkdir()
    emulator = start_emulator(emulator_port, workdir / "hub", [f"alice:{ALICE_TOKEN}"], ["org:alice"])
    relay = CountingRelay(emulator_port)
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{relay.port}", HF_HOME=str(workdir / "hf-home"),
                      HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    os.environ.pop("HF_TOKEN", None)
    try:
        import datasets
        import duckdb  # noqa: F401 (imported before timing, like datasets)
        from huggingface_hub import HfApi

        import vdata_hub.repo.contribute as contribute
        import vdata_hub.query.pull  # noqa: F401

        datasets.disable_progress_bars()
        if args.row_group_rows:
            contribute.ROW_GROUP_ROWS = args.row_group_rows
        api = HfApi(endpoint=f"http://127.0.0.1:{emulator_port}", token=ALICE_TOKEN)
        repo = "org/vdata-bench"
        api.create_repo(repo, repo_type="dataset")
        dataset_bytes = build_dataset(api, repo, args.megabytes, workdir)
        print_header(dataset_bytes, contribute.ROW_GROUP_ROWS)
        for mbps in (float(value) for value in args.bandwidth_mbps.split(",")):
            relay.bytes_per_second = mbps * 1e6 / 8
            results = {name: [] for name in SIDES}
            for _ in range(args.repeat):
                for name, side in SIDES.items():
                    results[name].append(timed(relay, lambda: side(repo, ALICE_TOKEN, workdir)))
            report(mbps, dataset_bytes, results)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def print_header(dataset_bytes, row_group_rows):
    command = "python bench/bench_pull.py " + " ".join(sys.argv[1:])
    print(f"command: {command.strip()}")
    print(f"dataset: {dataset_bytes / 1e6:.1f} MB of Parquet, {len(AXES)} axes x {CONTRIBUTIONS} contributions "
          f"= {len(AXES) * CONTRIBUTIONS} shards, row groups of {row_group_rows} rows")
    print(f"query:   {QUERY}")


def report(mbps, dataset_bytes, results):
    print(f"\nlink: {'localhost, no cap' if not mbps else f'{mbps:g} Mbit/s (simulated in the relay)'}")
    print(f"{'method':<40}{'rows':>6}{'median s':>10}{'MB from Hub':>13}{'% of dataset':>14}")
    medians = {}
    for name, runs in results.items():
        seconds = statistics.median(run[0] for run in runs)
        received = statistics.median(run[1] for run in runs)
        medians[name] = seconds
        print(f"{name:<40}{runs[0][2]:>6}{seconds:>10.2f}{received / 1e6:>13.2f}{100 * received / dataset_bytes:>13.1f}%")
    for name in list(SIDES)[1:]:
        print(f"speed-up of pull over {name}: {medians[name] / medians['pull']:.1f}x")
    print("runs: " + "; ".join(f"{name}: " + " ".join(f"{r[0]:.2f}s" for r in runs) for name, runs in results.items()))


if __name__ == "__main__":
    main()
