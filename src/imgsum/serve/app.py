"""The FastAPI app: the page at ``/``, the REST API under ``/api``, ``/healthz``, and OpenAPI docs at ``/docs``.

``create_app(settings)`` builds it; the models load once, in the app's lifespan, and live on ``app.state``.
Captioning runs on one inference thread that batches concurrent requests (see ``worker``); decoding runs in
the thread pool, a few uploads at a time; the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import secrets
import time
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, AsyncIterator

import httpx
from pydantic import TypeAdapter, ValidationError
from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api import Captioner
from ..decoding import DecodingOptions
from .guard import Guard
from .saving import CAPTIONED_WIDTH, SaveError, output_folder, save_captioned
from .schemas import (AttributionModel, CaptionResponse, ConceptModel, ConfigResponse, ErrorResponse, HealthResponse,
                      ModelEntry, ModelsResponse, SampleResponse, SaveResponse, Timing)
from .settings import Settings
from .unsplash import Photo, UnsplashError, gallery_photo, random_unsplash_photo, track_download
from .uploads import ApiError, Reduce, Upload, display_name, open_picture, safe_stem, sniff
from .worker import InferenceWorker

logger = logging.getLogger(__name__)

STATIC = resources.files(__package__).joinpath("static")
SAMPLES_KEPT = 64  # sample ids remembered for /api/save's attribution
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ERRORS = {code: {"model": ErrorResponse} for code in (400, 403, 413, 415, 422, 503)}


def load_captioners(settings: Settings) -> dict[str, Captioner]:
    """Every configured model, loaded once; a model that does not load stops the start, saying which."""
    captioners = {}
    for name, target in settings.models.items():
        started = time.perf_counter()
        try:
            captioners[name] = Captioner.load(target, backend=settings.backend, threads=settings.threads)
        except (FileNotFoundError, ValueError, OSError, ImportError) as err:
            raise RuntimeError(f"model {name!r} ({target}) did not load: {err}") from err
        logger.info("model %s loaded from %s in %.1f s", name, target, time.perf_counter() - started)
    return captioners


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.captioners = await run_in_threadpool(load_captioners, settings)
    app.state.worker = InferenceWorker(app.state.captioners, settings.max_batch, settings.max_pending)
    app.state.worker.start()
    app.state.decode_slots = asyncio.Semaphore(settings.decode_slots)
    app.state.http = httpx.AsyncClient(timeout=settings.unsplash_timeout_s)
    app.state.samples = OrderedDict()
    app.state.rng = random.Random()
    app.state.started = time.monotonic()
    logger.info("serving models %s; saving into %s; sample images from %s", ", ".join(app.state.captioners),
                Path(settings.output_dir).expanduser().resolve(),
                "Unsplash" if settings.unsplash_enabled else "the shipped gallery")
    try:
        yield
    finally:
        await run_in_threadpool(app.state.worker.stop)
        await app.state.http.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, built for ``settings`` (default: :meth:`Settings.from_env`)."""
    settings = (settings or Settings.from_env()).checked()
    # FastAPIOffline: FastAPI whose /docs and /redoc load Swagger UI and ReDoc from files it ships (under
    # /static-offline-docs), not from a CDN, so the docs work on a machine with no internet.
    app = FastAPIOffline(title="imgsum", version=_version(),
                  description="Caption photos with one English sentence: the page at `/`, and a REST API.",
                  lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(Guard, max_body=settings.max_request_bytes, allowed_hosts=settings.allowed_hosts,
                       max_concurrent=settings.max_concurrent_uploads)
    _add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.include_router(router)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imgsum")
    except PackageNotFoundError:
        return "0"


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        logger.info("%s %s refused (%d): %s", request.method, request.url.path, err.status, err.message)
        return JSONResponse({"error": err.message}, err.status, headers=err.headers)

    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, err.status_code, headers=getattr(err, "headers", None))

    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        fields = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")),
                   "problem": e.get("msg", "invalid")} for e in err.errors()]
        message = "; ".join(f"{f['field'] or 'request'}: {f['problem']}" for f in fields)
        return JSONResponse({"error": message or "invalid request", "fields": fields}, 422)

    async def crashed(request: Request, err: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(err).__name__}"}, 500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, crashed)


