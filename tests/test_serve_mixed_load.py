"""A mixed concurrent load on a real server: good and bad uploads from several clients at once.

Every good request must be answered with the caption it gets when sent alone (requests share batches,
so a mix-up between them, or one bad image failing its batch-mates, shows here), and every bad one
with a 4xx JSON ``{"error": ...}``.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the test extra (httpx) is not installed")

CLIENTS = 6


@dataclass(frozen=True)
class Request:
    """One POST /api/caption: its images (name, bytes), form fields, and the status it must get (200: good)."""

    label: str
    images: tuple[tuple[str, bytes], ...]
    fields: dict = field(default_factory=dict, hash=False)
    status: int = 200

    def send(self, client: httpx.Client) -> httpx.Response:
        return client.post("/api/caption", files=[("image", image) for image in self.images], data=self.fields)


def good_requests(photos: list[Path]) -> list[Request]:
    """Each photo with each model at two beams, and one request of two photos."""
    one = [Request(f"{p.name} {model} beam {beam}", ((p.name, p.read_bytes()),), {"model": model, "beam": str(beam)})
           for p in photos for model in ("gpt", "lstm") for beam in (1, 2)]
    pair = Request("two photos", tuple((p.name, p.read_bytes()) for p in photos[:2]), {"model": "gpt"})
    return [*one, pair]


def bad_requests(photos: list[Path]) -> list[Request]:
    jpeg = photos[0].read_bytes()
    return [
        Request("empty file", (("empty.jpg", b""),), status=422),
        Request("truncated JPEG", (("cut.jpg", jpeg[: len(jpeg) // 3]),), status=422),
        Request("not an image", (("notes.jpg", b"#!/bin/sh\necho hello\n"),), status=415),
        Request("oversized file", (("big.bmp", b"BM" + b"\x00" * 500_000),), status=413),
        Request("beam 0", (("a.jpg", jpeg),), {"beam": "0"}, status=422),
        Request("unknown model", (("a.jpg", jpeg),), {"model": "resnet-9000"}, status=422),
        Request("too many images", tuple((f"{i}.jpg", jpeg) for i in range(5)), status=413),
        Request("good photo beside a truncated one", (("a.jpg", jpeg), ("cut.jpg", jpeg[: len(jpeg) // 3])),
                status=422),
    ]


def captions(response: httpx.Response) -> list[str]:
    body = response.json()
    return [row["caption"] for row in (body if isinstance(body, list) else [body])]


def check(request: Request, response: httpx.Response, alone: dict[str, list[str]]) -> str | None:
    """What is wrong with ``response`` to ``request``, or None."""
    if response.status_code != request.status:
        return f"{request.label}: {response.status_code}, not {request.status}: {response.text[:300]}"
    if request.status == 200:
        got = captions(response)
        return None if got == alone[request.label] else f"{request.label}: {got}, alone {alone[request.label]}"
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
    return None if isinstance(body, dict) and isinstance(body.get("error"), str) else \
        f"{request.label}: error not JSON {{'error': ...}}: {response.text[:300]}"


@pytest.mark.slow
def test_good_requests_get_their_own_caption_under_a_mixed_concurrent_load(tiny_server, sample_photos) -> None:
    goods, bads = good_requests(sample_photos), bad_requests(sample_photos)
    with httpx.Client(base_url=tiny_server.url, timeout=120) as client:
        alone = {}
        for request in goods:
            response = request.send(client)
            assert response.status_code == 200, response.text
            alone[request.label] = captions(response)
    barrier = threading.Barrier(CLIENTS)

    def run_client(seed: int) -> list[str]:
        """One client: every request, good and bad, in its own shuffled order; what went wrong."""
        mix = [*goods, *bads]
        random.Random(seed).shuffle(mix)
        with httpx.Client(base_url=tiny_server.url, timeout=120) as client:
            barrier.wait()
            return [problem for request in mix if (problem := check(request, request.send(client), alone))]

    with ThreadPoolExecutor(CLIENTS) as pool:
        problems = [p for found in pool.map(run_client, range(CLIENTS)) for p in found]
    assert problems == []
