"""The imgsum command over real files: folders, globs, formats, one bad file among good ones, exit status."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from imgsum.cli import main


@pytest.fixture()
def photo_folder(tmp_path, sample_photos):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    shutil.copy(sample_photos[0], folder / "first.jpg")
    shutil.copy(sample_photos[1], folder / "nested" / "second.jpg")
    (folder / "nested" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return folder


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_jsonl_rows_for_every_image_and_an_error_row_for_the_bad_one(photo_folder, tiny_checkpoints, capsys, kind):
    code = main(["caption", str(photo_folder), "--model", str(tiny_checkpoints[kind]), "--format", "jsonl",
                 "--beam", "2", "--batch-size", "2"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # one image failed
    by_name = {r["image"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by_name) == {"first.jpg", "second.jpg", "broken.jpg"}
    assert set(by_name["broken.jpg"]) == {"image", "error"}
    for name in ("first.jpg", "second.jpg"):
        assert set(by_name[name]) == {"image", "caption", "concepts"} and isinstance(by_name[name]["caption"], str)
        concepts = by_name[name]["concepts"]
        assert 1 <= len(concepts) <= 5 and all(set(c) == {"word", "p"} and 0 < c["p"] <= 1 for c in concepts)
        assert [c["p"] for c in concepts] == sorted((c["p"] for c in concepts), reverse=True)
    assert by_name["second.jpg"]["concepts"][0]["word"] == "cat"  # chelsea.jpg: the encoder's classifier sees a cat


def test_all_good_images_exit_zero_and_csv_has_a_header(photo_folder, tiny_checkpoints, capsys):
    (photo_folder / "nested" / "broken.jpg").unlink()
    code = main(["caption", str(photo_folder / "**" / "*.jpg"), "--model", str(tiny_checkpoints["gpt"]),
                 "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert code == 0
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["first.jpg", "second.jpg"]
    assert all(r["error"] == "" for r in rows)
    assert all(re.fullmatch(r"[a-z' -]+ [01]\.\d\d(; [a-z' -]+ [01]\.\d\d)*", r["concepts"]) for r in rows)
    assert rows[1]["concepts"].startswith("cat 0.")


def test_missing_file_and_unknown_model_are_reported(tmp_path, tiny_checkpoints, capsys, caplog):
    code = main(["caption", str(tmp_path / "absent.jpg"), "--model", str(tiny_checkpoints["gpt"])])
    assert code == 1 and "ERROR" in capsys.readouterr().out
    assert main(["caption", str(tmp_path / "absent.jpg"), "--model", "no-such-model"]) == 2
    assert "no-such-model" in caplog.text


def test_models_lists_given_checkpoints_with_their_metrics(tiny_checkpoints, capsys):
    assert main(["models", "--json", str(tiny_checkpoints["lstm"])]) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = [r for r in rows if r["model"] == str(tiny_checkpoints["lstm"])]
    assert mine and mine[0]["decoder"] == "lstm" and mine[0]["dev"] == {"dev_CIDEr": 0.0}


def _caption_command(folder, checkpoint) -> list[str]:
    return [sys.executable, "-m", "imgsum.cli", "caption", str(folder), "--model", str(checkpoint), "--format", "jsonl"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux), a device that is always full")
@pytest.mark.slow
def test_a_full_disk_for_the_output_is_one_clear_error(photo_folder, tiny_checkpoints):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(_caption_command(photo_folder, tiny_checkpoints["lstm"]), stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_reader_that_goes_away_stops_it_quietly(photo_folder, tiny_checkpoints):
    for i in range(40):  # enough rows that the reader is gone before the last is written
        shutil.copy(photo_folder / "first.jpg", photo_folder / f"copy{i}.jpg")
    proc = subprocess.Popen(_caption_command(photo_folder, tiny_checkpoints["lstm"]), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert json.loads(first)["image"] and "Traceback" not in stderr and "Exception ignored" not in stderr
