"""The Python API's concepts: ``Captioner.describe`` and the results of ``caption_batch`` carry the visual concepts
the model saw, on a tiny checkpoint whose concept head is the real one (conftest). Needs torch."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from PIL import Image  # noqa: E402

from conftest import SAMPLES, load_script  # noqa: E402
from imgsum.api import Captioner  # noqa: E402
from imgsum.concepts import Concept  # noqa: E402
from imgsum.decoding import Caption  # noqa: E402
from imgsum.images import open_image  # noqa: E402
from imgsum.model_info import DecoderConfig  # noqa: E402


@pytest.fixture(scope="module", params=["gpt", "lstm"])
def captioner(request, tiny_checkpoints) -> Captioner:
    return Captioner.load(tiny_checkpoints[request.param])


def check_concepts(concepts: list[Concept]) -> None:
    """A few concepts, most probable first, each a word with a probability."""
    assert 1 <= len(concepts) <= DecoderConfig().slots
    assert all(isinstance(c, Concept) and c.word and 0 < c.p <= 1 for c in concepts)
    assert [c.p for c in concepts] == sorted((c.p for c in concepts), reverse=True)
    assert len({c.word for c in concepts}) == len(concepts)


def test_describe_gives_the_caption_and_the_concepts(captioner):
    photo = SAMPLES / "chelsea.jpg"
    described = captioner.describe(photo, beam=1)
    assert isinstance(described, Caption) and described.text == captioner.caption(photo, beam=1)
    check_concepts(described.concepts)
    assert described.concepts[0].word == "cat"  # the encoder's ImageNet classifier sees a cat
    assert described.concepts[0].to_dict() == {"word": "cat", "p": round(described.concepts[0].p, 4)}


def test_concepts_are_what_the_photo_shows(captioner):
    words = {p.stem: [c.word for c in captioner.describe(p, beam=1).concepts] for p in SAMPLES.glob("*.jpg")}
    assert "coffee" in words["coffee"] and "cat" in words["chelsea"]
    assert words["coffee"] != words["chelsea"]


def test_caption_batch_results_carry_the_concepts_and_error_rows_none(captioner, tmp_path: Path):
    photos = sorted(SAMPLES.glob("*.jpg"))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a photo")
    results = captioner.caption_batch([photos[0], bad, *photos[1:]], batch_size=2, beam=1)
    assert [r.ok for r in results] == [True, False] + [True] * (len(photos) - 1)
    assert results[1].concepts == [] and results[1].caption is None
    good = [results[0], *results[2:]]
    for r, photo in zip(good, photos):
        described = captioner.describe(photo, beam=1)
        assert r.caption == described.text
        assert [c.to_dict() for c in r.concepts] == [c.to_dict() for c in described.concepts]


def test_the_concepts_come_from_the_photos_centre_square_the_grid_from_the_whole(tiny_checkpoints, tmp_path: Path):
    """A wide photo, a cat between two cups of coffee: a ``concept_crop`` model's classifier sees the cat alone; the
    same checkpoint set to read the whole photo (``scripts/set_decoding.py --concept-crop no``), squeezed threefold,
    sees something else."""
    whole_path = tmp_path / "whole.safetensors"
    assert load_script("set_decoding").main([str(tiny_checkpoints["gpt"]), "--out", str(whole_path),
                                            "--concept-crop", "no"]) == 0
    crop, whole = Captioner.load(tiny_checkpoints["gpt"]), Captioner.load(whole_path)
    assert crop.preprocess.concept_crop and not whole.preprocess.concept_crop
    cat, coffee = (open_image(SAMPLES / f).resize((224, 224)) for f in ("chelsea.jpg", "coffee.jpg"))
    wide = Image.new("RGB", (3 * 224, 224))
    for x, part in ((0, coffee), (224, cat), (448, coffee)):
        wide.paste(part, (x, 0))

    def words(captioner: Captioner, image: Image.Image) -> list[str]:
        return [c.word for c in captioner.describe(image, beam=1).concepts]

    assert words(crop, wide) == words(whole, cat) and words(crop, wide)[0] == "cat"
    assert "cat" not in words(whole, wide)
    batch = crop.caption_batch([cat, wide, coffee], batch_size=3, beam=1)  # the workers' path: views kept apart
    assert [[c.word for c in r.concepts] for r in batch] == [words(crop, p) for p in (cat, wide, coffee)]
