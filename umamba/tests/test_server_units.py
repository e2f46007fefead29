"""The parts of `umamba serve` below HTTP: job store, tokens, archive checks, command building, GPU slots."""

from __future__ import annotations

import io
import stat
import time
import zipfile
from pathlib import Path

import pytest

from umamba.errors import UserError
from umamba.server.auth import generated_token, read_tokens, user_for
from umamba.server.commands import TRAIN_STEP, predict_steps, train_steps, with_continue
from umamba.server.files import extract_dataset_zip, upload_ending
from umamba.server.jobs import DONE, QUEUED, Job
from umamba.server.scheduler import QueueFull, Scheduler
from umamba.server.store_sqlite import SQLiteJobStore


def test_sqlite_store_keeps_jobs_and_events_across_reopening(tmp_path):
    store = SQLiteJobStore(tmp_path / "jobs.db")
    a, b = Job("a1", "alice", "predict", [["predict"]]), Job("b1", "bob", "train", [["x"]] * 4, gpus_needed=2)
    store.add(a)
    store.add(b)
    b.state, b.step = DONE, 3
    store.save(b)
    for i in range(3):
        assert store.append_event("a1", {"event": "progress", "current": i}) == i
    store.close()
    store = SQLiteJobStore(tmp_path / "jobs.db")
    assert [j.id for j in store.list(user="alice")] == ["a1"] and store.count(QUEUED) == 1
    got = store.get("b1")
    assert (got.state, got.step, got.gpus_needed, got.steps) == (DONE, 3, 2, [["x"]] * 4)
    assert [e["current"] for e in store.events("a1", since=1)] == [1, 2] and store.events("b1") == []
    assert store.get("nope") is None and "steps" not in got.public()


def test_tokens(tmp_path):
    token = generated_token(tmp_path / "token")
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600 and len(token) >= 40
    assert generated_token(tmp_path / "token") == token  # made once
    tokens = {token: "default"}
    assert user_for(f"Bearer {token}", tokens) == "default"
    for header in (None, "", token, f"Bearer {token[:-1]}", f"Basic {token}", "Bearer "):
        assert user_for(header, tokens) is None
    path = tmp_path / "tokens"
    path.write_text("# comment\nalice:" + "a" * 20 + "\n\n" + "b" * 20 + "\n")
    path.chmod(0o600)
    assert read_tokens(path) == {"a" * 20: "alice", "b" * 20: "default"}
    path.write_text("alice:short\n")
    with pytest.raises(UserError, match="16"):
        read_tokens(path)


