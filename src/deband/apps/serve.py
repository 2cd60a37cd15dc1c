"""The local web page: drop images, compare before and after, see the banding, download.

`create_app(debander, options)` builds a FastAPI application that serves the static page in
`deband/web/` and this API (errors are one line of JSON, `{"error": "..."}`, with a 4xx code):

    GET  /api/limits                   upload and pixel limits, step and strength ranges
    POST /api/deband                   multipart `file`, `steps`, `strength` -> JSON with result URLs
    GET  /api/results/{id}/{name}      one PNG of a result (`?download=1`: as an attachment)

A result holds five PNGs: `before.png` (the input, 8-bit for display), `after.png` (the
restored image, 8-bit with dither: byte for byte what `deband image --bit-depth 8` writes),
`deband-16.png` (16-bit: what `deband image` writes), and the CAMBI heat maps
`banding-before.png` and `banding-after.png` (`deband.restore.images.banding_map`).

Results are kept in memory under a random, unguessable id (`ResultStore`) rather than sent
inline as base64: the browser loads and downloads them as plain URLs (no 33 % inflation, no
100 MB JSON string for a large 16-bit photo), and a download is the bytes already made, not a
second restore. The store is bounded in bytes, drops the oldest first and forgets a result
after a while; each request gets its own id, so users never see each other's images, and no
other per-user state exists. Nothing is written to disk but a per-request temporary folder,
removed before the response is sent.

Only requests whose Host header names this server are answered (`ServeOptions.hosts`: the
loopback names by default, any port), so a page on another site that rebinds its own name to
127.0.0.1 gets nothing; and a request that changes state (a POST) from a page of another
origin is refused (`ServeOptions.origins` lists those allowed).

The model is loaded once by the caller; restores run in a worker thread, one at a time.
`run(app, sock)` serves until SIGINT or SIGTERM. Needs the `web` extra (FastAPI, uvicorn,
python-multipart).
"""


import dataclasses
import ipaddress
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated
from urllib.parse import quote, urlsplit

import numpy as np
import uvicorn
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from deband.config import DEFAULT_STEPS
from deband.errors import DebandError, InputError, ResourceError, SettingError, UnsupportedError
from deband.io.files import DEFAULT_MAX_PIXELS, Picture, write_image
from deband.io.pixels import from_codes, to_codes
from deband.restore.debander import MAX_STEPS, Debander
from deband.restore.images import banding_map, output_codes, restore_file

WEB = Path(__file__).parents[1] / "web"  # the page: index.html, app.js, style.css
RESULT_NAMES = ("before.png", "after.png", "deband-16.png", "banding-before.png", "banding-after.png")
# what a downloaded file is called, after the upload's own name
DOWNLOAD_SUFFIXES = {"deband-16.png": "-deband.png", "after.png": "-deband-8bit.png",
                     "before.png": "-before.png", "banding-before.png": "-banding-before.png",
                     "banding-after.png": "-banding-after.png"}


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class ServeOptions:
    max_upload_bytes: int = 100 * 2**20  # one request body (the image and the form around it)
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # read_image's guard, checked from the header
    keep_bytes: int = 2**30  # results held for display and download, all users together
    keep_seconds: float = 3600.0  # a result is forgotten this long after it was made
    hosts: frozenset[str] = LOOPBACK_HOSTS  # Host names answered, any port ("*": every name)
    any_ip: bool = False  # also answer a Host that is an IP address (when listening on all of them)
    origins: frozenset[str] = frozenset()  # other origins whose pages may post ("*": all)


def host_name(host: str) -> str:
    """The name in a Host header, without its port and brackets, lower case ("" when empty)."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, options: ServeOptions) -> bool:
    """Whether a request's Host header names this server (a DNS-rebinding page names its own)."""
    name = host_name(host)
    if name and ("*" in options.hosts or name in options.hosts):
        return True
    try:
        return options.any_ip and bool(ipaddress.ip_address(name))
    except ValueError:
        return False


def origin_allowed(origin: str | None, host: str, options: ServeOptions) -> bool:
    """Whether a request may change state: no Origin (not sent by a page), the page's own
    origin (the Host it asked), or an origin allowed in options."""
    if origin is None or "*" in options.origins or origin.lower().rstrip("/") in options.origins:
        return True
    parts = urlsplit(origin.lower())
    return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()


@dataclass(frozen=True)
class Result:
    """One restored upload: its PNGs by name (RESULT_NAMES) and what the page shows about it."""

    files: dict[str, bytes]
    width: int
    height: int
    bits: int  # of the input: 8 or 16
    cambi_before: float
    cambi_after: float

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.files.values())


