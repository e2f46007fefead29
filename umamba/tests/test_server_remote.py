"""`umamba predict/models --server` against a real `umamba serve` on 127.0.0.1: same labels as a local run, a
bounded queue with 503 + Retry-After, and the security rules. One server (1 slot, queue of 2, per-user tokens,
1 MB upload limit) is shared by the tests of this file; clients run with torch, nnunetv2 and numpy blocked."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import SimpleITK as sitk

from conftest import run_umamba
from remote_server import Server, api, events, run_client, start_client, wait_for
from umamba import __version__
from umamba.errors import UserError
from umamba.remote.client import check_compatible

pytestmark = pytest.mark.slow
ALICE, BOB = "alice-token-0123456789abcdef", "bob-token-0123456789abcdefgh"


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_tiny_model):
    root = tmp_path_factory.mktemp("serve")
    tokens = root / "tokens"
    tokens.write_text(f"# user:token\nalice:{ALICE}\nbob:{BOB}\n")
    tokens.chmod(0o600)
    data = root / "data"
    proc = run_umamba(["import-model", str(trained_tiny_model), "--store", str(data / "models"), "--name", "tiny"],
                      root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    srv = Server(data, "--gpus", "none", "--max-queue", "2", "--max-upload-mb", "1", token_file=tokens).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def case(trained_tiny_model) -> Path:
    raw = trained_tiny_model.parents[2] / "nnUNet_raw" / "Dataset990_TinyPhantom" / "imagesTs"
    return sorted(raw.glob("*_0000.nii.gz"))[0]


@pytest.fixture(scope="module")
def local_label(trained_tiny_model, case, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "label.nii.gz"
    proc = run_umamba(["predict", "-i", str(case), "-o", str(out), "-m", str(trained_tiny_model), "--device", "cpu",
                       "--disable-tta"], out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def voxels(path: Path):
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image).tolist(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def remote_predict(server, case: Path, out: Path, *extra: str, token: str = ALICE):
    return run_client("predict", "-i", str(case), "-o", str(out), "-m", "tiny", "--device", "cpu", "--disable-tta",
                      "--server", server.url, "--token", token, "--progress-json", *extra)


def test_remote_predict_gives_the_local_labels(server, case, local_label, tmp_path):
    out = tmp_path / "remote.nii.gz"
    proc = remote_predict(server, case, out)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    evs = events(proc.stdout)
    names = [e["event"] for e in evs]
    assert "progress" in names and names.count("done") == 1 and names[-1] == "done"
    assert evs[-1]["outputs"] == [str(out)] and evs[-1]["timing"]["total_s"] > 0
    assert voxels(out) == voxels(local_label)
    assert sum(map(sum, (sum(s, []) for s in voxels(out)[0]))) > 0  # a label, not an empty volume
    listed = run_client("models", "--server", server.url, "--token", ALICE, "--json")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["tiny"]
    fetched = run_client("models", "--server", server.url, "--token", ALICE, "--download", "tiny", "--store",
                         str(tmp_path / "store"))
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    card = json.loads((tmp_path / "store" / "tiny" / "umamba_card.json").read_text())
    assert card["trainer"] == "nnUNetTrainerUMambaBot" and card["folds"] == ["all"]


@pytest.mark.shared_data
def test_remote_predict_of_a_spinal_cord_case_gives_the_local_labels(server, trained_tiny_model, shared_data,
                                                                     tmp_path):
    """A real MR case (a spinal-cord test case, oblique direction, 17 mm slices), cropped to 20 x 20 x 1 voxels
    (slicing keeps its geometry) so that both predictions take seconds: the server's label file equals the local
    one voxel for voxel, with the same geometry."""
    full = sitk.ReadImage(str(shared_data / "Dataset503_SpinalCord" / "imagesTs" / "cord_005_0000.nii.gz"))
    case = tmp_path / "cord_005_0000.nii.gz"
    sitk.WriteImage(full[10:30, 10:30, 2:3], str(case))
    local = tmp_path / "local.nii.gz"
    proc = run_umamba(["predict", "-i", str(case), "-o", str(local), "-m", str(trained_tiny_model), "--device", "cpu",
                       "--disable-tta"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = tmp_path / "remote.nii.gz"
    proc = remote_predict(server, case, remote)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert voxels(remote) == voxels(local)
    assert voxels(remote)[2] == pytest.approx(full[10:30, 10:30, 2:3].GetOrigin(), abs=1e-5)  # NIfTI: float32


def test_eight_clients_on_one_slot_with_a_queue_of_two(server, case, local_label, tmp_path):
    clients = [start_client("predict", "-i", str(case), "-o", str(tmp_path / f"out{i}.nii.gz"), "-m", "tiny",
                            "--device", "cpu", "--disable-tta", "--server", server.url, "--token", ALICE,
                            "--progress-json") for i in range(8)]
    outputs = [c.communicate(timeout=600) for c in clients]
    for client, (stdout, stderr) in zip(clients, outputs):
        assert client.returncode == 0, stdout[-2000:] + stderr[-2000:]
    for i in range(8):
        assert voxels(tmp_path / f"out{i}.nii.gz") == voxels(local_label)
    retried = [o for o, _ in outputs if any("queue is full" in e.get("message", "") for e in events(o))]
    assert retried, "with 8 clients, 1 slot and a queue of 2, some client must have been told to retry"
    jobs = json.loads(api(server, "GET", "/jobs", ALICE)[2])["jobs"]
    assert sum(j["state"] == "done" for j in jobs) >= 8 and not [j for j in jobs if j["state"] in ("queued", "running")]


def test_full_queue_answers_503_with_retry_after(server, case, tmp_path):
    """Fill the slot and the queue with held jobs, then one more submission gets 503 + Retry-After."""
    jobs = []
    for i in range(3):
        status, _, body = _submit_raw(server, case, ALICE)
        assert status == 201, body
        jobs.append(json.loads(body)["id"])
    status, headers, body = _submit_raw(server, case, ALICE)
    for job in jobs:
        api(server, "POST", f"/jobs/{job}/cancel", ALICE)
    assert status == 503 and int(headers["retry-after"]) >= 1, (status, body)
    def states():
        return [json.loads(api(server, "GET", f"/jobs/{j}", ALICE)[2])["state"] for j in jobs]
    wait_for(lambda: set(states()) == {"cancelled"}, 30, "the three jobs to be cancelled")
    assert not [p for p in server.data_dir.glob("jobs/*/outputs/*")
                if p.parent.parent.name in jobs]  # the cancelled prediction wrote nothing


def _multipart(fields: dict, files: list[tuple[str, str, bytes]]) -> tuple[bytes, dict]:
    boundary = "testboundary42"
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                  f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _submit_raw(server, case: Path, token: str | None, data: bytes | None = None):
    body, headers = _multipart({"options": json.dumps({"model": "tiny", "device": "cpu"})},
                               [("channels", "x_0000.nii.gz", case.read_bytes() if data is None else data)])
    return api(server, "POST", "/jobs/predict", token, body, headers)


def _send_big(server, headers: dict) -> tuple[int, bytes]:
    """POST a 2 MB multipart body (by Content-Length or in chunks), reading the answer even when the server
    answers before the whole body is sent."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", "/jobs/predict")
    for k, v in {"Authorization": f"Bearer {ALICE}", "Content-Type": "multipart/form-data; boundary=b", **headers}.items():
        conn.putheader(k, v)
    conn.endheaders()
    head = b'--b\r\nContent-Disposition: form-data; name="channels"; filename="x_0000.nii.gz"\r\n\r\n'
    chunk = b"\0" * (256 << 10)
    try:
        for i in range(8):
            chunk = head + chunk[len(head):] if i == 0 else b"\0" * (256 << 10)
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if "Transfer-Encoding" in headers else chunk)
    except OSError:  # the server stopped reading: its answer is waiting
        pass
    response = conn.getresponse()
    status, body = response.status, response.read()
    conn.close()
    return status, body


