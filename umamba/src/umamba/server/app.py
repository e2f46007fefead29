"""The HTTP routes of `umamba serve` (FastAPI). Every route but /healthz needs `Authorization: Bearer TOKEN`.

    GET  /healthz                        service, version, API version, GPUs, queue (no token needed)
    GET  /models                         the server store's model cards
    GET  /models/{name}/download         a model zip for `umamba import-model`
    POST /jobs/predict                   form: options (JSON), channels (one file per input channel, in order)
    POST /jobs/train                     form: options (JSON), dataset (a zip of a dataset folder)
    GET  /jobs                           the caller's jobs
    GET  /jobs/{id}                      one job
    GET  /jobs/{id}/events?since=N&wait=S  events N, N+1, ... (waits up to S seconds for the first new one)
    GET  /jobs/{id}/result               the label file (predict) or the model zip (train)
    POST /jobs/{id}/cancel               stop the job and its processes

Errors are JSON `{"detail": {"message": ..., "hint": ...}}`; a full queue answers 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from umamba import __version__
from umamba.errors import UserError
from umamba.model_store import CARD_FILE, list_models
from umamba.server import API_VERSION
from umamba.server.auth import user_for
from umamba.server.commands import predict_steps, train_steps
from umamba.server.files import UPLOAD_ENDINGS, check_name, extract_dataset_zip, model_zip, save_stream, upload_ending
from umamba.server.jobs import DONE, FINISHED, QUEUED, RUNNING, Job
from umamba.server.scheduler import QueueFull, Scheduler
from umamba.server.store_sqlite import SQLiteJobStore


@dataclass
class ServerConfig:
    data_dir: Path
    gpus: list[str]                 # GPU ids for the slots; empty: one CPU slot
    tokens: dict[str, str]          # token -> user
    max_queue: int = 16
    max_upload_bytes: int = 4 << 30

    @property
    def store(self) -> Path:
        return self.data_dir / "models"


class HTTPProblem(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.hint, self.headers = status, message, hint, headers or {}


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a request body over the limit, by Content-Length or while it arrives."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(scope, receive, send)
        seen = 0

        async def counting():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message
        try:
            await self.app(scope, counting, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        response = _problem(413, f"the upload is larger than this server's limit of {self.limit // (1 << 20)} MB",
                            "ask the server's administrator to raise --max-upload-mb")
        await response(scope, receive, send)


def _problem(status: int, message: str, hint: str | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": {"message": message, "hint": hint}}, status_code=status, headers=headers)


def create_app(config: ServerConfig) -> FastAPI:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    jobs_dir = config.data_dir / "jobs"
    jobs_dir.mkdir(exist_ok=True)
    config.store.mkdir(exist_ok=True)
    (config.data_dir / "tmp").mkdir(exist_ok=True)
    store = SQLiteJobStore(config.data_dir / "jobs.db")
    scheduler = Scheduler(store, jobs_dir, config.gpus, config.max_queue)

    @asynccontextmanager
    async def lifespan(_app):
        scheduler.start()
        yield
        scheduler.stop()

    app = FastAPI(title="umamba serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    app.state.scheduler = scheduler

    @app.exception_handler(HTTPProblem)
    async def on_problem(_request, exc: HTTPProblem):
        return _problem(exc.status, exc.message, exc.hint, exc.headers)

    @app.exception_handler(UserError)
    async def on_user_error(_request, exc: UserError):
        return _problem(400, exc.message, exc.hint)

    @app.exception_handler(QueueFull)
    async def on_queue_full(_request, exc: QueueFull):
        return _problem(503, str(exc), "the client retries by itself", {"Retry-After": str(exc.retry_after)})

    def user(request: Request) -> str:
        found = user_for(request.headers.get("authorization"), config.tokens)
        if found is None:
            raise HTTPProblem(401, "missing or wrong token", "pass --token TOKEN (the server prints where its token "
                                   "is stored when it starts)", {"WWW-Authenticate": "Bearer"})
        return found

    def own_job(job_id: str, who: str) -> Job:
        job = store.get(job_id) if job_id.isalnum() else None
        if job is None or job.user != who:  # another user's job looks exactly like a missing one
            raise HTTPProblem(404, f"no job {job_id} on this server", "`umamba ... --server URL` lists nothing "
                                   "older than the server's data folder; check the job id")
        return job

    @app.get("/healthz")
    async def healthz():
        return {"service": "umamba", "version": __version__, "api": API_VERSION, "gpus": config.gpus,
                "slots": len(scheduler.slots), "queued": store.count(QUEUED), "running": store.count(RUNNING),
                "max_queue": config.max_queue, "max_upload_mb": config.max_upload_bytes >> 20}

    api = APIRouter()

    @api.get("/models")
    async def models(who: str = Depends(user)):
        return {"models": list_models(config.store)}

    @api.get("/models/{name}/download")
    async def download_model(name: str, who: str = Depends(user)):
        return await run_in_threadpool(_model_file, name)

    def _model_file(name: str) -> FileResponse:
        model_dir = config.store / check_name(name, "model name")
        if not (model_dir / CARD_FILE).is_file():
            raise HTTPProblem(404, f"no model named '{name}' on this server",
                              "see `umamba models --server URL` for the names")
        target = config.data_dir / "tmp" / f"{secrets.token_hex(8)}.zip"
        model_zip(model_dir, target)
        from starlette.background import BackgroundTask

        return FileResponse(target, media_type="application/zip", filename=f"{name}.zip",
                            background=BackgroundTask(target.unlink, missing_ok=True))

    @api.post("/jobs/predict", status_code=201)
    async def submit_predict(request: Request, who: str = Depends(user)):
        scheduler.check_room(1)  # a full queue says so before the upload is read
        async with request.form(max_files=64, max_fields=16) as form:
            options = _options(form.get("options"))
            name = check_name(options.pop("model", None) or "", "model name")
            model_dir = config.store / name
            if not (model_dir / CARD_FILE).is_file():
                have = [c["name"] for c in list_models(config.store)]
                raise HTTPProblem(404, f"no model named '{name}' on this server",
                                  f"models on the server: {', '.join(have)}" if have else "the server has no models")
            uploads = form.getlist("channels")
            if not uploads or any(isinstance(u, str) for u in uploads):
                raise UserError("no image uploaded", "upload one file per input channel (form field 'channels')")
            endings = [upload_ending(u.filename) for u in uploads]
            out_ending = options.pop("output_ending", None) or endings[0]
            if out_ending not in UPLOAD_ENDINGS:
                raise UserError(f"unsupported output format {out_ending!r}", f"use one of {', '.join(UPLOAD_ENDINGS)}")
            job = _new_job(who, "predict", options)
            folder = scheduler.job_dir(job.id)

            def save() -> list[Path]:
                (folder / "inputs").mkdir(parents=True)
                (folder / "outputs").mkdir()
                return [_saved(u.file, folder / "inputs" / f"case_{i:04d}{e}")
                        for i, (u, e) in enumerate(zip(uploads, endings))]
            inputs = await _in_folder(folder, save)
        job.result = f"outputs/case{out_ending}"
        job.steps = predict_steps(options, inputs, folder / job.result, model_dir)
        return _submit(job, folder)

    @api.post("/jobs/train", status_code=201)
    async def submit_train(request: Request, who: str = Depends(user)):
        scheduler.check_room(1)
        async with request.form(max_files=1, max_fields=16) as form:
            options = _options(form.get("options"))
            upload = form.get("dataset")
            if upload is None or isinstance(upload, str):
                raise UserError("no dataset uploaded", "upload a zip of the dataset folder (form field 'dataset')")
            gpus = options.get("num_gpus") or 1
            scheduler.check_room(gpus if isinstance(gpus, int) else 1)
            job = _new_job(who, "train", options)
            folder = scheduler.job_dir(job.id)

            def unpack() -> Path:
                folder.mkdir(parents=True)
                archive = _saved(upload.file, folder / "upload.zip")
                try:
                    return extract_dataset_zip(archive, folder / "upload", 4 * config.max_upload_bytes)
                finally:
                    archive.unlink(missing_ok=True)
            source = await _in_folder(folder, unpack)
        dataset_name = check_name(options.get("dataset_name") or "Remote", "dataset name")
        job.result = f"{dataset_name}_{options.get('trainer') or 'bot'}_{options.get('configuration') or '3d_fullres'}" \
                     f"_{job.id[:6]}"
        job.steps = train_steps(options, source, folder / "workspace", config.store, check_name(job.result, "model"))
        job.gpus_needed = options.get("num_gpus") or 1
        return _submit(job, folder)

    def _new_job(who: str, kind: str, options: dict) -> Job:
        return Job(id=secrets.token_hex(8), user=who, kind=kind, steps=[], options=dict(options))

    async def _in_folder(folder: Path, work):
        """Run the file work of a submission; on any failure the job folder goes (nothing half-written stays)."""
        try:
            return await run_in_threadpool(work)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPProblem(507, f"the server could not store the upload ({exc.strerror or exc})",
                              "the server's disk may be full; tell its administrator") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def _submit(job: Job, folder: Path) -> dict:
        try:
            scheduler.submit(job)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return job.public()

    @api.get("/jobs")
    async def jobs(who: str = Depends(user)):
        return {"jobs": [j.public() for j in store.list(user=who)]}

    @api.get("/jobs/{job_id}")
    async def job(job_id: str, who: str = Depends(user)):
        return own_job(job_id, who).public()

    @api.get("/jobs/{job_id}/events")
    async def events(job_id: str, since: int = 0, wait: float = 0, who: str = Depends(user)):
        own_job(job_id, who)
        deadline = asyncio.get_running_loop().time() + max(0.0, min(wait, 30.0))
        while True:
            found = store.events(job_id, since)
            current = store.get(job_id)
            if found or current.state in FINISHED or asyncio.get_running_loop().time() >= deadline:
                return {"events": found, "next": max(0, since) + len(found), "job": current.public()}
            await asyncio.sleep(0.2)

    @api.get("/jobs/{job_id}/result")
    async def result(job_id: str, who: str = Depends(user)):
        job = own_job(job_id, who)
        if job.state != DONE:
            raise HTTPProblem(409, f"job {job_id} is {job.state}, it has no result", "wait until it is done")
        if job.kind == "predict":
            path = scheduler.job_dir(job_id) / job.result
            if not path.is_file():
                raise HTTPProblem(410, f"the result of job {job_id} is gone from the server")
            return FileResponse(path, filename=Path(job.result).name)
        return await run_in_threadpool(_model_file, job.result)

    @api.post("/jobs/{job_id}/cancel")
    async def cancel(job_id: str, who: str = Depends(user)):
        return (await run_in_threadpool(scheduler.cancel, own_job(job_id, who))).public()

    app.include_router(api)
    return app


def _saved(src, target: Path) -> Path:
    save_stream(src, target)
    return target


def _options(raw) -> dict:
    if raw is None:
        return {}
    try:
        options = json.loads(raw)
    except (TypeError, ValueError):
        raise UserError("the form field 'options' is not JSON") from None
    if not isinstance(options, dict):
        raise UserError("the form field 'options' must be a JSON object")
    return options
