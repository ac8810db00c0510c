"""`inpaint serve`: a local web page and HTTP API over `inpaint.fill`.

Starlette (not FastAPI): five routes and our own JSON errors need no pydantic or OpenAPI layer;
uvicorn runs it. One model and one face aligner are loaded once; every fill and face detection
runs on one worker thread (a queue of one), so two browsers at once both get their result.
Uploads are decoded and checked (size, pixels, mask size, fields) before they queue. Every bad
input is a 4xx with `{"error": "..."}`; anything unexpected is a 500 with a message, never a
traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import io
import logging
import re
import tempfile
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from inpaint import SearchOptions, __version__
from inpaint.errors import ImageReadError, InpaintError, NoFaceFound, UsageError
from inpaint.fill import convex_hull, default_grow, fill, save_photo
from inpaint.images import IMAGE_FORMATS, Photo, read_photo
from inpaint.masks import FACE_REGIONS as REGIONS

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 32 * 2**20  # a 24-megapixel JPEG is ~12 MB, its PNG ~40 MB: PNGs that big are refused
MAX_PIXELS = 25_000_000  # a 6000x4000 camera photo fits
MAX_WAITING = 8  # requests queued for the model before 503
# an upload's format -> the suffix its `format=same` answer is written with (save_photo: GIF as PNG)
SUFFIXES = {fmt: suffix for suffix, fmt in reversed(IMAGE_FORMATS.items())}  # .jpg, .tif
MEDIA = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".bmp": "image/bmp",
         ".tif": "image/tiff"}
FILL_FIELDS = {"image", "mask", "region", "box", "grow", "faces", "format", "detail", "job"}
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a client's name for its fill, to ask its progress
SEARCH_FIELDS = {f.name: f for f in dataclasses.fields(SearchOptions)}
_HINTS = typing.get_type_hints(SearchOptions)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _scalar(name: str, text: str):
    """A search option's text -> its type (int, float, bool or str) from SearchOptions' hints."""
    kinds = [t for t in typing.get_args(_HINTS[name]) or (_HINTS[name],) if t is not type(None)]
    kind = kinds[0]
    try:
        if kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "on", "off", "yes", "no"):
                raise ValueError
            return text.lower() in ("1", "true", "on", "yes")
        return kind(text)
    except ValueError:
        raise BadRequest(f"{name} must be a {kind.__name__}, got {text!r}") from None


def _box(text: str) -> tuple[int, int, int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", text)
    if not m:
        raise BadRequest(f"box must be X,Y,W,H in pixels, got {text!r}")
    return tuple(int(v) for v in m.groups())


def _parse_fill(form) -> dict:
    """The fill's keyword arguments (less image and mask) from the form's text fields."""
    unknown = sorted(k for k in form.keys() if k not in FILL_FIELDS and k not in SEARCH_FIELDS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; the fields are "
                         f"{', '.join(sorted(FILL_FIELDS | set(SEARCH_FIELDS)))}")
    texts = {k: v for k, v in form.multi_items() if isinstance(v, str) and v.strip() != ""}
    regions = [v for k, v in form.multi_items() if k == "region"]
    for r in regions:
        if r not in REGIONS:
            raise BadRequest(f"unknown region {r!r}; choose from {', '.join(REGIONS)}")
    options = {k: _scalar(k, v) for k, v in texts.items() if k in SEARCH_FIELDS}
    try:
        opts = SearchOptions(**options).validate()
    except UsageError as exc:
        raise BadRequest(str(exc)) from None
    kw = {"region": regions or None, "options": opts, "faces": texts.get("faces", "largest")}
    if kw["faces"] not in ("largest", "all"):
        raise BadRequest("faces must be 'largest' or 'all'")
    if "box" in texts:
        kw["box"] = _box(texts["box"])
    if "grow" in texts:
        try:
            kw["grow"] = float(texts["grow"])
        except ValueError:
            raise BadRequest(f"grow must be a number of pixels, got {texts['grow']!r}") from None
        if not 0 <= kw["grow"] <= 1000:
            raise BadRequest("grow must be between 0 and 1000 pixels")
    if "detail" in texts:
        if "detail" not in inspect.signature(fill).parameters:
            raise BadRequest("detail: this version of inpaint.fill has no photo-detail step")
        kw["detail"] = texts["detail"]
    return kw


def _decode_photo(data: bytes, filename: str) -> tuple[Photo, str]:
    """Upload bytes -> (the photo as `inpaint fill` reads it (images.read_photo: (H, W, 3) uint8
    and, for grey, alpha and 16-bit photos, the decoded image), its suffix)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename or "photo").name)[:80] or "photo"
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h, fmt = im.size[0], im.size[1], im.format
    except Exception:
        raise BadRequest(f"{name}: not an image Pillow can read") from None
    if w * h > MAX_PIXELS:
        raise BadRequest(f"{name}: {w}x{h} pixels is over this server's limit of {MAX_PIXELS} "
                         f"pixels", 413)
    with tempfile.TemporaryDirectory(prefix="inpaint-serve-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            photo = read_photo(path)
        except ImageReadError as exc:
            raise BadRequest(str(exc).replace(f"{tmp}/", "")) from None
    return photo, SUFFIXES.get(fmt, ".png")


def _decode_mask(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """A photo-sized mask image (white = keep, black = fill, as `fill --mask`) -> (H, W) bool,
    True = keep."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            gray = im.convert("L")
    except Exception:
        raise BadRequest("mask: not an image Pillow can read") from None
    if gray.size != (shape[1], shape[0]):
        raise BadRequest(f"mask is {gray.size[0]}x{gray.size[1]}; it must be the photo's size, "
                         f"{shape[1]}x{shape[0]}")
    return np.asarray(gray) >= 128


def _encode(image: np.ndarray, suffix: str, source=None) -> tuple[bytes, str]:
    """The filled photo as `inpaint fill` writes it (save_photo, in the mode of `source`, the
    photo as read, where the format keeps it): bytes and their suffix."""
    with tempfile.TemporaryDirectory(prefix="inpaint-serve-") as tmp:
        out = save_photo(Path(tmp) / f"filled{suffix}", image, Path(f"x{suffix}"), source)
        return out.read_bytes(), out.suffix


async def _files(request: Request) -> tuple[object, dict]:
    try:
        form = await request.form(max_files=2, max_fields=64)
    except HTTPException:
        raise
    except Exception as exc:
        raise BadRequest(f"not a multipart form: {exc}") from None
    image = form.get("image")
    if image is None or isinstance(image, str):
        raise BadRequest("send the photo as the multipart file field 'image'")
    return form, image


class Server:
    """The model, the aligner and the one worker they run on."""

    def __init__(self, model, aligner):
        self.model, self.aligner = model, aligner
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inpaint-model")
        self.waiting = 0
        self.last_seconds: float | None = None
        self.jobs: dict[str, dict] = {}  # job id -> its progress, while it waits or runs

    async def run(self, fn, *args, **kw):
        if self.waiting >= MAX_WAITING:
            raise BadRequest(f"busy: {self.waiting} requests are waiting; try again soon", 503)
        self.waiting += 1
        try:
            return await asyncio.wrap_future(self.worker.submit(fn, *args, **kw))
        finally:
            self.waiting -= 1

    async def health(self, request: Request):
        detail = inspect.signature(fill).parameters.get("detail")
        return JSONResponse({
            "status": "ok", "version": __version__,
            "model": str(getattr(self.model, "path", "")),
            "image_size": self.model.config.model.image_size, "regions": list(REGIONS),
            "detail": None if detail is None else {"default": detail.default},
            "max_upload_bytes": MAX_UPLOAD_BYTES, "max_pixels": MAX_PIXELS,
            "queue": self.waiting, "last_fill_seconds": self.last_seconds})

    async def fill(self, request: Request):
        form, image = await _files(request)
        kw = _parse_fill(form)
        (photo, source), suffix = await run_in_threadpool(_decode_photo, await image.read(),
                                                          image.filename)
        mask = form.get("mask")
        if mask is not None:
            if isinstance(mask, str):
                raise BadRequest("mask must be a file (a photo-sized image)")
            kw["mask"] = await run_in_threadpool(_decode_mask, await mask.read(), photo.shape[:2])
        if not kw.get("region") and "mask" not in kw and "box" not in kw:
            raise BadRequest("nothing to fill: give a region, a mask or a box")
        fmt = form.get("format") or "png"
        if fmt not in ("png", "same"):
            raise BadRequest("format must be 'png' or 'same' (the photo's own format)")
        job = form.get("job") or None
        if job is not None and (not isinstance(job, str) or not JOB_ID.fullmatch(job)):
            raise BadRequest("job must be 1-64 letters, digits, '-' or '_'")
        if job in self.jobs:
            raise BadRequest(f"job {job!r} is already queued or running")
        t0 = time.perf_counter()
        state = {"state": "queued"}
        if job:
            self.jobs[job] = state

        def work():
            state.update(state="running", started=time.time())
            return fill(photo, model=self.model, aligner=self.aligner, progress=state.update,
                        **kw)

        try:
            out = await self.run(work)
        finally:
            self.jobs.pop(job, None)
        self.last_seconds = round(time.perf_counter() - t0, 2)
        data, ext = await run_in_threadpool(_encode, out, suffix if fmt == "same" else ".png",
                                            source)
        stem = Path(image.filename or "photo").stem or "photo"
        return Response(data, media_type=MEDIA[ext], headers={
            "Content-Disposition": f'attachment; filename="{re.sub(r"[^A-Za-z0-9._-]", "_", stem)}-filled{ext}"',
            "X-Fill-Seconds": str(self.last_seconds)})

    async def progress(self, request: Request):
        """GET /api/progress?job=ID: where that fill is: {"state": "queued"}, "running" with the
        stage, face, faces, iteration, iterations and seconds so far, or "unknown" (done, or
        never sent: a poll that comes after the answer is not an error)."""
        job = request.query_params.get("job", "")
        state = dict(self.jobs.get(job) or {"state": "unknown"})
        if "started" in state:
            state["seconds"] = round(time.time() - state.pop("started"), 1)
        state["queue"] = self.waiting
        return JSONResponse(state)

    async def faces(self, request: Request):
        form, image = await _files(request)
        (photo, _), _ = await run_in_threadpool(_decode_photo, await image.read(), image.filename)
        found = await self.run(face_outlines, photo, self.aligner)
        return JSONResponse({"width": photo.shape[1], "height": photo.shape[0], "faces": found})


def face_outlines(photo: np.ndarray, aligner) -> list[dict]:
    """The faces of `photo` (H, W, 3) uint8, largest first (the one `fill` fills by default):
    box (left, top, right, bottom), score, and per region its landmark hulls [[x, y], ...] and the
    grow in pixels `fill` adds around them (the hole is each hull grown by that much)."""
    kept, _ = aligner.detect(photo)
    faces = []
    for det in kept:
        pts = np.asarray(aligner.landmarks(photo, det.box), np.float64)
        regions = {name: [np.round(convex_hull(pts[list(g)]), 1).tolist() for g in groups]
                   for name, groups in REGIONS.items()}
        faces.append({"box": list(det.box), "score": round(det.score, 3),
                      "grow": round(default_grow(pts), 2), "regions": regions})
    return faces


def _error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _on_error(request: Request, exc: Exception):
    if isinstance(exc, BadRequest):
        return _error_response(exc.status, str(exc))
    if isinstance(exc, HTTPException):
        return _error_response(exc.status_code, str(exc.detail))
    if isinstance(exc, NoFaceFound):
        return _error_response(422, "no face found in the photo")
    if isinstance(exc, InpaintError):
        return _error_response(422 if exc.exit_code == 1 else 400, str(exc))
    log.exception("unexpected error")
    return _error_response(500, f"internal error ({type(exc).__name__}); see the server's log")


class BodyLimit:
    """ASGI: refuse (413) a request body over `max_bytes`, by its Content-Length or as it
    streams."""

    def __init__(self, app, max_bytes: int = MAX_UPLOAD_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        too_big = f"upload over this server's limit of {self.max_bytes // 2**20} MB"
        if not length.isdigit() or int(length) > self.max_bytes:
            response = _error_response(413 if length.isdigit() else 400,
                                       too_big if length.isdigit() else "bad Content-Length")
            return await response(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, too_big)
            return message

        return await self.app(scope, counted, send)


def create_app(model, aligner=None) -> Starlette:
    """The app over a loaded model (models.LoadedModel) and a FaceAligner (default: the CLI's
    default settings at the model's size)."""
    if aligner is None:
        from inpaint.align import AlignSettings, FaceAligner

        aligner = FaceAligner(AlignSettings(size=model.config.model.image_size))
    server = Server(model, aligner)
    routes = [Route("/", lambda r: FileResponse(STATIC / "index.html")),
              Route("/api/health", server.health),
              Route("/api/fill", server.fill, methods=["POST"]),
              Route("/api/progress", server.progress),
              Route("/api/faces", server.faces, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC))]
    app = Starlette(routes=routes, exception_handlers={Exception: _on_error,
                                                       HTTPException: _on_error,
                                                       BadRequest: _on_error,
                                                       InpaintError: _on_error})
    app.state.server = server
    return BodyLimit(app)


def serve(app, host: str = "127.0.0.1", port: int = 8000, on_ready=None) -> None:
    """Bind `host:port` (OSError if taken), call `on_ready(url)`, serve until Ctrl-C."""
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    if on_ready:
        on_ready(f"http://{shown}:{sock.getsockname()[1]}")
    uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[sock])
