"""`umamba predict/train/models --server URL`: the same arguments, outputs, events and exit codes as locally.

The job's events come back from the server and are written by this process's Reporter, so `--progress-json`
readers (the Slicer module) see what a local run writes, plus a `log` event naming the job id. Ctrl-C or SIGTERM
(Slicer's Cancel) cancels the job on the server; a client that was killed follows the job again with `--job ID`.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

from umamba.errors import UserError
from umamba.progress import Reporter
from umamba.remote import token_from
from umamba.remote.client import Client
from umamba.server.jobs import FINISHED

# umamba.server.files.UPLOAD_ENDINGS (longest first), without that module's imports
UPLOAD_ENDINGS = (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".mha")


def _note(reporter: Reporter, message: str, level: str = "info") -> None:
    """A log event under --progress-json; otherwise a line on stderr (stdout may be a listing or JSON)."""
    if reporter.json_mode:
        reporter.log(message, level)
    else:
        sys.stderr.write(message + "\n")


def _client(args: argparse.Namespace, reporter: Reporter) -> Client:
    client = Client(args.server, token_from(args), log=lambda m: _note(reporter, m, "warning"))
    health = client.health()
    gpus = ", ".join(health.get("gpus") or []) or "none"
    _note(reporter, f"server {client.url}: umamba {health.get('version')}, GPUs: {gpus}, "
                    f"{health.get('queued')} job(s) waiting")
    return client


@contextmanager
def _cancel_on_interrupt(client: Client, job_id_holder: list):
    """SIGTERM behaves like Ctrl-C; either cancels the job on the server before leaving."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(_signum, _frame):
        raise KeyboardInterrupt
    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (embedded use): no handler
        previous = None
    try:
        yield
    except KeyboardInterrupt:
        if job_id_holder:
            try:
                client.reconnect_s = 10
                client.cancel(job_id_holder[0])
            except UserError:
                pass
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def follow(client: Client, job_id: str, reporter: Reporter) -> tuple[dict, dict]:
    """Re-emit the job's events until it ends; returns (job, the server's `done` event fields or {})."""
    since, done = 0, {}
    while True:
        answer = client.events(job_id, since)
        for event in answer["events"]:
            since += 1
            name = event.pop("event", None)
            event.pop("time", None)
            if name == "done":
                done = event  # the server's paths: replaced by this machine's in the client's own `done`
            elif isinstance(name, str):
                reporter.emit(name, **event)
        job = answer["job"]
        if job["state"] in FINISHED and not answer["events"]:
            return job, done


def _start(client: Client, args, reporter: Reporter, kind: str, options: dict, files) -> str:
    if args.job:
        job = client.job(args.job)
        if job["kind"] != kind:
            raise UserError(f"job {args.job} is a {job['kind']} job", f"re-attach with `umamba {job['kind']}`")
        reporter.log(f"following job {args.job} on {client.url}")
        return args.job
    reporter.stage("upload", f"sending {kind} job to {client.url}")
    job = client.submit(kind, options, files)
    reporter.emit("log", message=f"job {job['id']} on {client.url} (follow it again with --job {job['id']})",
                  level="info", job=job["id"])
    return job["id"]


def _outcome(job: dict) -> int:
    if job["state"] == "done":
        return 0
    return int(job.get("returncode") or 1)


# -- predict ----------------------------------------------------------------------------------------------------
def image_ending(path: Path) -> str | None:
    name = str(path).lower()
    return next((e for e in UPLOAD_ENDINGS if name.endswith(e)), None)


def predict(args: argparse.Namespace, reporter: Reporter) -> int:
    if args.trust_checkpoint:
        raise UserError("--trust-checkpoint cannot be used with --server",
                        "a server never runs pickled code for a client; use a model stored on the server")
    files = [Path(p).expanduser() for p in args.input]
    output = Path(args.output).expanduser()
    if not args.job:
        for f in files:
            if f.is_dir():
                raise UserError(f"{f} is a folder; with --server, -i takes the channel files of one case",
                                "send one case per command (-i CASE_0000.nii.gz [CASE_0001.nii.gz ...])")
            if not f.is_file():
                raise UserError(f"input {f} does not exist", "check the path")
            if image_ending(f) not in UPLOAD_ENDINGS:
                raise UserError(f"{f.name}: with --server, images go as {', '.join(UPLOAD_ENDINGS)}",
                                "convert it (e.g. in Slicer: Save as .nii.gz)")
    ending = image_ending(output)
    if ending not in UPLOAD_ENDINGS:
        raise UserError(f"the output {output} must be a label file ending in {', '.join(UPLOAD_ENDINGS)}")
    from umamba.cli.predict import sliding_window_settings  # torch-free; here to keep the import graph acyclic

    step_size, mirroring = sliding_window_settings(args)  # --fast reaches the server as its step and mirroring
    options = {"model": str(args.model), "folds": args.folds, "disable_tta": not mirroring,
               "step_size": step_size, "device": args.device, "checkpoint": args.checkpoint,
               "output_ending": ending}
    client = _client(args, reporter)
    holder: list = []
    with _cancel_on_interrupt(client, holder):
        t0 = time.time()
        holder.append(_start(client, args, reporter, "predict", options, [("channels", f) for f in files]))
        sent = time.time()
        job, done = follow(client, holder[0], reporter)
        if job["state"] != "done":
            return _outcome(job)
        reporter.stage("download", f"fetching the label file into {output}")
        client.download(f"/jobs/{holder[0]}/result", output)
    end = time.time()
    timing = {"upload_s": round(sent - t0, 3), "total_s": round(end - t0, 3)}
    if job.get("started") and job.get("created") and job.get("finished"):
        timing.update(queue_s=round(job["started"] - job["created"], 3), run_s=round(job["finished"] - job["started"], 3))
    done.update(outputs=[str(output)], model=str(args.model), job=holder[0], server=client.url, timing=timing)
    reporter.done(done.pop("outputs"), **done)
    return 0