# ---- request helpers -------------------------------------------------------------------------------------------

def _model_name(request: Request, model: str | None) -> str:
    captioners = request.app.state.captioners
    settings: Settings = request.app.state.settings
    name = (model or "").strip() or settings.default_model
    if name == "default":
        name = settings.default_model
    if name not in captioners:
        raise ApiError(422, f"model: no model {name!r} here; the models are {', '.join(captioners)}")
    return name


def _max_beam(settings: Settings, captioner: Captioner) -> int:
    """The widest beam a request may ask of this model: the server's ``max_beam``, or the model's own beam if that
    is wider (so that a model served with a wide default can always be asked for it)."""
    return max(settings.max_beam, captioner.info.decoding.beam)


def _decoding(request: Request, name: str | None, beam: int | None) -> DecodingOptions | None:
    """Model ``name``'s decoding options with the asked-for beam, once that is checked; None without a model."""
    settings: Settings = request.app.state.settings
    captioner = None if name is None else request.app.state.captioners[name]
    top = settings.max_beam if captioner is None else _max_beam(settings, captioner)
    if beam is not None and not 1 <= beam <= top:
        model = "" if name is None else f" for model {name!r}"
        raise ApiError(422, f"beam: must be from 1 to {top}{model}, not {beam}")
    return None if captioner is None else captioner.info.decoding.with_overrides(beam=beam)


async def _read_upload(request: Request, file: UploadFile, index: int) -> Upload:
    settings: Settings = request.app.state.settings
    name = display_name(file.filename, index)
    data = await file.read(settings.max_upload_bytes + 1)
    return await run_in_threadpool(sniff, data, name, settings.max_upload_bytes, settings.max_pixels)


async def _open_pictures(request: Request, uploads: list[Upload], size: int | None,
                         reduce: Reduce | None = None) -> list:
    """Decodes the uploads off the event loop, a few requests at a time, so that memory stays bounded."""
    max_pixels = request.app.state.settings.max_pixels
    async with request.app.state.decode_slots:
        return await run_in_threadpool(lambda: [open_picture(u, size, max_pixels, reduce) for u in uploads])


def _remember_sample(request: Request, photo: Photo) -> str:
    samples: OrderedDict = request.app.state.samples
    sample_id = secrets.token_urlsafe(9)
    samples[sample_id] = photo
    while len(samples) > SAMPLES_KEPT:
        samples.popitem(last=False)
    photo.data = b""  # only the credits are kept
    return sample_id


# ---- routes ----------------------------------------------------------------------------------------------------

router = APIRouter()


