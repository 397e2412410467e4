"""The REST API over real HTTP: a uvicorn server on 127.0.0.1 with tiny checkpoints, and a fake Unsplash beside it."""

from __future__ import annotations

import io
import json
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")

from conftest import WIDE_BEAM, fill_disk  # noqa: E402
from fixtures.serve.fake_unsplash import FakeUnsplash  # noqa: E402
from imgsum.api import Captioner  # noqa: E402
from imgsum.serve.app import create_app  # noqa: E402
from imgsum.serve.background import BackgroundServer  # noqa: E402
from imgsum.serve.settings import Settings, installed_models, parse_models  # noqa: E402
from imgsum.serve.uploads import ApiError, safe_stem  # noqa: E402
from imgsum.serve.worker import InferenceWorker  # noqa: E402

MAX_UPLOAD = 400_000
MAX_REQUEST = 1_500_000
DESCRIPTION = 0x010E


def settings_for(checkpoints: dict[str, Path], output: Path, **extra) -> Settings:
    return Settings(models={"gpt": str(checkpoints["gpt"]), "lstm": str(checkpoints["lstm"])}, output_dir=output,
                    max_upload_bytes=MAX_UPLOAD, max_request_bytes=MAX_REQUEST, max_images=4, **extra)


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory):
    output = tmp_path_factory.mktemp("saved")
    with BackgroundServer(create_app(settings_for(tiny_checkpoints, output))) as running:
        running.output = output
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def photo_bytes(path: Path) -> bytes:
    return path.read_bytes()


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few dozen bytes: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def assert_error(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    for word in words:
        assert word in body["error"], body["error"]
    return body


# ---- service endpoints -----------------------------------------------------------------------------------------

def test_health_models_config_and_docs(client, server):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["models"] == ["gpt", "lstm"]
    models = client.get("/api/models").json()
    assert models["default"] == "gpt"
    assert [(m["name"], m["decoder"], m["default"]) for m in models["models"]] == [("gpt", "gpt", True),
                                                                                   ("lstm", "lstm", False)]
    assert all(m["default_beam"] == 2 and m["vocab_size"] > 10 for m in models["models"])
    assert models["max_beam"] == 16 and [m["max_beam"] for m in models["models"]] == [16, 16]
    config = client.get("/api/config").json()
    assert config == {"output_dir": str(server.output.resolve()), "max_upload_bytes": MAX_UPLOAD, "max_images": 4,
                      "max_beam": 16, "unsplash": False}
    assert "swagger" in client.get("/docs").text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/caption", "/api/models", "/api/save", "/api/sample", "/healthz"} <= set(paths)


def test_the_openapi_schema_documents_the_concepts(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    answer = schemas["CaptionResponse"]
    assert "concepts" in answer["required"]
    concepts = answer["properties"]["concepts"]
    assert concepts["type"] == "array" and concepts["items"] == {"$ref": "#/components/schemas/ConceptModel"}
    assert concepts["description"]
    concept = schemas["ConceptModel"]
    assert set(concept["properties"]) == {"word", "p"} and set(concept["required"]) == {"word", "p"}
    assert (concept["properties"]["p"]["minimum"], concept["properties"]["p"]["maximum"]) == (0, 1)


@pytest.mark.parametrize("docs, kinds", [("/docs", {"script", "style"}), ("/redoc", {"script"})])
def test_docs_pages_load_their_scripts_and_styles_from_this_server(client, server, docs, kinds):
    """Swagger UI and ReDoc come from the server itself, not a CDN, so the docs work offline."""
    import re
    from urllib.parse import urljoin, urlsplit

    page = client.get(docs)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    scripts = re.findall(r"""<script[^>]*\ssrc=["']([^"']+)""", html, re.I)
    styles = [href for tag in re.findall(r"<link[^>]*>", html, re.I) if re.search(r"rel=[\"']?stylesheet", tag, re.I)
              for href in re.findall(r"""href=["']([^"']+)""", tag, re.I)]
    found = {"script": scripts, "style": styles}
    assert all(found[kind] for kind in kinds), found
    assert "cdn." not in html.lower() and "fonts.googleapis" not in html.lower()
    media = {"script": "javascript", "style": "text/css"}
    for kind, urls in found.items():
        for url in urls:
            absolute = urljoin(server.url + docs, url)
            assert urlsplit(absolute).netloc == urlsplit(server.url).netloc, f"{docs} loads {url} from elsewhere"
            answer = client.get(absolute)
            assert answer.status_code == 200, (url, answer.status_code)
            assert media[kind] in answer.headers["content-type"], (url, answer.headers["content-type"])
            assert len(answer.content) > 1000, url


def test_page_is_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "Load sample image" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


# ---- captioning ------------------------------------------------------------------------------------------------

def test_caption_one_image_matches_the_python_api(client, sample_photos, tiny_checkpoints):
    photo = sample_photos[1]
    r = client.post("/api/caption", files={"image": (photo.name, photo_bytes(photo), "image/jpeg")},
                    data={"model": "lstm", "beam": "1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"image", "caption", "concepts", "model", "beam", "width", "height", "format", "timing"}
    expected = Captioner.load(tiny_checkpoints["lstm"]).describe(photo, beam=1)
    assert body["caption"] == expected.text
    assert body["concepts"] == [c.to_dict() for c in expected.concepts]
    assert body["concepts"][0]["word"] == "cat"  # chelsea.jpg: the encoder's classifier sees a cat
    assert (body["model"], body["beam"], body["image"], body["format"]) == ("lstm", 1, photo.name, "JPEG")
    with Image.open(photo) as im:
        assert (body["width"], body["height"]) == im.size
    timing = body["timing"]
    assert timing["total_s"] >= timing["inference_s"] > 0 and timing["batch_images"] >= 1


def test_caption_several_images_answers_a_list_in_order(client, sample_photos, tiny_checkpoints):
    files = [("image", (p.name, photo_bytes(p), "image/jpeg")) for p in sample_photos]
    r = client.post("/api/caption", files=files)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert [row["image"] for row in rows] == [p.name for p in sample_photos]
    captioner = Captioner.load(tiny_checkpoints["gpt"])
    expected = [captioner.describe(p) for p in sample_photos]
    assert [row["caption"] for row in rows] == [e.text for e in expected]
    assert [row["concepts"] for row in rows] == [[c.to_dict() for c in e.concepts] for e in expected]
    assert all(row["model"] == "gpt" and row["beam"] == 2 for row in rows)


def test_the_type_is_sniffed_from_the_bytes_not_the_name(client, sample_photos):
    png = encode(Image.open(sample_photos[0]), "PNG")
    r = client.post("/api/caption", files={"image": ("holiday.jpg", png, "image/jpeg")})
    assert r.status_code == 200 and r.json()["format"] == "PNG"
    r = client.post("/api/caption", files={"image": ("photo.jpg", b"#!/bin/sh\necho not a photo\n", "image/jpeg")})
    assert_error(r, 415, "photo.jpg", "not an image")


def test_concurrent_requests_are_all_answered_and_batched(server, sample_photos, tiny_checkpoints):
    photos = [sample_photos[i % len(sample_photos)] for i in range(16)]
    barrier = threading.Barrier(len(photos))

    def post(photo: Path) -> dict:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            barrier.wait()
            r = c.post("/api/caption", files={"image": (photo.name, photo_bytes(photo))}, data={"model": "gpt"})
            assert r.status_code == 200, r.text
            return r.json()

    with ThreadPoolExecutor(len(photos)) as pool:
        rows = list(pool.map(post, photos))
    captioner = Captioner.load(tiny_checkpoints["gpt"])
    expected = {p.name: captioner.caption(p) for p in sample_photos}
    assert [row["caption"] for row in rows] == [expected[p.name] for p in photos]
    assert max(row["timing"]["batch_images"] for row in rows) > 1, "no two requests shared a batch"


def test_a_full_queue_is_answered_503_not_queued_without_bound(tiny_checkpoints):
    import asyncio

    worker = InferenceWorker({"gpt": Captioner.load(tiny_checkpoints["gpt"])}, max_batch=4, max_pending=1)
    image = Image.new("RGB", (32, 32))

    async def two_requests():
        first = asyncio.ensure_future(worker.caption("gpt", None, [image]))
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as refused:
            await worker.caption("gpt", None, [image])
        assert refused.value.status == 503
        worker.start()  # the first, queued before the worker started, is still answered
        return await first

    outcome = asyncio.run(two_requests())
    worker.stop()
    assert len(outcome.captions) == 1


# ---- bad input: always a 4xx with a JSON error, and the server keeps serving -----------------------------------

def _multipart(body_fields: list[tuple[str, str, bytes]], boundary: str = "imgsumtestboundary") -> bytes:
    parts = []
    for name, filename, data in body_fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("case", ["empty", "truncated", "too-big-file", "bomb-over-our-limit", "pillow-bomb",
                                  "gif-not-image", "svg", "pdf", "text-as-image"])
def test_bad_images_are_refused_with_a_4xx(client, sample_photos, case):
    jpeg = photo_bytes(sample_photos[0])
    noisy = Image.effect_noise((700, 700), 90).convert("RGB")
    cases = {
        "empty": (b"", 422, "empty"),
        "truncated": (jpeg[: len(jpeg) // 3], 422, "cannot decode"),
        "too-big-file": (encode(noisy, "BMP"), 413, "limit"),
        "bomb-over-our-limit": (png_header(12_000, 12_000), 413, "pixels"),
        "pillow-bomb": (png_header(40_000, 40_000), 413, "bomb"),
        "gif-not-image": (b"GIF89a" + b"\x00" * 20, 415, "not an image"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 415, "not an image"),
        "pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", 415, "not an image"),
        "text-as-image": (b"hello", 415, "not an image"),
    }
    data, status, word = cases[case]
    assert_error(client.post("/api/caption", files={"image": (f"{case}.png", data, "image/png")}), status, word)


@pytest.mark.parametrize("fields, status, word", [
    ({"beam": "0"}, 422, "beam"),
    ({"beam": "99"}, 422, "beam"),
    ({"beam": "wide"}, 422, "beam"),
    ({"model": "resnet-9000"}, 422, "model"),
])
def test_bad_fields_are_refused_with_422(client, sample_photos, fields, status, word):
    files = {"image": ("a.jpg", photo_bytes(sample_photos[0]))}
    assert_error(client.post("/api/caption", files=files, data=fields), status, word)


def test_malformed_requests_are_refused(client, sample_photos):
    jpeg = photo_bytes(sample_photos[0])
    assert_error(client.post("/api/caption"), 422, "image")
    assert_error(client.post("/api/caption", json={"image": "x"}), 422, "image")
    assert_error(client.post("/api/caption", data={"image": "not a file"}), 422, "image")
    assert_error(client.post("/api/caption", files=[("image", (f"{i}.jpg", jpeg)) for i in range(5)]), 413,
                 "limit of 4")
    bad = client.post("/api/caption", content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= bad.status_code < 500 and "error" in bad.json()
    assert_error(client.get("/api/nothing-here"), 404)
    assert_error(client.get("/api/caption"), 405)
    assert_error(client.get("/healthz", headers={"host": "attacker.example"}), 400, "host")
    assert_error(client.post("/api/caption", files={"image": ("a.jpg", jpeg)},
                             headers={"origin": "http://attacker.example"}), 403, "cross-origin")


def test_an_oversized_body_is_refused_413_declared_or_chunked(client):
    body = _multipart([("image", "big.jpg", b"\xff" * (MAX_REQUEST + 10_000))])
    headers = {"content-type": "multipart/form-data; boundary=imgsumtestboundary"}
    assert_error(client.post("/api/caption", content=body, headers=headers), 413, "limit")

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    assert_error(client.post("/api/caption", content=chunks(), headers=headers), 413, "limit")


def test_the_server_keeps_serving_after_bad_input(client, sample_photos):
    for junk in (b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, png_header(50_000, 50_000), b"\xff\xd8\xff" + b"\x00" * 99):
        assert 400 <= client.post("/api/caption", files={"image": ("junk.png", junk)}).status_code < 500
    assert client.get("/healthz").json()["status"] == "ok"
    r = client.post("/api/caption", files={"image": ("ok.jpg", photo_bytes(sample_photos[2]))})
    assert r.status_code == 200 and r.json()["caption"]


# ---- saving ----------------------------------------------------------------------------------------------------

def save(client, data: bytes, name: str, caption: str = "a cat sits on the grass", **fields) -> httpx.Response:
    form = {"caption": caption, "model": "gpt", "beam": "2", "seconds": "0.25", **fields}
    return client.post("/api/save", files={"image": (name, data)}, data=form)


def test_save_writes_image_sidecars_metadata_and_captioned_picture(client, server, sample_photos):
    photo = sample_photos[1]
    r = save(client, photo_bytes(photo), photo.name)
    assert r.status_code == 200, r.text
    body = r.json()
    folder = Path(body["folder"])
    assert folder == server.output.resolve()
    files = body["files"]
    assert files == {"image": f"{body['stem']}.jpg", "text": f"{body['stem']}.txt", "json": f"{body['stem']}.json",
                     "captioned": f"{body['stem']}.captioned.jpg"}
    assert (folder / files["text"]).read_text() == "a cat sits on the grass\n"
    record = json.loads((folder / files["json"]).read_text())
    assert record["caption"] == "a cat sits on the grass" and record["model"] == "gpt" and record["seconds"] == 0.25
    assert record["settings"]["beam"] == 2 and record["settings"]["decoder"] == "gpt"
    assert record["source"] == "upload" and record["files"] == files
    with Image.open(folder / files["image"]) as saved, Image.open(photo) as original:
        assert saved.getexif()[DESCRIPTION] == "a cat sits on the grass"
        assert saved.tobytes() == original.tobytes(), "the photo was re-encoded"
    with Image.open(folder / files["captioned"]) as captioned, Image.open(photo) as original:
        assert captioned.getexif()[DESCRIPTION] == "a cat sits on the grass"
        assert captioned.height > captioned.width * original.height / original.width


def test_save_keeps_the_concepts_in_the_sidecar_and_refuses_malformed_ones(client, sample_photos):
    photo = sample_photos[1]
    concepts = [{"word": "cat", "p": 0.81}, {"word": "tabby", "p": 0.42}]
    r = save(client, photo_bytes(photo), photo.name, concepts=json.dumps(concepts))
    assert r.status_code == 200, r.text
    record = json.loads((Path(r.json()["folder"]) / r.json()["files"]["json"]).read_text())
    assert record["concepts"] == concepts
    r = save(client, photo_bytes(photo), photo.name)  # without them (an older page): null
    assert json.loads((Path(r.json()["folder"]) / r.json()["files"]["json"]).read_text())["concepts"] is None
    for bad in ("not json", '{"word": "cat"}', '[{"word": "cat", "p": 7}]', '[{"p": 0.5}]'):
        assert_error(save(client, photo_bytes(photo), photo.name, concepts=bad), 422, "concepts")


def test_save_embeds_a_png_text_chunk_and_converts_other_formats(client, sample_photos):
    picture = Image.open(sample_photos[0]).convert("RGB")
    r = save(client, encode(picture, "PNG"), "astro.png", caption="a woman in a suit")
    assert r.status_code == 200, r.text
    folder, files = Path(r.json()["folder"]), r.json()["files"]
    with Image.open(folder / files["image"]) as saved:
        saved.load()
        assert saved.format == "PNG" and saved.text["Description"] == "a woman in a suit"
        assert saved.tobytes() == picture.tobytes()
    r = save(client, encode(picture, "WEBP", lossless=True), "astro.webp", caption="a woman, again")
    files = r.json()["files"]
    assert files["image"].endswith(".png")
    with Image.open(folder / files["image"]) as saved:
        saved.load()
        assert saved.text["Description"] == "a woman, again"


@pytest.mark.parametrize("name", ["../../escape.jpg", "..", "/etc/passwd", "C:\\Windows\\win.ini", "a/../../b.jpg",
                                  ".hidden", "ŝtrange näme .jpg", "x" * 300 + ".jpg"])
def test_no_field_can_write_outside_the_output_folder(client, server, sample_photos, name):
    data = photo_bytes(sample_photos[3])
    for r in (save(client, data, name), save(client, data, "plain.jpg", filename=name)):
        assert r.status_code == 200, r.text
        body = r.json()
        assert Path(body["folder"]) == server.output.resolve()
        for file in body["files"].values():
            path = (server.output / file).resolve()
            assert path.parent == server.output.resolve() and path.is_file()
    assert not (server.output.parent / "escape.jpg").exists()


def test_save_never_overwrites_nor_follows_links(client, server, sample_photos, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (server.output / "linked.txt").symlink_to(victim)
    data = photo_bytes(sample_photos[2])
    first = save(client, data, "linked.jpg").json()
    second = save(client, data, "linked.jpg").json()
    assert first["stem"] != "linked" and second["stem"] != first["stem"]
    assert victim.read_text() == "untouched"
    assert safe_stem("../../x y.jpg") == "x-y" and safe_stem("...") == "image"


def test_bad_saves_are_refused_with_a_4xx(client, sample_photos):
    data = photo_bytes(sample_photos[0])
    assert_error(save(client, data, "a.jpg", caption="   "), 422, "caption")
    assert_error(save(client, data, "a.jpg", model="nope"), 422, "model")
    assert_error(save(client, data, "a.jpg", sample_id="made-up"), 422, "sample_id")
    assert_error(save(client, data, "a.jpg", caption="x" * 1001), 422, "caption")
    assert_error(save(client, b"not an image at all", "a.jpg"), 415, "not an image")
    assert_error(client.post("/api/save", data={"caption": "no image"}), 422, "image")


# ---- sample images: the shipped gallery, and Unsplash (a fake one on loopback) -----------------------------------

def test_sample_without_a_key_comes_from_the_shipped_gallery(client, sample_photos):
    seen = set()
    for _ in range(12):
        r = client.get("/api/sample")
        assert r.status_code == 200
        body = r.json()
        assert body["source"] == "gallery" and body["notice"] is None
        assert body["data_url"].startswith("data:image/jpeg;base64,")
        assert body["attribution"]["text"]
        seen.add(body["filename"])
    assert seen <= {p.name for p in sample_photos} and len(seen) > 1


@pytest.fixture(scope="module")
def unsplash(sample_photos):
    fake = FakeUnsplash(photo_bytes(sample_photos[1]))
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def unsplash_server(tiny_checkpoints, tmp_path_factory, unsplash):
    output = tmp_path_factory.mktemp("saved-unsplash")
    settings = settings_for(tiny_checkpoints, output, unsplash_access_key="test-key", unsplash_api_url=unsplash.url,
                            unsplash_timeout_s=0.5)
    with BackgroundServer(create_app(settings)) as running:
        running.output = output
        yield running


def test_sample_from_unsplash_is_credited_and_its_save_is_counted(unsplash_server, unsplash, sample_photos):
    unsplash.mode = "ok"
    unsplash.requests.clear()
    with httpx.Client(base_url=unsplash_server.url, timeout=30) as c:
        body = c.get("/api/sample").json()
        assert body["source"] == "unsplash" and body["notice"] is None
        assert body["description"] == "a cat on a sofa"
        attribution = body["attribution"]
        assert attribution["text"] == "Photo by Jane Doe on Unsplash"
        assert attribution["photographer_url"] == "https://unsplash.com/@janedoe?utm_source=imgsum&utm_medium=referral"
        assert attribution["source_url"] == "https://unsplash.com/?utm_source=imgsum&utm_medium=referral"
        (path, headers), = unsplash.paths("/photos/random")
        assert headers["Authorization"] == "Client-ID test-key" and headers["Accept-Version"] == "v1"
        import base64
        data = base64.b64decode(body["data_url"].split(",", 1)[1])
        assert data == photo_bytes(sample_photos[1])
        assert not unsplash.paths("/photos/abc123/download")
        r = c.post("/api/save", files={"image": (body["filename"], data)},
                   data={"caption": "a cat", "model": "lstm", "sample_id": body["id"]})
        assert r.status_code == 200, r.text
        (path, headers), = unsplash.paths("/photos/abc123/download")
        assert headers["Authorization"] == "Client-ID test-key"
        saved = r.json()
        record = json.loads((unsplash_server.output / saved["files"]["json"]).read_text())
        assert record["source"] == "unsplash" and record["attribution"]["photographer"] == "Jane Doe"
        with Image.open(unsplash_server.output / saved["files"]["image"]) as im:
            assert im.getexif()[0x013B] == "Jane Doe"  # EXIF Artist


@pytest.mark.parametrize("mode", ["500", "403", "bad-json", "timeout", "image-404", "not-image"])
def test_when_unsplash_fails_the_gallery_answers(unsplash_server, unsplash, sample_photos, mode):
    unsplash.mode = mode
    try:
        with httpx.Client(base_url=unsplash_server.url, timeout=30) as c:
            r = c.get("/api/sample")
    finally:
        unsplash.mode = "ok"
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == "gallery" and body["filename"] in {p.name for p in sample_photos}
    assert "Unsplash failed" in body["notice"]


def test_settings_parse_model_lists():
    assert parse_models("gpt, lstm") == {"gpt": "gpt", "lstm": "lstm"}
    assert parse_models(["mine=/a/b.safetensors", "/c/tiny.safetensors"]) == {"mine": "/a/b.safetensors",
                                                                             "tiny": "/c/tiny.safetensors"}
    with pytest.raises(ValueError):
        parse_models("a=x,a=y")
    with pytest.raises(ValueError, match="no models"):
        Settings(models={}).checked()


# ---- the beam bound: the server's max_beam, or a model's own beam where that is wider -----------------------------

@pytest.fixture(scope="module")
def narrow_server(tiny_checkpoints, wide_checkpoint, tmp_path_factory):
    """``max_beam`` 2: below the ``wide`` model's own beam (5), equal to ``gpt``'s (2)."""
    output = tmp_path_factory.mktemp("saved-narrow")
    settings = Settings(models={"wide": str(wide_checkpoint), "gpt": str(tiny_checkpoints["gpt"])}, output_dir=output,
                        max_upload_bytes=MAX_UPLOAD, max_request_bytes=MAX_REQUEST, max_images=4, max_beam=2)
    with BackgroundServer(create_app(settings)) as running:
        yield running


def test_a_model_whose_own_beam_is_wider_than_max_beam_can_be_asked_for_it(narrow_server, sample_photos):
    """The app asks for the chosen model's own beam: a model served with a default wider than ``max_beam`` answers
    it (and no wider), while the others keep ``max_beam``."""
    files = {"image": ("a.jpg", photo_bytes(sample_photos[0]))}
    with httpx.Client(base_url=narrow_server.url, timeout=60) as c:
        for fields in ({"model": "wide"}, {"model": "wide", "beam": str(WIDE_BEAM)}):
            r = c.post("/api/caption", files=files, data=fields)
            assert r.status_code == 200, r.text
            assert (r.json()["model"], r.json()["beam"]) == ("wide", WIDE_BEAM)
        assert_error(c.post("/api/caption", files=files, data={"model": "wide", "beam": str(WIDE_BEAM + 1)}), 422,
                     f"beam: must be from 1 to {WIDE_BEAM} for model 'wide', not {WIDE_BEAM + 1}")
        assert c.post("/api/caption", files=files, data={"model": "gpt", "beam": "2"}).status_code == 200
        assert_error(c.post("/api/caption", files=files, data={"model": "gpt", "beam": "3"}), 422,
                     "beam: must be from 1 to 2 for model 'gpt', not 3")
        form = {"caption": "a wide caption", "beam": str(WIDE_BEAM)}
        assert c.post("/api/save", files=files, data={**form, "model": "wide"}).status_code == 200
        assert_error(c.post("/api/save", files=files, data={**form, "model": "gpt"}), 422, "from 1 to 2 for model")
        assert_error(c.post("/api/save", files=files, data=form), 422, f"beam: must be from 1 to 2, not {WIDE_BEAM}")


def test_api_models_gives_each_models_beam_bound(narrow_server):
    with httpx.Client(base_url=narrow_server.url, timeout=60) as c:
        models = c.get("/api/models").json()
        config = c.get("/api/config").json()
    assert (models["max_beam"], config["max_beam"]) == (2, 2)  # the server's setting, as before
    assert [(m["name"], m["default_beam"], m["max_beam"]) for m in models["models"]] == [("wide", WIDE_BEAM, WIDE_BEAM),
                                                                                         ("gpt", 2, 2)]


def test_max_beam_covers_every_shipped_models_own_beam():
    """A model's own beam can always be asked for (see above); this keeps ``max_beam`` at least every shipped model's
    own, so that it is the one bound for all of them: a shipped model with a wider default asks for a look at it."""
    models = installed_models()
    if not models:
        pytest.skip("no shipped model is installed")
    beams = {name: Captioner.load(path).info.decoding.beam for name, path in models.items()}
    assert max(beams.values()) <= Settings().max_beam, beams


# ---- the command line ------------------------------------------------------------------------------------------

def test_the_command_line_imports_no_web_stack_until_serve_runs():
    code = "import sys, imgsum.cli; imgsum.cli.build_parser(); print(sorted({'fastapi', 'uvicorn', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_imgsum_serve_starts_answers_and_stops(tiny_checkpoints, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "imgsum.cli", "serve", "--port", str(port), "--output-dir", str(tmp_path),
               "--model", f"tiny={tiny_checkpoints['lstm']}", "--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "imgsum serve did not start"
                time.sleep(0.2)
        assert health.json()["models"] == ["tiny"]
    finally:
        server.terminate()
        assert server.wait(30) in (0, -signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal


def test_imgsum_serve_refuses_to_start_without_models(tmp_path):
    command = [sys.executable, "-m", "imgsum.cli", "serve", "--model", str(tmp_path / "missing.safetensors")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "missing.safetensors" in done.stderr


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGBA"), ("PNG", "I;16"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"),
                                       ("WEBP", "RGB"), ("JPEG", "CMYK"), ("JPEG", "L")])
def test_every_accepted_format_and_mode_is_captioned_and_saved(client, sample_photos, fmt, mode):
    picture = Image.open(sample_photos[2]).convert("RGB").resize((300, 200))  # uncompressed formats stay small
    picture = picture.convert(mode) if mode != "I;16" else Image.fromarray(
        (np.asarray(picture.convert("L"), np.uint16) * 257))
    data = encode(picture, fmt)
    r = client.post("/api/caption", files={"image": (f"x.{fmt.lower()}", data)})
    assert r.status_code == 200, r.text
    assert r.json()["format"] == fmt
    r = save(client, data, f"formats.{fmt.lower()}", caption=f"a {fmt} picture")
    assert r.status_code == 200, r.text
    with Image.open(Path(r.json()["folder"]) / r.json()["files"]["image"]) as saved:
        saved.load()
        text = saved.getexif().get(DESCRIPTION) if saved.format == "JPEG" else saved.text.get("Description")
        assert text == f"a {fmt} picture"


def test_an_exif_rotated_photo_keeps_its_orientation_when_saved(client, sample_photos):
    picture = Image.open(sample_photos[2]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    r = client.post("/api/caption", files={"image": ("rotated.jpg", encode(picture, "JPEG", exif=exif))})
    assert (r.json()["width"], r.json()["height"]) == picture.size  # as stored
    saved = save(client, encode(picture, "JPEG", exif=exif), "rotated.jpg").json()
    folder = Path(saved["folder"])
    with Image.open(folder / saved["files"]["image"]) as im:
        assert im.getexif()[0x0112] == 6 and im.getexif()[DESCRIPTION]
    with Image.open(folder / saved["files"]["captioned"]) as captioned:
        assert captioned.width < captioned.height  # drawn upright: the 600x400 photo stands as 400x600


def test_a_full_disk_answers_507_and_leaves_no_partial_files(tiny_checkpoints, small_disk, sample_photos):
    output = small_disk / "saved"
    output.mkdir()
    fill_disk(small_disk)
    with BackgroundServer(create_app(settings_for(tiny_checkpoints, output))) as running:
        with httpx.Client(base_url=running.url, timeout=60) as c:
            r = save(c, photo_bytes(sample_photos[1]), sample_photos[1].name)
    assert r.status_code == 507, r.text
    assert "No space left on device" in r.json()["error"]
    assert list(output.iterdir()) == []