def _big_image(folder: Path) -> Path:
    path = folder / "big_0000.nii.gz"
    path.write_bytes(bytes(range(256)) * (5 << 12))  # 5 MB of incompressible-looking bytes
    return path


def _zip_with(member: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Dataset001_X/dataset.json", "{}")
        zf.writestr(member, "escaped")
    return buf.getvalue()


def test_security(server, case, tmp_path):
    jobs_dir = server.data_dir / "jobs"
    before = sorted(p.name for p in jobs_dir.iterdir())
    n_jobs = len(json.loads(api(server, "GET", "/jobs", ALICE)[2])["jobs"])
    # /healthz is open; everything else needs a valid token, and nothing runs without one
    assert api(server, "GET", "/healthz")[0] == 200
    for token in (None, "wrong-token-0123456789abcdef", ALICE[:-1]):
        assert api(server, "GET", "/models", token)[0] == 401
        status, headers, _ = _submit_raw(server, case, token)
        assert status == 401 and headers.get("www-authenticate") == "Bearer"
    proc = run_client("models", "--server", server.url, "--token", "nope")
    assert proc.returncode == 2 and "token" in proc.stderr
    # an upload over the limit (1 MB): refused by its Content-Length before the body is read, and by counting
    # when the body comes without one (chunked)
    for headers in ({"Content-Length": str(2 << 20)}, {"Transfer-Encoding": "chunked"}):
        status, body = _send_big(server, headers)
        assert status == 413 and b"limit" in body, (headers, status, body)
    proc = run_client("predict", "-i", str(_big_image(tmp_path)), "-o", str(tmp_path / "o.nii.gz"), "-m", "tiny",
                      "--server", server.url, "--token", ALICE)
    assert proc.returncode == 2 and "larger than" in proc.stderr, proc.stderr[-2000:]
    # dataset archives whose members would land outside the job folder
    for member in ("../escaped.txt", "/tmp/escaped-umamba.txt", "Dataset001_X/../../escaped.txt"):
        body, headers = _multipart({"options": "{}"}, [("dataset", "d.zip", _zip_with(member))])
        status, _, answer = api(server, "POST", "/jobs/train", ALICE, body, headers)
        assert status == 400 and b"outside" in answer, (member, status, answer)
    assert not list(server.data_dir.rglob("escaped*")) and not Path("/tmp/escaped-umamba.txt").exists()
    assert sorted(p.name for p in jobs_dir.iterdir()) == before  # no job folder left behind
    assert len(json.loads(api(server, "GET", "/jobs", ALICE)[2])["jobs"]) == n_jobs
    # a job of another user does not exist for bob
    status, _, body = _submit_raw(server, case, ALICE)
    job = json.loads(body)["id"]
    for method, path in (("GET", f"/jobs/{job}"), ("GET", f"/jobs/{job}/events"), ("GET", f"/jobs/{job}/result"),
                         ("POST", f"/jobs/{job}/cancel")):
        assert api(server, method, path, BOB)[0] == 404, path
    assert job not in {j["id"] for j in json.loads(api(server, "GET", "/jobs", BOB)[2])["jobs"]}
    assert api(server, "GET", f"/jobs/{job}", ALICE)[0] == 200
    api(server, "POST", f"/jobs/{job}/cancel", ALICE)


def test_bad_input_comes_back_as_the_local_error(server, case, tmp_path):
    # two channel files for a one-channel model: the server's `umamba predict` refuses them, as a local one does
    proc = run_client("predict", "-i", str(case), str(case), "-o", str(tmp_path / "out.nii.gz"), "-m", "tiny",
                      "--server", server.url, "--token", ALICE, "--progress-json")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = events(proc.stdout)[-1]
    assert last["event"] == "error" and "channel" in last["message"] and not (tmp_path / "out.nii.gz").exists()
    proc = run_client("predict", "-i", str(case), "-o", str(tmp_path / "o.nii.gz"), "-m", "no_such_model",
                      "--server", server.url, "--token", ALICE)
    assert proc.returncode == 2 and "no model named 'no_such_model'" in proc.stderr and "tiny" in proc.stderr


def test_client_refuses_what_is_not_a_compatible_umamba_server(tmp_path):
    import http.server

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        proc = run_client("models", "--server", f"http://127.0.0.1:{httpd.server_port}", "--token", ALICE)
    finally:
        httpd.shutdown()
    assert proc.returncode == 2 and "is not a umamba server" in proc.stderr
    with pytest.raises(UserError) as err:
        check_compatible("http://gpu:8765", {"service": "umamba", "version": "9.0.0", "api": 99})
    assert "9.0.0" in err.value.message and __version__ in err.value.message


def test_client_imports_neither_torch_nor_nnunet():
    code = ("import sys, umamba.cli, umamba.cli.predict, umamba.cli.train, umamba.cli.models, umamba.remote.jobs, "
            "umamba.remote.client, umamba.model_store; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'nnunetv2', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