def _zip(members: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize("members,links", [({"../x": b"1"}, ()), ({"/abs/x": b"1"}, ()), ({"d/../../x": b"1"}, ()),
                                           ({"C:/x": b"1"}, ()), ({"d/a": b"1"}, ("d/link",))])
def test_dataset_zip_members_outside_the_folder_are_refused(tmp_path, members, links):
    archive = tmp_path / "up.zip"
    archive.write_bytes(_zip(members, links))
    with pytest.raises(UserError, match="outside|link"):
        extract_dataset_zip(archive, tmp_path / "job" / "upload", 1 << 20)
    assert not (tmp_path / "job").exists() and not (tmp_path / "x").exists()


def test_dataset_zip_unpacks_inside_and_limits_its_size(tmp_path):
    archive = tmp_path / "up.zip"
    archive.write_bytes(_zip({"Dataset001_A/dataset.json": b"{}", "Dataset001_A/imagesTr/a_0000.nii.gz": b"x"}))
    assert extract_dataset_zip(archive, tmp_path / "u", 1 << 20) == tmp_path / "u" / "Dataset001_A"
    archive.write_bytes(_zip({"big": b"\0" * 5000}))
    with pytest.raises(UserError, match="limit"):
        extract_dataset_zip(archive, tmp_path / "v", 4000)
    archive.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable zip"):
        extract_dataset_zip(archive, tmp_path / "w", 4000)


def test_options_become_fixed_command_lines(tmp_path):
    assert upload_ending("A.NII.GZ") == ".nii.gz"
    with pytest.raises(UserError):
        upload_ending("../../evil.sh")
    steps = predict_steps({"folds": ["0", "1"], "disable_tta": True, "device": "cpu"}, [tmp_path / "i"],
                          tmp_path / "o", tmp_path / "m")
    assert steps[0][:2] == ["predict", "-i"] and "--disable-tta" in steps[0] and steps[0][-1] == "checkpoint_final.pth"
    for bad in ({"folds": ["../x"]}, {"device": "tpu"}, {"step_size": 2}, {"checkpoint": "../../x.pth"},
                {"trust_checkpoint": True}):
        with pytest.raises(UserError):
            predict_steps(bad, [tmp_path / "i"], tmp_path / "o", tmp_path / "m")
    steps = train_steps({"configuration": "2d", "fold": "0", "epochs": 3, "num_gpus": 2, "dataset_id": 7},
                        tmp_path / "src", tmp_path / "ws", tmp_path / "store", "m1")
    assert [s[0] for s in steps] == ["import-dataset", "plan", "train", "import-model"]
    assert steps[TRAIN_STEP][:4] == ["train", "7", "2d", "0"] and "--num-gpus" in steps[TRAIN_STEP]
    assert with_continue(steps[TRAIN_STEP])[-1] == "--continue"
    for bad in ({"pretrained": "/x.pth"}, {"epochs": -1}, {"fold": "7; rm"}, {"trainer": "../x"}):
        with pytest.raises(UserError):
            train_steps(bad, tmp_path / "src", tmp_path / "ws", tmp_path / "store", "m1")


def _run_all(scheduler: Scheduler, jobs: list[Job], timeout: float = 120) -> list[Job]:
    for job in jobs:
        scheduler.submit(job)
    scheduler.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [scheduler.store.get(j.id) for j in jobs]
        if all(j.state == DONE for j in got):
            scheduler.stop()
            return got
        time.sleep(0.1)
    scheduler.stop()
    raise AssertionError([(j.id, j.state, j.message) for j in got])


def _quick_job(i: int, gpus: int, store: Path) -> Job:
    # a real, quick umamba command (no torch): lists an empty model store
    return Job(f"j{i}", "u", "predict", [["models", "--store", str(store)]], gpus_needed=gpus, created=i)


def _overlap(a: Job, b: Job) -> bool:
    return a.started < b.finished and b.started < a.finished


def test_gpu_slots_with_simulated_gpus(tmp_path):
    for i in range(6):
        (tmp_path / "jobs" / f"j{i}").mkdir(parents=True)
    scheduler = Scheduler(SQLiteJobStore(tmp_path / "jobs.db"), tmp_path / "jobs", ["0", "1", "2"], max_queue=10)
    with pytest.raises(UserError, match="3"):
        scheduler.check_room(4)
    got = _run_all(scheduler, [_quick_job(0, 2, tmp_path), _quick_job(1, 1, tmp_path), _quick_job(2, 2, tmp_path),
                               _quick_job(3, 1, tmp_path), _quick_job(4, 3, tmp_path), _quick_job(5, 1, tmp_path)])
    assert got[0].gpus == ["0", "1"] and got[1].gpus == ["2"]  # first come, first placed
    assert [len(j.gpus) for j in got] == [2, 1, 2, 1, 3, 1]
    for a in got:
        for b in got:
            if a is not b and _overlap(a, b):
                assert not set(a.gpus) & set(b.gpus), (a.id, a.gpus, b.id, b.gpus)
    assert got[4].started >= max(j.finished for j in got[:4]) - 1e-3  # all three GPUs: waits for the others


def test_cpu_server_runs_one_job_at_a_time_and_bounds_its_queue(tmp_path):
    for i in range(3):
        (tmp_path / "jobs" / f"j{i}").mkdir(parents=True)
    scheduler = Scheduler(SQLiteJobStore(tmp_path / "jobs.db"), tmp_path / "jobs", [], max_queue=3)
    with pytest.raises(UserError, match="none"):
        scheduler.check_room(2)
    jobs = [_quick_job(i, 1, tmp_path) for i in range(3)]
    for job in jobs:
        scheduler.submit(job)
    with pytest.raises(QueueFull) as full:
        scheduler.submit(_quick_job(9, 1, tmp_path))
    assert full.value.retry_after >= 1
    scheduler.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(scheduler.store.get(j.id).state == DONE for j in jobs):
        time.sleep(0.1)
    scheduler.stop()
    got = [scheduler.store.get(j.id) for j in jobs]
    assert all(j.state == DONE and j.gpus == [] for j in got), [(j.state, j.message) for j in got]
    assert not any(_overlap(a, b) for a in got for b in got if a is not b)
    assert (tmp_path / "jobs" / "j0" / "log.txt").is_file()  # each job keeps its stderr
