"""End to end in a browser: Playwright drives Debian's headless Chromium against a real server on 127.0.0.1.

Skipped, with the reason, when /usr/bin/chromium or the playwright package is absent
(``scripts/ci-system-deps.sh`` installs Chromium).

Run as a script, it retakes the README's screenshot with the shipped models:
``python tests/test_serve_browser.py --screenshot docs/app.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "imgsum" / "assets" / "samples"
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (run scripts/ci-system-deps.sh)"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tiny_checkpoints, tmp_path_factory):
    from imgsum.serve.app import create_app
    from imgsum.serve.background import BackgroundServer
    from imgsum.serve.settings import Settings

    output = tmp_path_factory.mktemp("saved-browser")
    settings = Settings(models={"gpt": str(tiny_checkpoints["gpt"]), "lstm": str(tiny_checkpoints["lstm"])},
                        output_dir=output)
    with BackgroundServer(create_app(settings)) as running:
        running.output = output
        yield running


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and "the server responded with a status of 4" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(server.url + "/")
    page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
    # Record the controls' state at the moment each caption request leaves the page.
    page.evaluate("""() => {
        window.__atCaption = [];
        const fetch0 = window.fetch;
        window.fetch = (...args) => {
            if (String(args[0]).includes('/api/caption'))
                window.__atCaption.push(['generate', 'model', 'beam', 'sample', 'choose', 'save']
                    .map((id) => document.getElementById(id).disabled));
            return fetch0(...args);
        };
    }""")
    yield page
    context.close()
    assert not problems, problems


def wait_for_caption(page) -> str:
    page.wait_for_function("""() => {
        const c = document.getElementById('caption');
        return (c.textContent && !c.classList.contains('busy')) || !document.getElementById('error').hidden;
    }""")
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    return page.locator("#caption").inner_text()


def concept_tags(page) -> list[tuple[str, str]]:
    """The concept tags under the caption, as shown: (word, percentage)."""
    tags = page.locator("#concepts li")
    return [(t.locator(".concept-word").inner_text(), t.locator(".concept-p").inner_text()) for t in tags.all()]


def percent(p: float) -> str:
    """The page's percentage for probability ``p`` as the API sends it (JavaScript's Math.round)."""
    return "<1%" if p < 0.005 else f"{math.floor(p * 100 + 0.5)}%"


def test_upload_generate_save_and_find_the_caption_in_the_saved_image(page, server, tiny_checkpoints):
    from imgsum.api import Captioner

    photo = SAMPLES / "chelsea.jpg"
    labels = page.locator("#model option").all_inner_texts()
    assert any("GPT" in t for t in labels) and any("LSTM" in t for t in labels)
    assert page.locator("#generate").is_disabled(), "Generate must wait for an image"

    page.set_input_files("#file", str(photo))
    page.locator("#preview").wait_for(state="visible")
    page.select_option("#model", "lstm")
    page.fill("#beam", "1")
    page.click("#generate")
    caption = wait_for_caption(page)
    expected = Captioner.load(tiny_checkpoints["lstm"]).describe(photo, beam=1)
    assert caption == expected.text
    assert concept_tags(page) == [(c.word, percent(c.to_dict()["p"])) for c in expected.concepts]
    assert concept_tags(page)[0][0] == "cat"  # chelsea.jpg: the encoder's classifier sees a cat
    assert "lstm, beam 1" in page.locator("#timing").inner_text() and " s " in page.locator("#timing").inner_text()
    assert page.evaluate("window.__atCaption") == [[True] * 6], "controls must be disabled while generating"
    assert page.locator("#generate").is_enabled()

    page.click("#save")
    page.locator("#saved-list li").first.wait_for()
    saved_item = page.locator("#saved-list li").first.inner_text()
    assert caption in saved_item and "chelsea.captioned.jpg" in saved_item
    folder = server.output
    assert sorted(p.name for p in folder.iterdir()) == ["chelsea.captioned.jpg", "chelsea.jpg", "chelsea.json",
                                                        "chelsea.txt"]
    with Image.open(folder / "chelsea.jpg") as saved:
        assert saved.getexif()[0x010E] == caption  # EXIF ImageDescription
    assert (folder / "chelsea.txt").read_text() == caption + "\n"
    record = json.loads((folder / "chelsea.json").read_text())
    assert (record["model"], record["settings"]["beam"], record["source"]) == ("lstm", 1, "upload")
    assert record["seconds"] > 0
    assert [(c["word"], percent(c["p"])) for c in record["concepts"]] == concept_tags(page)  # the page's tags


def test_concept_tags_are_cleared_when_a_new_image_is_chosen(page):
    page.set_input_files("#file", str(SAMPLES / "coffee.jpg"))
    page.locator("#preview").wait_for(state="visible")
    page.click("#generate")
    wait_for_caption(page)
    assert page.locator("#concepts").is_visible() and concept_tags(page)
    page.set_input_files("#file", str(SAMPLES / "rocket.jpg"))
    page.wait_for_function("() => document.getElementById('preview').alt.endsWith('rocket.jpg')")
    assert page.locator("#concepts li").count() == 0 and page.locator("#concepts").is_hidden()
    assert page.locator("#caption").inner_text() == ""


def test_load_sample_image_works_offline(page):
    page.click("#sample")
    page.locator("#preview").wait_for(state="visible")
    attribution = page.locator("#attribution").inner_text()
    assert attribution.startswith("Sample photo:") and ("public domain" in attribution or "CC0" in attribution)
    assert page.locator("#notice").is_hidden()
    page.click("#generate")
    assert wait_for_caption(page)


def test_api_docs_render_offline(browser, server):
    """Swagger UI at /docs renders the API from files the server ships: no request leaves 127.0.0.1."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: elsewhere.append(r.url)
            if not r.url.startswith((server.url, "data:", "blob:")) else None)
    try:
        page.goto(server.url + "/docs")
        page.locator(".opblock", has_text="/api/caption").first.wait_for(state="visible")
        assert page.locator(".opblock-summary-path", has_text="/api/models").count() >= 1
    finally:
        context.close()
    assert not problems, problems
    assert not elsewhere, elsewhere


