"""Upload and download rates of a 200 MB Parquet file through the Hub emulator, against a plain
disk copy of the same file in the same run, plus the emulator's peak RSS.

    python bench/bench_hub_transfer.py [--size-mb 200] [--repeats 5] [--emulator-root DIR]

The emulator runs as a subprocess (as in the tests); a thread samples its RSS every 10 ms.
Upload = CommitOperationAdd (client sha256) + create_commit (preupload, LFS batch, PUT, verify,
commit). Download = hf_hub_download into an empty cache (HEAD + GET). For context it also times
the client's sha256 pass, the same PUT/GET through a lean http.client and through httpx2 (the
client's HTTP stack) alone, the CPU seconds each side spends, and the latency of small requests.
``--emulator-root`` runs the emulator of another checkout, to compare two versions.
"""

import argparse
import hashlib
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_parquet(path, size_mb):
    """A Parquet file of about ``size_mb`` MB of incompressible rows (random bytes, no compression)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, width = size_mb * 1024, 1024
    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, size=rows * width, dtype=np.uint8).tobytes()
    column = pa.array([payload[i * width:(i + 1) * width] for i in range(rows)], pa.binary())
    pq.write_table(pa.table({"id": pa.array(range(rows)), "blob": column}), path, compression="none")


class RssSampler(threading.Thread):
    def __init__(self, pid):
        import psutil

        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except Exception:
                return
            time.sleep(0.01)


def sha256_file(path):
    """sha256 in 1 MiB reads, as huggingface_hub computes it before an LFS upload."""
    sha256 = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
    return sha256.hexdigest()


SERVER = None  # psutil.Process of the emulator, once started


def best_of(repeats, fn, before=None):
    """(wall s, this process's CPU s, emulator's CPU s) of the fastest of ``repeats`` runs: the machine
    is shared, so the minimum is the least noisy, and CPU seconds show which side does the work."""
    runs = []
    for _ in range(repeats):
        if before:
            before()
        server_start = sum(SERVER.cpu_times()[:2]) if SERVER else 0.0
        cpu_start, start = time.process_time(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        runs.append((wall, cpu, (sum(SERVER.cpu_times()[:2]) if SERVER else 0.0) - server_start))
    return min(runs)


def lean_get(port, path, target):
    """GET with http.client into a file, 1 MiB reads: what the emulator serves without httpx overhead."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", path)
    response, buf = conn.getresponse(), bytearray(1 << 20)
    with open(target, "wb") as out:
        while n := response.readinto(buf):
            out.write(memoryview(buf)[:n])
    conn.close()


