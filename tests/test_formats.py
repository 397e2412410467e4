"""Caption file readers (imgsum.data.formats) and splits by image (imgsum.data.splits)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from data_paths import FLICKR8K, FLICKR30K_CAPTIONS
from imgsum.data.formats import FORMATS, CaptionData, CaptionFormatError, detect_format, load_captions
from imgsum.data.splits import split_by_image

FIXTURES = Path(__file__).parent / "fixtures" / "captions"
F8, F30 = FIXTURES / "flickr8k", FIXTURES / "flickr30k"

I = ["1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg", "1002674143_1b742ab4b8.jpg",
     "1003163366_44323f5815.jpg", "1007129816_e794419615.jpg", "1007320043_627395c3d8.jpg"]
J = ["1000092795.jpg", "10002456.jpg", "1000268201.jpg", "1000344755.jpg", "2199200615.jpg"]
PHANTOM = "2258277193_586949ec62.jpg.1"

FLICKR8K_SPLITS = {"train": I[:4], "dev": [I[4]], "test": [I[5]]}
FLICKR30K_SPLITS = {"train": J[:3], "dev": [J[3]], "test": [J[4]]}
FLICKR30K_TOKEN_CAPTIONS = {
    J[0]: ["Two young guys with shaggy hair look at their hands while hanging out in the yard .",
           "Two young , White males are outside near many bushes ."],
    J[1]: ["Several men in hard hats are operating a giant pulley system ."],
    J[2]: ["A child in a pink dress is climbing up a set of stairs in an entry way ."],
    J[3]: ["Someone in a blue shirt and hat is standing on stair and leaning against a window ."],
    J[4]: ["A dog runs across the grass ."],
}


@pytest.mark.parametrize("path, fmt", [
    (F8 / "captions.txt", "kaggle"),
    (F30 / "captions.txt", "kaggle"),
    (F8 / "Flickr8k.token.txt", "flickr8k-token"),
    (F30 / "results_20130124.token", "flickr30k-token"),
    (F30 / "results.csv", "flickr30k-csv"),
    (FIXTURES / "coco" / "captions_val2014.json", "coco"),
    (FIXTURES / "karpathy" / "dataset_flickr8k.json", "karpathy"),
    (FIXTURES / "plain" / "captions.csv", "csv"),
    (FIXTURES / "plain" / "captions.jsonl", "jsonl"),
])
def test_auto_detects_each_format(path: Path, fmt: str) -> None:
    assert fmt in FORMATS
    assert detect_format(path) == fmt
    data = load_captions(path)
    assert data == load_captions(path, fmt=fmt, image_dir=data.image_dir)


def test_flickr8k_token_skips_malformed_empty_and_missing_images(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imgsum.data.formats"):
        data = load_captions(F8 / "Flickr8k.token.txt")
    assert data.captions == {
        I[0]: ["A child in a pink dress is climbing up a set of stairs in an entry way .",
               "A girl going into a wooden building .",
               "A little girl, in pink, climbing into a wooden playhouse ."],
        I[1]: ["A black dog and a spotted dog are fighting", "Two dogs on pavement moving toward each other ."],
        I[2]: ["A little girl covered in paint sits in front of a painted rainbow ."],
        I[3]: ["A man sleeping on a bench outside with a white and black dog sitting next to him ."],
        I[4]: ["A child playing on a rope net ."],
        I[5]: ["A black and white dog is running in a grassy garden surrounded by a white fence ."],
    }
    assert data.skipped == {"malformed line": 1, "empty caption": 1, "missing image": 2}
    assert data.image_dir == F8 / "images"
    assert data.splits == FLICKR8K_SPLITS  # the listed image without captions is left out
    summary = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(summary) == 1
    assert "1 malformed line" in summary[0] and "2 missing image" in summary[0] and PHANTOM in summary[0]


def test_phantom_image_is_kept_when_no_image_folder_is_known() -> None:
    data = load_captions(F8 / "Flickr8k.token.txt", fmt="flickr8k-token")
    assert data.image_dir is None
    assert data.captions[PHANTOM] == ["people waiting for the subway", "Three people standing at a station ."]
    assert data.skipped == {"malformed line": 1, "empty caption": 1}


def test_explicit_image_dir_applies_to_an_explicit_format() -> None:
    data = load_captions(F8 / "Flickr8k.token.txt", fmt="flickr8k-token", image_dir=F8 / "images")
    assert PHANTOM not in data.captions
    assert data.skipped["missing image"] == 2


def test_missing_image_folder_is_an_error() -> None:
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        load_captions(F8 / "Flickr8k.token.txt", image_dir=F8 / "no_such_folder")


def test_kaggle_quoted_commas_and_bad_rows() -> None:
    data = load_captions(F8 / "captions.txt")
    assert data.captions == {
        I[0]: ["A child in a pink dress is climbing up a set of stairs in an entry way .",
               "A little girl, in pink, climbing into a wooden playhouse ."],
        I[1]: ["A black dog and a spotted dog are fighting"],
        I[3]: ["A man sleeping on a bench, with his dog ."],
        I[4]: ["A child playing on a rope net ."],
        I[5]: ["A black and white dog is running in a grassy garden ."],
    }
    assert data.skipped == {"malformed line": 1, "empty caption": 1, "missing image": 1}
    assert data.splits == {"train": [I[0], I[1], I[3]], "dev": [I[4]], "test": [I[5]]}


def test_kaggle_with_windows_line_endings_and_flickr30k_splits() -> None:
    data = load_captions(F30 / "captions.txt")
    assert data.captions[J[0]] == ["Two young guys with shaggy hair look at their hands while hanging out in the yard.",
                                   "Two young, White males are outside near many bushes."]
    assert sorted(data.captions) == sorted(J)
    assert data.skipped == {}
    assert data.image_dir is None
    assert data.splits == FLICKR30K_SPLITS


def test_flickr30k_token(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imgsum.data.formats"):
        data = load_captions(F30 / "results_20130124.token")
    assert data == CaptionData(captions=FLICKR30K_TOKEN_CAPTIONS, splits=FLICKR30K_SPLITS, image_dir=None, skipped={})
    assert caplog.records == []


def test_flickr30k_pipe_csv_skips_broken_row() -> None:
    data = load_captions(F30 / "results.csv")
    expected = {name: captions for name, captions in FLICKR30K_TOKEN_CAPTIONS.items() if name != J[4]}
    assert data.captions == expected  # the broken row of J[4] lacks a field; J[2]'s second caption is empty
    assert data.skipped == {"malformed line": 1, "empty caption": 1}
    assert data.splits == {"train": J[:3], "dev": [J[3]], "test": []}


def test_coco(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imgsum.data.formats"):
        data = load_captions(FIXTURES / "coco" / "captions_val2014.json")
    assert data.captions == {
        "COCO_val2014_000000391895.jpg": ["A man with a red helmet on a small moped on a dirt road.",
                                          "Man riding a motor bike on a dirt road on the countryside."],
        "COCO_val2014_000000522418.jpg": ["A woman wearing a net on her head cutting a cake."],
        "COCO_val2014_000000184613.jpg": ["A child holding a flowered umbrella and petting a yak."],
    }
    assert data.skipped == {"malformed entry": 2, "empty caption": 1}
    assert data.splits is None
    assert len(caplog.records) == 1
    assert "2 malformed entry" in caplog.records[0].getMessage()
    assert "captions_val2014.json" in caplog.records[0].getMessage()


def test_karpathy_splits() -> None:
    data = load_captions(FIXTURES / "karpathy" / "dataset_flickr8k.json")
    assert data.captions == {
        I[0]: ["A child in a pink dress is climbing up a set of stairs in an entry way .",
               "A girl going into a wooden building ."],
        I[1]: ["A black dog and a spotted dog are fighting"],
        I[2]: ["A little girl covered in paint sits in front of a painted rainbow ."],
        I[3]: ["A man lays on a bench while his dog sits by him ."],
    }
    assert data.skipped == {"malformed entry": 1, "empty caption": 1}
    assert data.splits == {"train": [I[0], I[1]], "dev": [I[2]], "test": [I[3]]}  # restval -> train, val -> dev


def test_plain_csv_with_extra_columns_and_paths() -> None:
    data = load_captions(FIXTURES / "plain" / "captions.csv")
    assert data.captions == {
        I[0]: ["A girl, in pink, climbing stairs ."],
        I[1]: ["Two dogs fighting ."],
        I[2]: ["A girl in front of a rainbow ."],
    }
    assert data.skipped == {"empty caption": 1, "malformed line": 1}
    assert data.splits is None


def test_jsonl() -> None:
    data = load_captions(FIXTURES / "plain" / "captions.jsonl")
    assert data.captions == {
        I[0]: ["A girl climbing stairs .", "A girl in a pink dress ."],
        I[1]: ["Two dogs fighting ."],
    }
    assert data.skipped == {"malformed line": 2, "empty caption": 1}


def test_explicit_split_files_override_detected_ones(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(f"{J[0]}\n\n{J[1]}\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text(f"{J[2]}\n", encoding="utf-8")
    data = load_captions(F30 / "results_20130124.token", split_files={"train": tmp_path / "a.txt",
                                                                      "val": tmp_path / "b.txt"})
    assert data.splits == {"train": [J[0], J[1]], "dev": [J[2]]}
    assert split_by_image(data) == {"train": [J[0], J[1]], "dev": [J[2]], "test": []}


def test_split_files_sharing_an_image_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(f"{J[0]}\n{J[1]}\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text(f"{J[1]}\n", encoding="utf-8")
    with pytest.raises(CaptionFormatError, match=J[1]):
        load_captions(F30 / "results_20130124.token", split_files={"train": tmp_path / "a.txt",
                                                                   "test": tmp_path / "b.txt"})


@pytest.mark.parametrize("path, fmt, message", [
    (FIXTURES / "bad" / "latin1.token.txt", "auto", "latin1.token.txt: not UTF-8"),
    (FIXTURES / "bad" / "latin1.token.txt", "flickr8k-token", "latin1.token.txt: not UTF-8"),
    (FIXTURES / "bad" / "broken.json", "auto", "broken.json: not valid JSON"),
    (FIXTURES / "bad" / "broken.json", "coco", "broken.json: not valid JSON"),
    (FIXTURES / "bad" / "nocolumns.csv", "csv", "nocolumns.csv: CSV header 'file,text' lacks"),
    (FIXTURES / "bad" / "nocolumns.csv", "auto", "nocolumns.csv: cannot tell the caption format"),
    (FIXTURES / "bad" / "notes.txt", "auto", "notes.txt: cannot tell the caption format"),
    (FIXTURES / "coco" / "captions_val2014.json", "karpathy", "captions_val2014.json: JSON is not in the karpathy"),
    (F30 / "captions.txt", "flickr30k-csv", "captions.txt: expected the header"),
])
def test_unreadable_files_raise_caption_format_error(path: Path, fmt: str, message: str) -> None:
    with pytest.raises(CaptionFormatError, match=message):
        load_captions(path, fmt=fmt)


def test_unknown_format_name() -> None:
    with pytest.raises(ValueError, match="unknown caption format 'flickr'"):
        load_captions(F8 / "captions.txt", fmt="flickr")


# --- split_by_image ------------------------------------------------------------------------------


def assert_disjoint(splits: dict[str, list[str]]) -> None:
    """No image is in two splits."""
    names = [name for images in splits.values() for name in images]
    assert len(names) == len(set(names))


def _many_images(n: int = 103) -> CaptionData:
    return CaptionData(captions={f"{i:05d}.jpg": [f"caption {i}", f"another {i}"] for i in range(n)},
                       splits=None, image_dir=None, skipped={})


def test_random_split_is_by_image_sorted_and_covers_all() -> None:
    data = _many_images()
    splits = split_by_image(data, dev=0.1, test=0.2, seed=3)
    assert list(splits) == ["train", "dev", "test"]
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [72, 10, 21]
    assert all(names == sorted(names) for names in splits.values())
    assert_disjoint(splits)
    assert set().union(*splits.values()) == set(data.captions)


def test_random_split_is_deterministic() -> None:
    data = _many_images()
    assert split_by_image(data, seed=7) == split_by_image(_many_images(), seed=7)
    assert split_by_image(data, seed=7) != split_by_image(data, seed=8)


def test_given_splits_are_used_sorted_and_restricted_to_captioned_images() -> None:
    data = CaptionData(captions={"b.jpg": ["x"], "a.jpg": ["y"], "c.jpg": ["z"]},
                       splits={"train": ["b.jpg", "a.jpg", "gone.jpg"], "test": ["c.jpg"]},
                       image_dir=None, skipped={})
    assert split_by_image(data, seed=5) == {"train": ["a.jpg", "b.jpg"], "dev": [], "test": ["c.jpg"]}


def test_given_splits_sharing_an_image_are_refused() -> None:
    data = CaptionData(captions={"a.jpg": ["x"]}, splits={"train": ["a.jpg"], "dev": ["a.jpg"]},
                       image_dir=None, skipped={})
    with pytest.raises(ValueError, match="a.jpg"):
        split_by_image(data)


@pytest.mark.parametrize("dev, test", [(-0.1, 0.1), (0.5, 0.5), (0.1, 1.0)])
def test_bad_fractions(dev: float, test: float) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_by_image(_many_images(), dev=dev, test=test)


def test_split_of_loaded_fixture_keeps_images_apart() -> None:
    splits = split_by_image(load_captions(F8 / "Flickr8k.token.txt"))
    assert splits == FLICKR8K_SPLITS


# --- the real data, when it is there --------------------------------------------------------------

needs_flickr8k = pytest.mark.skipif(not FLICKR8K.is_dir(), reason=f"real Flickr8k data not found at {FLICKR8K}")


@needs_flickr8k
def test_real_flickr8k_token_file() -> None:
    folder = FLICKR8K
    data = load_captions(folder / "Flickr8k.token.txt")
    assert data.image_dir == folder / "images"
    assert len(data.captions) == 8091
    assert all(len(captions) == 5 for captions in data.captions.values())
    assert data.skipped == {"missing image": 5}
    assert "2258277193_586949ec62.jpg.1" not in data.captions
    splits = split_by_image(data)
    assert {name: len(images) for name, images in splits.items()} == {"train": 6000, "dev": 1000, "test": 1000}
    assert_disjoint(splits)


@needs_flickr8k
def test_real_flickr8k_kaggle_file_matches_token_file() -> None:
    folder = FLICKR8K
    data = load_captions(folder / "captions.txt")
    assert len(data.captions) == 8091
    assert sum(map(len, data.captions.values())) == 40455
    assert data.skipped == {}
    assert data.splits is not None
    assert {name: len(images) for name, images in data.splits.items()} == {"train": 6000, "dev": 1000, "test": 1000}
    assert data.captions == load_captions(folder / "Flickr8k.token.txt").captions


@pytest.mark.skipif(not FLICKR30K_CAPTIONS.is_file(), reason=f"real Flickr30k captions not found ({FLICKR30K_CAPTIONS})")
def test_real_flickr30k_kaggle_file() -> None:
    data = load_captions(FLICKR30K_CAPTIONS)
    assert len(data.captions) == 31014
    assert data.skipped == {}
    assert data.splits is not None
    assert {name: len(images) for name, images in data.splits.items()} == {"train": 29000, "dev": 1014, "test": 1000}
