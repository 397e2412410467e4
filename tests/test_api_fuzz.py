"""The REST API fuzzed from its own OpenAPI schema (schemathesis's strategies, run by hypothesis) on a real server.

For every operation the schema lists, requests that fit it (positive), requests that break it
(negative: wrong types, missing fields, odd bytes), and requests that fit it with a real photo in
place of the generated image bytes (so that the other fields reach the model): none may get a 500,
and every error must be JSON ``{"error": "..."}``, the shape the API promises.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the test extra (schemathesis) is not installed")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES = 30  # per operation and mode: a few seconds in all on the tiny checkpoints


@pytest.fixture(scope="module")
def api_schema(tiny_server):
    return schemathesis.openapi.from_url(f"{tiny_server.url}/openapi.json")


def assert_error_shape(response) -> None:
    """An answer of the API's error shape: JSON ``{"error": "<message>"}``."""
    content_type = response.headers.get("content-type") or [""]  # schemathesis's Response: a list per header
    assert content_type[0].startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body


def takes_input(operation) -> bool:
    return bool(operation.body) or any(operation.path_parameters or operation.query or operation.headers or ())


def with_photo(case, photo: bytes):
    """``case`` with each generated ``image`` field replaced by ``photo``."""
    if isinstance(case.body, dict) and "image" in case.body:
        images = case.body["image"]
        case.body["image"] = [photo] * max(1, len(images)) if isinstance(images, list) else photo
    return case


def fuzz(operation, mode: GenerationMode, base_url: str, photo: bytes | None = None) -> None:
    """Sends ``EXAMPLES`` generated requests to ``operation``; the same ones on every run (derandomized)."""
    strategy = operation.as_strategy(generation_mode=mode)
    if photo is not None:
        strategy = strategy.map(lambda case: with_photo(case, photo))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        response = case.call(base_url=base_url, timeout=60)
        where = f"{case.method} {case.formatted_path} ({mode.value})"
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:500]}"
        if response.status_code >= 400:
            assert_error_shape(response)

    check()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["positive", "negative", "photo"])
def test_no_request_gets_a_500_and_every_error_is_json(api_schema, tiny_server, sample_photos, variant) -> None:
    mode = GenerationMode.NEGATIVE if variant == "negative" else GenerationMode.POSITIVE
    photo = sample_photos[0].read_bytes() if variant == "photo" else None
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /api/caption", "POST /api/save"}
    for operation in operations:
        if variant != "positive" and not takes_input(operation):
            continue  # nothing to break, and no image to put, in a request without parameters or body
        fuzz(operation, mode, tiny_server.url, photo)
