"""Does a caption name its subject (the ``imagenet_dev`` rule of the data README), degenerate captions, and
``imgsum eval --subjects`` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import SAMPLES
from data_paths import IMAGENET_DEV, imagenet_dev_present
from imgsum.cli import main
from imgsum.eval.subject_eval import check_synsets, subject_metrics
from imgsum.eval.subjects import SubjectRule, is_degenerate

needs_imagenet_dev = pytest.mark.skipif(not imagenet_dev_present(),
                                        reason=f"imagenet_dev photos absent ({IMAGENET_DEV}; set $IMGSUM_DATA)")

TABBY, EAGLE = "n02123045_tabby.jpg", "n01614925_bald_eagle.jpg"
#: The shipped sample photos under the ImageNet names of what they show; the astronaut keeps a name with no synset.
IMAGENET_NAMES = {"chelsea.jpg": TABBY, "coffee.jpg": "n07920052_espresso.jpg",
                  "rocket.jpg": "n04266014_space_shuttle.jpg", "astronaut.jpg": "astronaut.jpg"}


@pytest.fixture(scope="module")
def rule() -> SubjectRule:
    return SubjectRule()


# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("caption, image", [
    ("a cat sleeps on a bed", TABBY),  # tabby -> domestic cat -> cat
    ("A Tabby, asleep.", TABBY),  # case and punctuation do not matter
    ("a bird on a branch", EAGLE),
    ("an eagle flies over the lake", EAGLE),
    ("two cats on a sofa", TABBY),  # + s
    ("a space shuttle on the launch pad", "n04266014_space_shuttle.jpeg"),  # a lemma of several words
    ("a glass of coffee", "n07920052_espresso.jpg"),
    ("three butterflies on a flower", "n02276258_admiral.jpg"),  # y -> ies
    ("a few espressoes", "n07920052_espresso.jpg"),  # + es
    ("a cat", f"photos/{TABBY}"),  # the file's name counts, not its folder
])
def test_captions_that_name_their_subject(rule: SubjectRule, caption: str, image: str) -> None:
    assert rule.names(caption, image) is True


@pytest.mark.parametrize("caption, image", [
    ("an animal", TABBY),  # the climb stops at the generic synsets and does not count them
    ("an animal on a branch", EAGLE),
    ("a mammal on a bed", TABBY),
    ("a dog sleeps on a bed", TABBY),
    ("a category of things", TABBY),  # "cat" only as a whole word
    ("the birdhouse", EAGLE),
    ("a shuttle bus in the street", "n04266014_space_shuttle.jpg"),  # "shuttle" alone is no lemma of it
    ("", TABBY),
])
def test_captions_that_do_not(rule: SubjectRule, caption: str, image: str) -> None:
    assert rule.names(caption, image) is False


@pytest.mark.parametrize("image", ["astronaut.jpg", "n99999999_nothing.jpg", "tabby_n02123045.jpg", "n0212304_x.jpg"])
def test_names_without_a_known_synset_are_not_scored(rule: SubjectRule, image: str) -> None:
    assert rule.synset(image) is None and rule.names("a cat", image) is None


# --- degenerate captions -----------------------------------------------------------------------


@pytest.mark.parametrize("caption", [
    "a black dog and a black dog and a black dog",  # a two- and a three-word sequence, three times
    "a man wearing a sunglasses and sunglasses and sunglasses",  # a word three times
    "dog dog dog",
])
def test_degenerate_captions(caption: str) -> None:
    assert is_degenerate(caption)


@pytest.mark.parametrize("caption", [
    "a black dog runs through the grass",
    "a man in a red shirt is holding a camera",  # "a" four times: a free word
    "a dog and a cat and a bird play in the snow",  # "and a" twice only
    "a cat with a ball on a bed in the sun",
    "",
])
def test_ordinary_captions_are_not_degenerate(caption: str) -> None:
    assert not is_degenerate(caption)


# --- the metrics -------------------------------------------------------------------------------


def test_subject_metrics_leave_names_without_a_synset_out_of_the_share() -> None:
    rows = [{"named": True, "concept_named": True, "degenerate": False},
            {"named": False, "concept_named": True, "degenerate": True},
            {"named": True, "concept_named": False, "degenerate": False},
            {"named": None, "concept_named": None, "degenerate": True}]
    assert subject_metrics(rows, no_synset=1) == {"named_share": 2 / 3, "named": 2, "scored": 3, "no_synset": 1,
                                                  "concept_named_share": 2 / 3, "degenerate": 2, "captions": 4}


def test_check_synsets_warns_about_unnamed_photos_and_refuses_a_folder_with_none(rule, caplog) -> None:
    assert check_synsets(rule, [TABBY, "holiday.jpg"], "photos") == ["holiday.jpg"]
    assert "1 of 2 photos have no known ImageNet synset" in caplog.text and "holiday.jpg" in caplog.text
    with pytest.raises(ValueError, match="nothing to score"):
        check_synsets(rule, ["holiday.jpg"], "photos")


# --- imgsum eval --subjects, end to end --------------------------------------------------------


@pytest.fixture()
def named_photos(tmp_path: Path) -> Path:
    """The shipped sample photos under ImageNet names (and one name without a synset)."""
    if not all((SAMPLES / name).is_file() for name in IMAGENET_NAMES):
        pytest.skip(f"the sample photos are absent ({SAMPLES})")
    folder = tmp_path / "photos"
    folder.mkdir()
    for sample, name in IMAGENET_NAMES.items():
        shutil.copy(SAMPLES / sample, folder / name)
    return folder


def _eval_subjects(folder: Path, out: Path, checkpoint: Path, *extra: str) -> int:
    return main(["eval", "--subjects", str(folder), "--model", str(checkpoint), "--out", str(out), "--no-progress",
                 *extra])


def _read(out: Path) -> tuple[dict, list[dict]]:
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    return json.loads((out / "metrics.json").read_text()), rows


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_eval_subjects_end_to_end(named_photos: Path, tmp_path: Path, tiny_checkpoints, kind: str, capsys,
                                  caplog, rule: SubjectRule) -> None:
    out = tmp_path / "eval"
    assert _eval_subjects(named_photos, out, tiny_checkpoints[kind], "--beam", "1") == 0
    result, rows = _read(out)
    assert sorted(r["image"] for r in rows) == sorted(IMAGENET_NAMES.values())
    for r in rows:
        assert r["named"] is rule.names(r["caption"], r["image"])
        assert r["degenerate"] is is_degenerate(r["caption"])
        assert all(set(c) == {"word", "p"} for c in r["concepts"])
    assert any(r["concepts"] for r in rows)  # the tiny models have the real classifier's concepts
    metrics = result["metrics"]
    named = sum(r["named"] is True for r in rows)
    concept_named = sum(r["concept_named"] is True for r in rows)
    assert metrics == {"named_share": named / 3, "named": named, "scored": 3, "no_synset": 1,
                       "concept_named_share": concept_named / 3,
                       "degenerate": sum(r["degenerate"] for r in rows), "captions": 4}
    assert result["kind"] == "subjects" and result["no_synset"] == ["astronaut.jpg"]
    share = result["intervals"]["named_share"]  # over the 3 scored photos, not the one without a synset
    assert share["photos"] == 3 and share["mean"] == pytest.approx(named / 3)
    assert share["low"] <= share["mean"] <= share["high"]
    s = result["settings"]
    assert (s["decoder"], s["backend"], s["beam"], s["images"]) == (kind, "torch", 1, 4)
    assert result["command"].startswith(f"imgsum eval --model {tiny_checkpoints[kind]} --subjects {named_photos}")
    assert "no known ImageNet synset" in caplog.text and "astronaut.jpg" in caplog.text
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"] == metrics and set(printed["files"]) == {"metrics", "captions", "report"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/jpeg;base64,") >= 4 and "Degenerate captions" in html
    assert "no synset in the name" in html and f"{named} ({100 * named / 3:.1f}%)" in html
    assert f"bootstrap interval over the 3 photos (2000 resamples): named_share {share['low']:.3f} to" in html


def test_eval_subjects_refuses_a_folder_without_synsets(tmp_path: Path, tiny_checkpoints, caplog) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(SAMPLES / "astronaut.jpg", folder)
    assert _eval_subjects(folder, tmp_path / "eval", tiny_checkpoints["gpt"]) == 2
    assert "nothing to score" in caplog.text and not (tmp_path / "eval").exists()
    assert _eval_subjects(tmp_path / "missing", tmp_path / "eval", tiny_checkpoints["gpt"]) == 2
    assert "no folder at" in caplog.text


@pytest.mark.slow
def test_eval_subjects_on_onnx_runtime_gives_torch_rows(named_photos: Path, tmp_path: Path, tiny_checkpoints) -> None:
    """An exported model runs on ONNX Runtime and writes the rows the checkpoint writes on torch."""
    assert main(["export", str(tiny_checkpoints["lstm"]), "--out", str(tmp_path / "onnx")]) == 0
    rows = {}
    for backend, model in (("torch", tiny_checkpoints["lstm"]), ("onnx", tmp_path / "onnx" / "tiny-lstm.json")):
        assert _eval_subjects(named_photos, tmp_path / backend, model, "--no-report") == 0
        result, rows[backend] = _read(tmp_path / backend)
        assert result["settings"]["backend"] == backend
    # The same concepts in the same order (ties broken by id alike on both backends); probabilities to 3 places.
    strip = [[{**r, "concepts": [(c["word"], round(c["p"], 3)) for c in r["concepts"]]} for r in rs]
             for rs in rows.values()]
    assert strip[0] == strip[1]


def test_eval_subjects_with_the_default_model_on_onnx_runtime(named_photos: Path, tmp_path: Path) -> None:
    assert _eval_subjects(named_photos, tmp_path / "eval", "default") == 0
    result, rows = _read(tmp_path / "eval")
    assert result["settings"]["backend"] == "onnx"
    assert (result["metrics"]["scored"], result["metrics"]["no_synset"], len(rows)) == (3, 1, 4)


# --- on the real data --------------------------------------------------------------------------


@needs_imagenet_dev
@pytest.mark.data
def test_every_imagenet_dev_photo_has_a_known_synset(rule: SubjectRule) -> None:
    names = sorted(p.name for p in IMAGENET_DEV.glob("*.jpg"))
    assert len(names) == 500 and all(rule.synset(n) for n in names)
    assert rule.names("a cat sleeps on a bed", IMAGENET_DEV / TABBY)


@needs_imagenet_dev
@pytest.mark.data
def test_eval_subjects_on_imagenet_dev_first_photos(tmp_path: Path, tiny_checkpoints) -> None:
    out = tmp_path / "eval"
    assert _eval_subjects(IMAGENET_DEV, out, tiny_checkpoints["lstm"], "--limit", "3", "--beam", "1",
                          "--no-report") == 0
    result, rows = _read(out)
    assert result["metrics"]["scored"] == 3 and result["metrics"]["no_synset"] == 0 and len(rows) == 3
    assert not (out / "report.html").exists()