# -- train ------------------------------------------------------------------------------------------------------
def _dataset_folder(spec: str, workspace: str | None) -> Path:
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    from umamba.paths import resolve_workspace

    raw = resolve_workspace(workspace).raw
    candidates = sorted(raw.glob(f"Dataset{int(spec):03d}_*")) if spec.isdigit() else [raw / spec]
    candidates = [c for c in candidates if c.is_dir()]
    if len(candidates) != 1:
        raise UserError(f"no raw dataset '{spec}' in {raw}" if not candidates else f"several datasets match '{spec}'",
                        "pass the dataset folder itself (nnU-Net raw layout or any layout of `umamba import-dataset`)")
    return candidates[0]


def _zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:  # images are compressed already
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in rel.parts):
                zf.write(path, f"{folder.name}/{rel.as_posix()}")
    return target


def train(args: argparse.Namespace, reporter: Reporter) -> int:
    from umamba.model_store import import_model
    from umamba.paths import default_model_store

    if args.pretrained:
        raise UserError("--pretrained cannot be used with --server",
                        "a server never loads a checkpoint (pickled code) sent by a client")
    missing = [n for n in ("dataset", "configuration", "fold") if getattr(args, n) is None]
    if missing and not args.job:
        raise UserError(f"missing argument(s): {' '.join(m.upper() for m in missing)}",
                        "usage: umamba train DATASET CONFIG FOLD --server URL (DATASET: id, name or folder)")
    client = _client(args, reporter)
    store = Path(args.store).expanduser() if args.store else default_model_store()
    holder: list = []
    with _cancel_on_interrupt(client, holder), tempfile.TemporaryDirectory(prefix="umamba-upload-") as tmp:
        files = []
        options: dict = {}
        if not args.job:
            folder = _dataset_folder(str(args.dataset), args.workspace)
            match = re.match(r"^Dataset(\d{3})_(.+)$", folder.name)
            name = re.sub(r"[^A-Za-z0-9_-]", "_", match.group(2) if match else folder.name)[:60] or "Remote"
            options = {"dataset_name": name, "configuration": args.configuration, "fold": str(args.fold),
                       "trainer": args.trainer, "epochs": args.epochs, "iterations_per_epoch": args.iterations_per_epoch,
                       "val_iterations": args.val_iterations, "num_gpus": args.num_gpus, "compile": args.compile,
                       "final_validation": args.final_validation, "device": args.device}
            if match:
                options["dataset_id"] = int(match.group(1))
            options = {k: v for k, v in options.items() if v is not None}
            reporter.stage("upload", f"packing {folder}")
            files = [("dataset", _zip_folder(folder, Path(tmp) / f"{folder.name}.zip"))]
        holder.append(_start(client, args, reporter, "train", options, files))
        job, done = follow(client, holder[0], reporter)
        if job["state"] != "done":
            return _outcome(job)
        reporter.stage("download", f"fetching the trained model {job['result']} into {store}")
        archive = client.download(f"/jobs/{holder[0]}/result", Path(tmp) / "model.zip")
        cards = import_model(archive, store, name=job["result"], force=True)
    model = store / cards[0]["name"]
    done.update(model_folder=str(model), model=cards[0]["name"], job=holder[0], server=client.url,
                checkpoint=None)
    done.pop("outputs", None)
    reporter.done([str(model)], **done)
    return 0


# -- models -----------------------------------------------------------------------------------------------------
def models(args: argparse.Namespace, reporter: Reporter) -> int:
    from umamba.cli.models import show_cards
    from umamba.model_store import import_model
    from umamba.paths import default_model_store

    if args.delete:
        raise UserError("--delete works on the local store only", "models on a server are managed on the server")
    client = _client(args, reporter)
    if args.download:
        store = Path(args.store).expanduser() if args.store else default_model_store()
        with tempfile.TemporaryDirectory(prefix="umamba-model-") as tmp:
            reporter.stage("download", f"fetching {args.download} from {client.url}")
            archive = client.download(f"/models/{_name(args.download)}/download", Path(tmp) / "model.zip")
            cards = import_model(archive, store, name=args.download, force=args.force)
        reporter.done([str(store / c["name"]) for c in cards], cards=cards)
        return 0
    show_cards(client.models(), args, reporter, f"{client.url}/models/", f"no models on {client.url}",
               server=client.url)
    return 0


def _name(name: str) -> str:
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", name):
        raise UserError(f"invalid model name '{name}'")
    return name
