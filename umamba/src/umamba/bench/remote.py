"""`umamba bench remote`: `umamba predict` on this machine vs through `umamba serve` over loopback.

Arms run side by side, alternating (local, remote, local, remote, ...), so a machine shared with other work
disturbs both alike. For the remote arm the client's own `done` event gives upload, queue and run times; transfer
= total - queue - run (upload, polling delay, download). Then 8 jobs are queued behind a running one and the
server's resident memory is read (the jobs run in their own processes; the server only holds their records).

    umamba bench remote --model MODEL_DIR --case IMG_0000.nii.gz [--case OTHER_0000.nii.gz] [--repeats 2]
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
import time
from pathlib import Path

from umamba.model_store import import_model
from umamba.remote.client import Client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="an nnU-Net model folder (imported into a temporary store)")
    parser.add_argument("--case", action="append", required=True, metavar="IMAGE",
                        help="a one-channel image to segment (repeat for several)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per arm and case (default 2)")
    parser.add_argument("--queued", type=int, default=8, help="jobs queued for the memory figure (default 8)")
    parser.add_argument("--device", default="cpu")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _predict(args: list[str], env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "umamba", "predict", *args, "--progress-json"], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"umamba predict failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    done = [json.loads(line) for line in proc.stdout.splitlines() if '"event": "done"' in line][-1]
    return wall, done


def run(args: argparse.Namespace, reporter=None) -> int:
    with tempfile.TemporaryDirectory(prefix="umamba-bench-remote-") as tmp:
        tmp = Path(tmp)
        import_model(args.model, tmp / "data" / "models", name="bench")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
        server = subprocess.Popen([sys.executable, "-m", "umamba", "serve", "--port", str(port), "--data-dir",
                                   str(tmp / "data"), "--gpus", "none", "--max-queue", str(args.queued + 1)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    Client(url, None).health()
                    break
                except Exception:
                    time.sleep(0.2)
            token = (tmp / "data" / "token").read_text().strip()
            idle_mb = _rss_mb(server.pid)
            rows = []
            for case in args.case:
                local, remote, parts = [], [], []
                for i in range(args.repeats):
                    common = ["-i", case, "--device", args.device, "--disable-tta"]
                    local.append(_predict([*common, "-o", str(tmp / f"l{i}.nii.gz"), "-m", args.model], env)[0])
                    wall, done = _predict([*common, "-o", str(tmp / f"r{i}.nii.gz"), "-m", "bench", "--server", url],
                                          {**env, "UMAMBA_TOKEN": token})
                    remote.append(wall)
                    parts.append(done["timing"])
                lm, rm = statistics.median(local), statistics.median(remote)
                queue = statistics.median(p["queue_s"] for p in parts)
                run_s = statistics.median(p["run_s"] for p in parts)
                transfer = statistics.median(p["total_s"] - p["queue_s"] - p["run_s"] for p in parts)
                rows.append({"case": Path(case).name, "local_s": round(lm, 2), "remote_s": round(rm, 2),
                             "overhead_pct": round(100 * (rm - lm) / lm, 1), "transfer_s": round(transfer, 2),
                             "queue_s": round(queue, 3), "server_run_s": round(run_s, 2)})
            client = Client(url, token)
            jobs = [client.submit("predict", {"model": "bench", "device": args.device}, [("channels", Path(args.case[0]))])
                    for _ in range(args.queued + 1)]
            time.sleep(2)
            queued_mb = _rss_mb(server.pid)
            for job in jobs:
                client.cancel(job["id"])
        finally:
            server.terminate()
            server.wait(timeout=60)
    print("| case | local predict s | remote predict s | overhead | transfer s | queue s | server run s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['local_s']} | {r['remote_s']} | {r['overhead_pct']:+.1f} % | {r['transfer_s']} | "
              f"{r['queue_s']} | {r['server_run_s']} |")
    print(f"server memory (RSS): idle {idle_mb:.0f} MB, with 1 running + {args.queued} queued jobs {queued_mb:.0f} MB")
    if reporter is not None:
        reporter.done([], rows=rows, server_rss_idle_mb=round(idle_mb, 1), server_rss_queued_mb=round(queued_mb, 1))
    return 0
