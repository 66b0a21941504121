"""Load test of the app: concurrent gradio_client users, some cancelling mid-stream.

Starts `app.py` on a free loopback port (never another interface), runs `--users` threads
of `--generations` generations each, cancels every `--cancel-every`-th one after its first
streamed chunk, and reports: failed requests, queue positions seen, the server's memory
after the first generation and at the end, and the size of the output folder over time
(outputs older than `--output-max-age` seconds are deleted by the app).  Bounded: at most
users × generations requests and `--timeout` seconds in all.

    python scripts/load_test.py --json load.json      # 4 users × 5 generations
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from gradio_client import Client

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def start_server(port: int, outputs: Path, args: argparse.Namespace) -> subprocess.Popen:
    cmd = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--max-queue", str(args.users * 2),
           "--max-request-seconds", str(args.max_request_seconds), "--output-max-age", str(args.output_max_age)]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "DSA_OUTPUT_DIR": str(outputs)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(url: str, server: subprocess.Popen, timeout: float = 180) -> Client:
    deadline = time.time() + timeout
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:
            if server.poll() is not None:
                raise SystemExit(f"the app exited with status {server.returncode} before serving") from None
            if time.time() > deadline:
                raise
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--generations", type=int, default=5, help="per user")
    ap.add_argument("--seconds", type=float, default=3, help="video length of each generation")
    ap.add_argument("--cancel-every", type=int, default=3, help="cancel every n-th generation mid-stream")
    ap.add_argument("--max-request-seconds", type=float, default=20)
    ap.add_argument("--output-max-age", type=float, default=60, help="seconds (must exceed the request limit)")
    ap.add_argument("--timeout", type=float, default=1200, help="for the whole test")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (1 <= args.users <= 16 and 1 <= args.generations <= 20):
        ap.error("--users must be in 1..16 and --generations in 1..20 (the test is bounded)")

    outputs = Path(tempfile.mkdtemp(prefix="dsa_load_"))
    port = free_port()
    server = start_server(port, outputs, args)
    url = f"http://127.0.0.1:{port}/"
    results, lock = [], threading.Lock()
    sizes: list[tuple[float, int]] = []
    memory: dict[str, float] = {}
    t0 = time.time()
    try:
        connect(url, server)
        proc = psutil.Process(server.pid)
        memory["start_mb"] = proc.memory_info().rss / 2**20

        def user(u: int) -> None:
            client = Client(url, verbose=False)
            for g in range(args.generations):
                if time.time() - t0 > args.timeout:
                    return
                n = u * args.generations + g
                cancel = args.cancel_every > 0 and n % args.cancel_every == args.cancel_every - 1
                started = time.time()
                job = client.submit("A small red disc moves left on a plain white background.", "adaptive", 4,
                                    "4,3,2", 0.02, 0.01, 1, args.seconds, n, False, "tiny", api_name="/generate")
                ranks, updates, error = set(), 0, None
                try:
                    while not job.done():
                        st = job.status()
                        if st.code.name == "IN_QUEUE" and st.rank is not None:
                            ranks.add(st.rank)
                        if cancel and len(job.outputs()) >= 1:
                            job.cancel()
                            break
                        time.sleep(0.05)
                    updates = len(job.outputs())
                    if not cancel:
                        job.result(timeout=args.timeout)
                except Exception as err:  # a failed request is what this test counts
                    error = f"{type(err).__name__}: {err}"
                with lock:
                    results.append({"user": u, "generation": g, "cancelled": cancel, "updates": updates,
                                    "queue_positions": sorted(ranks), "seconds": time.time() - started,
                                    "error": error})
                    if not cancel and error is None and "after_first_mb" not in memory:
                        memory["after_first_mb"] = proc.memory_info().rss / 2**20

        threads = [threading.Thread(target=user, args=(u,)) for u in range(args.users)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            sizes.append((time.time() - t0, folder_bytes(outputs)))
            time.sleep(1)
        memory["end_mb"] = proc.memory_info().rss / 2**20
    finally:
        server.terminate()
        server.wait(timeout=30)

    failed = [r for r in results if r["error"]]
    seen = sorted({p for r in results for p in r["queue_positions"]})
    report = {
        "users": args.users, "generations_per_user": args.generations, "seconds_per_video": args.seconds,
        "requests": len(results), "cancelled": sum(r["cancelled"] for r in results), "failed": len(failed),
        "queue_positions_seen": seen,
        "memory_mb": memory,
        "memory_growth": memory["end_mb"] / memory["after_first_mb"] - 1 if "after_first_mb" in memory else None,
        "outputs_max_mb": max(s for _, s in sizes) / 2**20 if sizes else 0.0,
        "outputs_end_mb": folder_bytes(outputs) / 2**20,
        "median_request_s": statistics.median(r["seconds"] for r in results) if results else None,
        "wall_s": time.time() - t0,
        "errors": [r["error"] for r in failed],
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**report, "results": results}, indent=2))
    growth_ok = report["memory_growth"] is not None and report["memory_growth"] <= 0.10
    return 0 if not failed and growth_ok else 1


if __name__ == "__main__":
    sys.exit(main())
