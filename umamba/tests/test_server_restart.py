"""`umamba serve` killed with SIGKILL and started again: a training resumes from its last checkpoint and finishes,
a running prediction is queued again and completes, finished results stay downloadable; a killed client follows
its job again with --job. The server simulates two GPUs (`--gpus 0,1` on a CPU machine: each job sees its GPU in
CUDA_VISIBLE_DEVICES and runs on the CPU), so the training and the prediction run side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk

from conftest import run_umamba
from remote_server import Server, api, events, job_pid, pid_alive, run_client, start_client, wait_for
from umamba.remote.client import Client

pytestmark = pytest.mark.slow


def _events(server, token, job):
    return json.loads(api(server, "GET", f"/jobs/{job}/events", token)[2])["events"]


def _environ(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def test_kill_and_restart_the_server(tmp_path, tiny_workspace, trained_tiny_model):
    data, store = tmp_path / "data", tmp_path / "client_store"
    proc = run_umamba(["import-model", str(trained_tiny_model), "--store", str(data / "models"), "--name", "tiny"],
                      tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    server = Server(data, "--gpus", "0,1", "--max-queue", "4").start()
    raw = tiny_workspace / "nnUNet_raw" / "Dataset990_TinyPhantom"
    case = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))[0]
    try:
        token = server.token
        assert (data / "token").stat().st_mode & 0o777 == 0o600
        # a training through the command-line client, which is killed once it has named its job
        trainer = start_client("train", str(raw), "3d_fullres", "all", "--epochs", "5", "--iterations-per-epoch",
                               "2", "--val-iterations", "1", "--no-final-validation", "--device", "cpu",
                               "--server", server.url, "--token", token, "--store", str(store), "--progress-json")
        train_job = None
        for line in trainer.stdout:
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("job"):
                train_job = event["job"]
                break
        trainer.kill()
        trainer.wait()
        assert train_job, trainer.stderr.read()[-3000:]
        wait_for(lambda: any(e["event"] == "checkpoint" for e in _events(server, token, train_job)), 600,
                 "the first checkpoint of the training", step=0.5)
        # a prediction on the other (simulated) GPU, running when the server dies
        predict_job = Client(server.url, token).submit(
            "predict", {"model": "tiny", "device": "cpu", "disable_tta": True}, [("channels", case)])["id"]
        pids = {j: wait_for(lambda j=j: job_pid(data, j), 60, f"the process of job {j}") for j in
                (train_job, predict_job)}
        gpus = {j: _environ(p).get("CUDA_VISIBLE_DEVICES") for j, p in pids.items()}
        assert sorted(gpus.values()) == ["0", "1"], gpus
        server.kill()
        for pid in pids.values():  # the job processes die with the server (nothing runs unsupervised)
            wait_for(lambda pid=pid: not pid_alive(pid), 30, f"job process {pid} to end")
        before = [e for e in _events_from_db(data, train_job) if e["event"] == "epoch_end"]
        server.start()

        # the killed client follows its training again; the training goes on from its last checkpoint
        proc = run_client("train", "--server", server.url, "--token", token, "--job", train_job, "--store", str(store),
                          "--progress-json", timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        evs = events(proc.stdout)
        notes = [e["message"] for e in evs if e["event"] == "log"]
        assert any("resumes from its last checkpoint" in n for n in notes), notes
        assert any(n.startswith("continuing from") for n in notes), notes
        epochs = [e["epoch"] for e in evs if e["event"] == "epoch_end"]
        assert before and epochs[-1] == 5 and epochs[len(before)] <= before[-1]["epoch"] + 1, (before, epochs)
        assert len(epochs) < 5 + len(before), "the training must not start again from epoch 1"
        model = Path(evs[-1]["model_folder"])
        assert evs[-1]["event"] == "done" and model.parent == store and (model / "umamba_card.json").is_file()

        # the prediction was queued again and completes; the client fetches it by job id
        out = tmp_path / "remote.nii.gz"
        proc = run_client("predict", "-i", str(case), "-o", str(out), "-m", "tiny", "--server", server.url,
                          "--token", token, "--job", predict_job, "--progress-json")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert any("queued again" in e.get("message", "") for e in events(proc.stdout))
        # a finished result is still there after another restart
        server.stop()
        server.start()
        status, _, body = api(server, "GET", f"/jobs/{predict_job}/result", token)
        assert status == 200 and body == out.read_bytes()
    finally:
        server.stop()
    # the trained model, now in the local store, segments with a local `umamba predict`
    label = tmp_path / "local.nii.gz"
    proc = run_umamba(["predict", "-i", str(case), "-o", str(label), "-m", model.name, "--store", str(store),
                       "--device", "cpu", "--disable-tta"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    image, seg = sitk.ReadImage(str(case)), sitk.ReadImage(str(label))
    assert seg.GetSize() == image.GetSize() and seg.GetSpacing() == image.GetSpacing()
    assert set(sitk.GetArrayFromImage(seg).ravel().tolist()) <= {0, 1}


def _events_from_db(data: Path, job: str) -> list[dict]:
    import sqlite3

    db = sqlite3.connect(f"file:{data / 'jobs.db'}?mode=ro", uri=True)
    try:
        return [json.loads(r[0]) for r in db.execute("SELECT body FROM events WHERE job_id = ? ORDER BY seq", (job,))]
    finally:
        db.close()