class ResultStore:
    """Results by random id, bounded in bytes (oldest dropped first) and expiring.

    Safe to call from several threads. A single result larger than `max_bytes` is still kept
    (alone) so that it can be downloaded once.
    """

    def __init__(self, max_bytes: int, max_age: float, clock: Callable[[], float] = time.monotonic):
        self.max_bytes, self.max_age, self.clock = max_bytes, max_age, clock
        self._items: OrderedDict[str, tuple[float, str, Result]] = OrderedDict()  # id -> (made, stem, result)
        self._total = 0
        self._lock = threading.Lock()

    def put(self, stem: str, result: Result) -> str:
        """Keep `result` (named after the upload's `stem`); returns its new id."""
        rid = secrets.token_urlsafe(16)
        with self._lock:
            self._items[rid] = (self.clock(), stem, result)
            self._total += result.size
            self._drop_old()
        return rid

    def get(self, rid: str) -> tuple[str, Result] | None:
        """(stem, result) for an id, or None when unknown, expired or dropped."""
        with self._lock:
            self._drop_old()
            item = self._items.get(rid)
        return None if item is None else (item[1], item[2])

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _drop_old(self) -> None:
        now = self.clock()
        while self._items:
            made, _, result = next(iter(self._items.values()))
            if now - made <= self.max_age and (self._total <= self.max_bytes or len(self._items) == 1):
                break
            self._total -= self._items.popitem(last=False)[1][2].size


def _png(path: Path, pixels: np.ndarray, icc: bytes | None = None) -> bytes:
    """The bytes `write_image` writes for pixels at path (a file in a temporary folder)."""
    write_image(path, pixels, icc)
    return path.read_bytes()


def deband_file(path: Path, debander: Debander, max_pixels: int | None, workdir: Path) -> Result:
    """Read, restore and picture one image file; PNGs are made in `workdir` (left to the caller).

    The 16-bit and 8-bit PNGs are made exactly as `deband image` makes them from the same
    file with the same settings. Raises InputError, UnsupportedError, TooManyPixelsError or
    ResourceError (out of memory), naming `path`.
    """
    pic, restored = restore_file(path, debander, max_pixels)  # float32 on [0, 1], the input's shape
    out16, out8 = (output_codes(restored, bits, debander.seed) for bits in (16, 8))
    before = pic.pixels
    if pic.bit_depth == 16:  # shown with dither, so the display adds no bands of its own
        before = to_codes(from_codes(pic.pixels), 8, dither=True, seed=debander.seed)
    heat_before, cambi_before = banding_map(pic.rgb())
    heat_after, cambi_after = banding_map(Picture(out16).rgb())  # what `deband inspect` says of the 16-bit file
    files = {
        "before.png": _png(workdir / "before.png", before, pic.icc),
        "after.png": _png(workdir / "after.png", out8, pic.icc),
        "deband-16.png": _png(workdir / "deband-16.png", out16, pic.icc),
        "banding-before.png": _png(workdir / "banding-before.png", heat_before),
        "banding-after.png": _png(workdir / "banding-after.png", heat_after),
    }
    h, w = pic.pixels.shape[:2]
    return Result(files, w, h, pic.bit_depth, cambi_before, cambi_after)


def deband_upload(
    data: IO[bytes], filename: str, debander: Debander, max_pixels: int | None, lock: threading.Lock
) -> Result:
    """Restore an uploaded file object inside a temporary folder that is gone on return.

    Errors name `filename`, never the temporary path. Restores under `lock` run one at a time.
    """
    with tempfile.TemporaryDirectory(prefix="deband-serve-") as tmp:
        path = Path(tmp) / "upload"
        with path.open("wb") as f:
            shutil.copyfileobj(data, f, 2**20)
        try:
            with lock:
                return deband_file(path, debander, max_pixels, Path(tmp))
        except DebandError as e:
            raise type(e)(str(e).replace(str(path), filename or "upload")) from None


def status_of(error: DebandError) -> int:
    """The HTTP status of a user-facing error (explicit dispatch, first match wins)."""
    if isinstance(error, ResourceError):
        return 413  # over the pixel limit, or out of memory
    if isinstance(error, UnsupportedError):
        return 415  # not an image deband reads
    if isinstance(error, InputError | SettingError):
        return 422  # truncated or corrupt; steps or strength out of range
    return 400


def _stem(filename: str | None) -> str:
    stem = Path(filename or "image").stem.strip() or "image"
    return "".join(c for c in stem if c.isprintable() and c not in '/\\"')[:100] or "image"