def lean_put(port, url, source):
    """PUT the file with http.client in 1 MiB blocks: what the emulator ingests (and hashes)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection("127.0.0.1", port, blocksize=1 << 20)
    with open(source, "rb") as body:
        conn.request("PUT", f"{parts.path}?{parts.query}", body=body,
                     headers={"Content-Length": str(os.path.getsize(source))})
    assert conn.getresponse().status == 200
    conn.close()


def httpx_put(url, source):
    """PUT the file with httpx2 as huggingface_hub does (a file object, read 64 KiB at a time)."""
    import httpx2

    with open(source, "rb") as body:
        httpx2.put(url, content=body, timeout=None).raise_for_status()


def httpx_get(url, target):
    """GET with httpx2 as hf_hub_download does (iter_bytes re-chunked to 10 MiB, written to a file)."""
    import httpx2

    with httpx2.stream("GET", url, timeout=None) as response, open(target, "wb") as out:
        for chunk in response.iter_bytes(chunk_size=10 * 1024 * 1024):
            out.write(chunk)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--emulator-root", type=Path, default=REPO_ROOT,
                        help="checkout whose tests/hub_emulator to run (to compare two versions)")
    args = parser.parse_args()

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(work / "hf-home"),
                      HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    sys.path.insert(0, str(REPO_ROOT))
    from tests.hub_emulator.fixtures import start_emulator

    token, repo_id, server_dir = "hf_bench_token", "bench/transfer", work / "server"
    server_dir.mkdir()
    server = start_emulator(port, server_dir, [f"bench:{token}"], [], root=args.emulator_root)
    sampler = RssSampler(server.pid)
    sampler.start()
    global SERVER
    SERVER = sampler.process
    try:
        import httpx2
        from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

        source = work / "big.parquet"
        write_parquet(source, args.size_mb)
        size = source.stat().st_size
        oid = sha256_file(source)
        blob = server_dir / "blobs" / oid[:2] / oid

        def forget_blob():  # so that every repeat really uploads (LFS would deduplicate it)
            blob.unlink(missing_ok=True)

        copy_s = best_of(args.repeats, lambda: shutil.copyfile(source, work / "copy.parquet"))
        os.unlink(work / "copy.parquet")
        sha_s = best_of(args.repeats, lambda: sha256_file(source))

        api = HfApi(token=token)
        api.create_repo(repo_id, repo_type="dataset")
        idle_rss = sampler.peak
        commits = iter(range(1000))
        upload_s = best_of(args.repeats, lambda: api.create_commit(
            repo_id, [CommitOperationAdd(f"data/big-{next(commits)}.parquet", str(source))],
            commit_message="bench", repo_type="dataset"), before=forget_blob)
        caches = iter(range(1000))
        download_s = best_of(args.repeats, lambda: hf_hub_download(
            repo_id, "data/big-0.parquet", repo_type="dataset", token=token, cache_dir=work / f"c{next(caches)}"))
        assert blob.stat().st_size == size

        def upload_href():  # an LFS batch call, as the client makes, for a signed upload URL
            batch = httpx2.post(f"{os.environ['HF_ENDPOINT']}/datasets/{repo_id}.git/info/lfs/objects/batch",
                                headers={"Authorization": f"Bearer {token}"},
                                json={"operation": "upload", "objects": [{"oid": oid, "size": size}]})
            return batch.json()["objects"][0]["actions"]["upload"]["href"]

        lean_put_s = best_of(args.repeats, lambda: lean_put(port, upload_href(), source), before=forget_blob)
        resolve_path = f"/datasets/{repo_id}/resolve/main/data/big-0.parquet"
        lean_get_s = best_of(args.repeats, lambda: lean_get(port, resolve_path, work / "lean.parquet"))
        httpx_put_s = best_of(args.repeats, lambda: httpx_put(upload_href(), source), before=forget_blob)
        httpx_get_s = best_of(args.repeats, lambda: httpx_get(os.environ["HF_ENDPOINT"] + resolve_path,
                                                              work / "lean.parquet"))
        small_commit = iter(range(1000))
        info_ms = 1000 * best_of(args.repeats, lambda: [api.dataset_info(repo_id) for _ in range(20)])[0] / 20
        commit_ms = 1000 * best_of(args.repeats, lambda: [api.create_commit(
            repo_id, [CommitOperationAdd(f"small/{next(small_commit)}.txt", b"x" * 100)], commit_message="small",
            repo_type="dataset") for _ in range(5)])[0] / 5
        time.sleep(0.05)
    finally:
        sampler.stop.set()
        sampler.join()
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6

    def line(label, run, ratio=True):
        seconds, client_cpu, server_cpu = run
        extra = f" {seconds / copy_s[0]:5.1f}x" if ratio else " " * 6
        print(f"{label:<50} {seconds:6.3f} s {mb / seconds:7.1f} MB/s{extra}   CPU s: "
              f"bench process {client_cpu:5.2f}, emulator {server_cpu:5.2f}")

    root = "" if args.emulator_root == REPO_ROOT else f" --emulator-root {args.emulator_root}"
    print(f"command: python bench/bench_hub_transfer.py --size-mb {args.size_mb} --repeats {args.repeats}{root}")
    print(f"load average before: {load_before}, after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"file: {mb:.1f} MB Parquet; best of {args.repeats} runs each; ratio = time / disk copy time")
    line("disk copy (shutil.copyfile)", copy_s, ratio=False)
    line("upload: create_commit (huggingface_hub, LFS)", upload_s)
    line("download: hf_hub_download (empty cache)", download_s)
    line("client-side floor: sha256 of the file", sha_s)
    line("emulator alone: PUT via http.client", lean_put_s)
    line("emulator alone: GET via http.client", lean_get_s)
    line("PUT via httpx2 (the client's HTTP stack)", httpx_put_s)
    line("GET via httpx2, 10 MiB chunks (as hf_hub_download)", httpx_get_s)
    print(f"small requests: dataset_info {info_ms:.1f} ms, create_commit of a 100-byte file {commit_ms:.1f} ms "
          "(mean of 20 and 5 calls, best of the repeats)")
    print(f"emulator RSS: idle {idle_rss / 2**20:.0f} MiB, peak {sampler.peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