@lru_cache(maxsize=1)
def _page() -> str:
    return STATIC.joinpath("index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_page(), headers=PAGE_HEADERS)


@router.get("/healthz", response_model=HealthResponse, tags=["service"])
async def healthz(request: Request) -> HealthResponse:
    worker: InferenceWorker = request.app.state.worker
    return HealthResponse(models=list(request.app.state.captioners), pending=worker.pending,
                          batches=worker.batches, uptime_s=round(time.monotonic() - request.app.state.started, 1))


@router.get("/api/models", response_model=ModelsResponse, tags=["captioning"])
async def models(request: Request) -> ModelsResponse:
    settings: Settings = request.app.state.settings
    entries = [_model_entry(name, captioner, name == settings.default_model, _max_beam(settings, captioner))
               for name, captioner in request.app.state.captioners.items()]
    return ModelsResponse(default=settings.default_model, max_beam=settings.max_beam, models=entries)


def _model_entry(name: str, captioner: Captioner, default: bool, max_beam: int) -> ModelEntry:
    info = captioner.info
    kind = info.decoder.kind
    decoders = "decoders" if "+" in kind else "decoder"  # an ensemble's kind names its members' ("gpt+lstm")
    return ModelEntry(name=name, label=f"{name} ({kind.upper()} {decoders})", decoder=kind, encoder=info.encoder,
                      backend=captioner.backend, vocab_size=len(info.vocab), default_beam=info.decoding.beam,
                      max_beam=max_beam, max_len=info.decoding.max_len, default=default,
                      metrics=info.metrics.get("dev", {}))


@router.get("/api/config", response_model=ConfigResponse, tags=["service"])
async def config(request: Request) -> ConfigResponse:
    settings: Settings = request.app.state.settings
    return ConfigResponse(output_dir=str(Path(settings.output_dir).expanduser().resolve()),
                          max_upload_bytes=settings.max_upload_bytes, max_images=settings.max_images,
                          max_beam=settings.max_beam, unsplash=settings.unsplash_enabled)


@router.post("/api/caption", response_model=CaptionResponse | list[CaptionResponse], responses=ERRORS,
             tags=["captioning"])
async def caption(request: Request,
                  image: Annotated[list[UploadFile], File(description="one image, or several (repeat the field)")],
                  model: Annotated[str | None, Form(description="a name from /api/models (default: the first)")] = None,
                  beam: Annotated[int | None, Form(description="beam width (1: greedy; default: the model's)")] = None,
                  ) -> CaptionResponse | list[CaptionResponse]:
    """Captions the uploaded images: one answer for one image, a list for several.

    A request is all or nothing: if any image is refused, the answer is that error, naming the image.
    """
    started = time.perf_counter()
    settings: Settings = request.app.state.settings
    name = _model_name(request, model)
    options = _decoding(request, name, beam)
    if len(image) > settings.max_images:
        raise ApiError(413, f"image: {len(image)} images, more than the limit of {settings.max_images} a request")
    uploads = [await _read_upload(request, f, i) for i, f in enumerate(image)]
    preprocess = request.app.state.captioners[name].info.preprocess
    pictures = await _open_pictures(request, uploads, preprocess.size, preprocess.reduce)
    outcome = await request.app.state.worker.caption(name, options, pictures)
    timing = Timing(total_s=round(time.perf_counter() - started, 4), queue_s=round(outcome.queue_s, 4),
                    inference_s=round(outcome.inference_s, 4), batch_images=outcome.batch_images)
    rows = [CaptionResponse(image=u.name, caption=c.text, concepts=[ConceptModel(**k.to_dict()) for k in c.concepts],
                            model=name, beam=options.beam, width=u.width, height=u.height, format=u.format,
                            timing=timing) for u, c in zip(uploads, outcome.captions)]
    return rows[0] if len(rows) == 1 else rows


@router.get("/api/sample", response_model=SampleResponse, responses=ERRORS, tags=["samples"])
async def sample(request: Request) -> JSONResponse:
    """A random sample photo: from Unsplash when a key is set, else (or if Unsplash fails) from the gallery."""
    settings: Settings = request.app.state.settings
    photo, upload, notice = await _unsplash_sample(request) if settings.unsplash_enabled else (None, None, None)
    if photo is None or upload is None:
        try:
            photo = gallery_photo(request.app.state.rng)
        except (UnsplashError, OSError) as err:
            raise ApiError(503, f"no sample image available: {err}") from err
        upload = sniff(photo.data, photo.filename, len(photo.data), settings.max_pixels)
    data_url = f"data:{upload.media_type};base64,{base64.b64encode(photo.data).decode()}"
    answer = SampleResponse(id="", source=photo.source, filename=photo.filename, media_type=upload.media_type,
                            width=upload.width, height=upload.height, data_url=data_url,
                            attribution=AttributionModel(**asdict(photo.attribution)) if photo.attribution else None,
                            description=photo.description, notice=notice)
    answer.id = _remember_sample(request, photo)
    return JSONResponse(answer.model_dump(), headers={"Cache-Control": "no-store"})


async def _unsplash_sample(request: Request) -> tuple[Photo | None, Upload | None, str | None]:
    """A random Unsplash photo and its checked upload; on failure, none and a notice saying why."""
    settings: Settings = request.app.state.settings
    try:
        photo = await random_unsplash_photo(request.app.state.http, settings.unsplash_api_url,
                                            settings.unsplash_access_key or "", settings.app_name,
                                            settings.max_upload_bytes)
        upload = await run_in_threadpool(sniff, photo.data, photo.filename, settings.max_upload_bytes,
                                         settings.max_pixels)
    except (UnsplashError, ApiError) as err:
        notice = f"Unsplash failed ({err}); here is a photo from the shipped gallery instead"
        logger.warning("%s", notice)
        return None, None, notice
    return photo, upload, None


@router.post("/api/save", response_model=SaveResponse, responses={**ERRORS, 507: {"model": ErrorResponse}},
             tags=["captioning"])
async def save(request: Request,
               image: Annotated[UploadFile, File(description="the image that was captioned")],
               caption: Annotated[str, Form(max_length=1000)],
               model: Annotated[str | None, Form(description="the model that made the caption")] = None,
               beam: Annotated[int | None, Form()] = None,
               seconds: Annotated[float | None, Form(ge=0, description="how long captioning took")] = None,
               sample_id: Annotated[str | None, Form(description="the id /api/sample gave, for its credits")] = None,
               filename: Annotated[str | None, Form(description="a name to save under (cleaned; default: the upload's)")] = None,
               concepts: Annotated[str | None, Form(max_length=4000, description=(
                   'the concepts /api/caption gave, as JSON: [{"word": "cat", "p": 0.81}, ...]; kept in the .json '
                   "sidecar"))] = None,
               ) -> SaveResponse:
    """Writes into the output folder: the image with the caption in its metadata, ``.txt`` and ``.json``
    sidecars, and a captioned picture. No field can write outside that folder."""
    settings: Settings = request.app.state.settings
    text = " ".join(caption.split())
    if not text:
        raise ApiError(422, "caption: must not be empty")
    name = _model_name(request, model) if model else None
    options = _decoding(request, name, beam)
    seen = _concepts(concepts)
    photo = None
    if sample_id:
        photo = request.app.state.samples.get(sample_id)
        if photo is None:
            raise ApiError(422, "sample_id: unknown (or too old) sample id")
    upload = await _read_upload(request, image, 0)
    picture = (await _open_pictures(request, [upload], CAPTIONED_WIDTH[1]))[0]
    stem = safe_stem(filename or image.filename or (photo.filename if photo else None))
    record = _save_record(request, text, name, options, seconds, upload, photo, image.filename, seen)
    artist = photo.attribution.photographer if photo and photo.attribution else None
    try:
        folder = output_folder(Path(settings.output_dir))
        saved = await run_in_threadpool(save_captioned, folder, stem, upload.data, upload.format, picture, text,
                                        record, artist)
    except (SaveError, OSError) as err:
        raise ApiError(507, f"cannot save: {err}") from err
    if photo and photo.download_location and settings.unsplash_access_key:
        await track_download(request.app.state.http, photo.download_location, settings.unsplash_access_key)
    return SaveResponse(folder=str(saved.folder), stem=saved.stem, caption=text,
                        files={"image": saved.image, "text": saved.text, "json": saved.json,
                               "captioned": saved.captioned})


CONCEPT_LIST = TypeAdapter(list[ConceptModel])


def _concepts(text: str | None) -> list[dict] | None:
    """The ``concepts`` field of /api/save: a JSON list of ``{word, p}`` (None when not given)."""
    if text is None:
        return None
    try:
        return [c.model_dump() for c in CONCEPT_LIST.validate_json(text)]
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ApiError(422, f"concepts: {where + ': ' if where else ''}{first['msg']} (a JSON list of "
                            '{"word", "p"} objects, as /api/caption gives)') from err


def _save_record(request: Request, caption: str, model: str | None, options: DecodingOptions | None,
                 seconds: float | None, upload: Upload, photo: Photo | None, original_name: str | None,
                 concepts: list[dict] | None) -> dict:
    """The .json sidecar: the caption, the model and its settings, the concepts the page showed, the time, the
    image and its source."""
    model_info = None
    if model is not None and options is not None:
        info = request.app.state.captioners[model].info
        model_info = {"name": model, "decoder": info.decoder.kind, "encoder": info.encoder, **options.to_dict()}
    return {
        "caption": caption,
        "model": model,
        "settings": model_info,
        "concepts": concepts,
        "seconds": seconds,
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": photo.source if photo else "upload",
        "original_name": display_name(original_name) if original_name else None,
        "attribution": asdict(photo.attribution) if photo and photo.attribution else None,
        "image": {"format": upload.format, "width": upload.width, "height": upload.height, "bytes": len(upload.data)},
        "imgsum_version": _version(),
    }