def _disposition(filename: str) -> str:
    """A Content-Disposition header for an attachment, any characters in the name."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def _add_guards(app: FastAPI, options: ServeOptions) -> None:
    """Errors as one line of JSON, the upload size limit, headers that keep the page local, and
    only this server's Host names answered, only its own page (or allowed origins) posting."""
    too_large = f"upload larger than the limit of {options.max_upload_bytes / 2**20:.3g} MB"

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException) -> JSONResponse:
        message = too_large if exc.status_code == 413 else str(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"][1:]) if errors else "request"
        text = errors[0]["msg"] if errors else "invalid request"
        return JSONResponse({"error": f"{where}: {text}"}, status_code=422)

    @app.exception_handler(DebandError)
    async def user_error(request, exc: DebandError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=status_of(exc))

    @app.middleware("http")
    async def local_only(request, call_next):
        host = request.headers.get("host", "")
        if not host_allowed(host, options):
            return JSONResponse({"error": f"host {host_name(host) or '(none)'!r} is not served here"}, status_code=403)
        if request.method not in ("GET", "HEAD") and not origin_allowed(request.headers.get("origin"), host, options):
            return JSONResponse({"error": f"request from {request.headers['origin']} refused (another site)"},
                                status_code=403)
        return await call_next(request)

    @app.middleware("http")
    async def guard(request, call_next):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > options.max_upload_bytes:  # refused before it is read
            response = JSONResponse({"error": too_large}, status_code=413)
        else:  # a body without a declared length is counted as it comes (the route's max_body_size)
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def create_app(debander: Debander, options: ServeOptions = ServeOptions()) -> FastAPI:  # noqa: B008
    """The FastAPI application around one loaded `debander` (its steps/strength are defaults)."""
    app = FastAPI(title="deband", docs_url=None, redoc_url=None, openapi_url=None)
    store = ResultStore(options.keep_bytes, options.keep_seconds)
    restore_lock = threading.Lock()  # one restore at a time: the CPU is small, memory bounded
    _add_guards(app, options)

    @app.get("/api/limits")
    def limits() -> dict:
        return {"max_upload_bytes": options.max_upload_bytes, "max_pixels": options.max_pixels,
                "steps": {"min": 1, "max": MAX_STEPS, "default": debander.steps},
                "strength": {"min": 0, "max": 1, "default": debander.strength}}

    @app.post("/api/deband", max_body_size=options.max_upload_bytes)
    async def deband(
        file: Annotated[UploadFile, File()],
        steps: Annotated[int, Form()] = DEFAULT_STEPS,
        strength: Annotated[float, Form()] = 1.0,
    ) -> dict:
        job = dataclasses.replace(debander, steps=steps, strength=strength)  # shares the model; checks both
        start = time.perf_counter()
        result = await run_in_threadpool(deband_upload, file.file, file.filename or "upload", job,
                                         options.max_pixels, restore_lock)
        stem = _stem(file.filename)
        rid = store.put(stem, result)
        return {"id": rid, "name": file.filename, "width": result.width, "height": result.height,
                "bits": result.bits, "steps": steps, "strength": strength,
                "cambi_before": round(result.cambi_before, 3), "cambi_after": round(result.cambi_after, 3),
                "seconds": round(time.perf_counter() - start, 3),
                "files": {name: f"/api/results/{rid}/{name}" for name in RESULT_NAMES},
                "downloads": {"png16": f"/api/results/{rid}/deband-16.png?download=1",
                              "png8": f"/api/results/{rid}/after.png?download=1"}}

    @app.get("/api/results/{rid}/{name}")
    def result_file(rid: str, name: str, download: bool = False) -> Response:
        found = store.get(rid)
        if found is None or name not in RESULT_NAMES:
            raise HTTPException(404, "no such result (results are kept for a while only: upload again)")
        stem, result = found
        headers = {"Cache-Control": "private, max-age=3600"}
        if download:
            headers["Content-Disposition"] = _disposition(stem + DOWNLOAD_SUFFIXES[name])
        return Response(result.files[name], media_type="image/png", headers=headers)

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app


class _Server(uvicorn.Server):
    """uvicorn's server, remembering whether SIGINT or SIGTERM stopped it."""

    signalled = False

    def handle_exit(self, sig: int, frame: object) -> None:
        self.signalled = True
        super().handle_exit(sig, frame)


def run(app: FastAPI, sock: socket.socket, grace: float = 10.0) -> bool:
    """Serve `app` on a listening socket until SIGINT or SIGTERM; True when a signal stopped it.

    The request in progress gets `grace` seconds to finish. Afterwards uvicorn raises the
    signal again, so SIGINT (and SIGTERM where it is made an interrupt) ends in KeyboardInterrupt.
    """
    server = _Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=grace))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        return True
    return server.signalled