def test_drop_and_paste_load_an_image(page):
    for event in ("drop", "paste"):
        page.evaluate("""async (event) => {
            const sample = await (await fetch('/api/sample')).json();
            const bytes = Uint8Array.from(atob(sample.data_url.split(',')[1]), (ch) => ch.charCodeAt(0));
            const blob = new Blob([bytes], {type: 'image/jpeg'});
            const dt = new DataTransfer();
            dt.items.add(new File([blob], event + '.jpg', {type: 'image/jpeg'}));
            if (event === 'drop') {
                document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
            } else {
                document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true, cancelable: true}));
            }
        }""", event)
        page.wait_for_function("(name) => document.getElementById('preview').alt.endsWith(name)", arg=f"{event}.jpg")
        page.click("#generate")
        assert wait_for_caption(page)


@pytest.fixture(scope="module")
def unsplash_server(tiny_checkpoints, tmp_path_factory):
    from fixtures.serve.fake_unsplash import FakeUnsplash
    from imgsum.serve.app import create_app
    from imgsum.serve.background import BackgroundServer
    from imgsum.serve.settings import Settings

    fake = FakeUnsplash((SAMPLES / "coffee.jpg").read_bytes())
    output = tmp_path_factory.mktemp("saved-browser-unsplash")
    # The default timeout: the page's save waits for the download tracker, and on a busy machine the fake can take
    # more than half a second to answer (the API tests' short timeout is for their fake that does not answer).
    settings = Settings(models={"gpt": str(tiny_checkpoints["gpt"])}, output_dir=output,
                        unsplash_access_key="test-key", unsplash_api_url=fake.url)
    with BackgroundServer(create_app(settings)) as running:
        running.output, running.fake = output, fake
        yield running
    fake.close()


def test_an_unsplash_photo_is_credited_with_links(browser, unsplash_server):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(unsplash_server.url + "/")
    page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
    page.click("#sample")
    page.locator("#attribution a").first.wait_for()
    assert page.locator("#attribution").inner_text() == "Photo by Jane Doe on Unsplash"
    links = page.locator("#attribution a")
    assert links.nth(0).get_attribute("href") == "https://unsplash.com/@janedoe?utm_source=imgsum&utm_medium=referral"
    assert links.nth(1).get_attribute("href") == "https://unsplash.com/?utm_source=imgsum&utm_medium=referral"
    page.click("#generate")
    assert wait_for_caption(page)
    page.click("#save")
    page.locator("#saved-list li").first.wait_for()
    assert unsplash_server.fake.paths("/photos/abc123/download"), "saving must trigger Unsplash's download endpoint"
    unsplash_server.fake.mode = "500"  # Unsplash down: the button still gives a photo, from the gallery
    page.click("#sample")
    page.wait_for_function("() => document.getElementById('attribution').textContent.startsWith('Sample photo:')")
    assert "Unsplash failed" in page.locator("#notice").inner_text()
    page.close()


@pytest.fixture(scope="module")
def wide_server(tiny_checkpoints, wide_checkpoint, tmp_path_factory):
    """``max_beam`` 3 beside a model of one's own whose own beam (5) is wider, the default, and ``gpt`` (own 2)."""
    from imgsum.serve.app import create_app
    from imgsum.serve.background import BackgroundServer
    from imgsum.serve.settings import Settings

    settings = Settings(models={"wide": str(wide_checkpoint), "gpt": str(tiny_checkpoints["gpt"])},
                        output_dir=tmp_path_factory.mktemp("saved-browser-wide"), max_beam=3)
    with BackgroundServer(create_app(settings)) as running:
        yield running


def test_the_beam_box_follows_the_chosen_models_bound(browser, wide_server):
    """A model whose own beam is wider than the server's max_beam is captioned with its defaults, and the beam box's
    max is the chosen model's bound."""
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(wide_server.url + "/")
        page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
        beam = page.locator("#beam")
        assert page.locator("#model").input_value() == "wide"
        assert (beam.input_value(), beam.get_attribute("max")) == ("5", "5")
        # (the tiny random model's beam-5 caption of chelsea.jpg is empty, which the page's wait cannot see)
        page.set_input_files("#file", str(SAMPLES / "coffee.jpg"))
        page.locator("#preview").wait_for(state="visible")
        page.click("#generate")
        assert wait_for_caption(page)
        assert "wide, beam 5" in page.locator("#timing").inner_text()
        page.select_option("#model", "gpt")
        assert (beam.input_value(), beam.get_attribute("max")) == ("2", "3")
        page.select_option("#model", "wide")
        assert (beam.input_value(), beam.get_attribute("max")) == ("5", "5")
    finally:
        page.close()


def test_a_file_that_is_not_an_image_shows_the_servers_reason(page, tmp_path):
    fake = tmp_path / "notes.jpg"
    fake.write_text("these are notes, not a photo")
    page.set_input_files("#file", str(fake))
    page.click("#generate")
    page.locator("#error").wait_for(state="visible")
    assert "not an image" in page.locator("#error").inner_text()
    assert page.locator("#generate").is_enabled() and page.locator("#save").is_disabled()


# ---- the README's screenshot -------------------------------------------------------------------------------------

def take_screenshot(out: Path, models: list[str] | None, photo: Path, select: str | None = None) -> str:
    """Serves the given (default: installed shipped) models, captions ``photo`` in the page and saves a screenshot."""
    from playwright.sync_api import sync_playwright

    from imgsum.serve.app import create_app
    from imgsum.serve.background import BackgroundServer
    from imgsum.serve.settings import Settings, parse_models

    with tempfile.TemporaryDirectory() as saved:
        overrides = {"models": parse_models(models)} if models else {}
        settings = Settings.from_env({}, output_dir=Path(saved), **overrides)
        with BackgroundServer(create_app(settings)) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 760}, device_scale_factor=1)
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url + "/")
            page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
            page.set_input_files("#file", str(photo))
            if select:
                page.select_option("#model", select)
            page.click("#generate")
            caption = wait_for_caption(page)
            page.click("#save")
            page.locator("#saved-list li").first.wait_for()
            page.evaluate("document.getElementById('output-dir').textContent = '~/imgsum-saved'")  # no temp path
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    return caption


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, required=True, help="PNG file to write, e.g. docs/app.png")
    parser.add_argument("--model", action="append", help="NAME[=PATH]; default: the installed shipped models")
    parser.add_argument("--photo", type=Path, default=SAMPLES / "chelsea.jpg")
    parser.add_argument("--select", help="the model to choose in the page (default: the server's default)")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file() or shutil.which("chromium") is None:
        print(f"no Chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    caption = take_screenshot(args.screenshot, args.model, args.photo, args.select)
    print(f"{args.screenshot}: {args.photo.name} -> {caption!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
