"""Batch captioning on Ray (``imgsum caption --engine ray``, ``imgsum.scale.ray_caption``) on a real local Ray
instance: the same rows as ``imgsum caption``, bad files as error rows, an actor killed mid-job, resuming, both
output formats, and the errors for a missing ``--out`` and a missing Ray.

One local Ray instance (2 CPUs) serves the whole file (``on_ray``); the tests that need it skip where the
``scale`` extra is not installed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import DATA, SAMPLES, needs_data
from imgsum.cli import main

NO_SCALE = "the scale extra (ray[data], pyarrow) is not installed: pip install 'imgsum[scale]'"
ACTOR_TITLE = "MapBatches(CaptionActor)"  # in the process title Ray gives each actor of the pool


@pytest.fixture(scope="module")
def on_ray():
    """A local Ray instance with 2 CPUs, shared by the tests of this file; ``imgsum.scale.ray_caption``."""
    pytest.importorskip("ray.data", reason=NO_SCALE)
    pytest.importorskip("pyarrow", reason=NO_SCALE)
    import ray

    from imgsum.scale import ray_caption

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray_caption
    ray.shutdown()


@pytest.fixture(scope="module")
def sample_rows() -> dict[str, dict]:
    """Each sample photo's row as ``imgsum caption`` makes it, by file name."""
    from imgsum.api import Captioner

    results = Captioner.load("default").caption_batch(sorted(str(p) for p in SAMPLES.glob("*.jpg")))
    return {Path(r.image).name: r.to_row() for r in results}


def local_lines(capsys, *args: str) -> list[str]:
    """The JSONL lines ``imgsum caption --format jsonl ARGS`` prints (the local engine)."""
    main(["caption", "--format", "jsonl", *args])
    return capsys.readouterr().out.splitlines()


def part_lines(out: Path) -> list[str]:
    return [line for part in sorted(out.glob("part-*.jsonl")) for line in part.read_text().splitlines()]


def by_image(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["image"])


def copies(folder: Path, times: int) -> list[str]:
    """``times`` copies of each sample photo in ``folder`` (``chelsea-7.jpg``), their paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(times):
        for photo in sorted(SAMPLES.glob("*.jpg")):
            shutil.copy(photo, folder / f"{photo.stem}-{i}.jpg")
            paths.append(str(folder / f"{photo.stem}-{i}.jpg"))
    return paths


def assert_captions_of_copies(rows: list[dict], paths: list[str], sample_rows: dict[str, dict]) -> None:
    """Every path exactly once, each with its original sample's caption and concepts."""
    assert sorted(r["image"] for r in rows) == sorted(paths)
    for r in rows:
        original = sample_rows[re.sub(r"-\d+\.jpg$", ".jpg", Path(r["image"]).name)]
        assert {**r, "image": original["image"]} == original


def test_rows_equal_those_of_imgsum_caption_on_the_samples(on_ray, tmp_path, capsys):
    expected = local_lines(capsys, str(SAMPLES))
    assert main(["caption", "--engine", "ray", "--out", str(tmp_path / "out"), str(SAMPLES)]) == 0
    lines = part_lines(tmp_path / "out")
    assert sorted(lines) == sorted(expected)  # the same JSON text, row for row
    assert {"image", "caption", "concepts"} == set(json.loads(lines[0]))


@needs_data
@pytest.mark.data
@pytest.mark.slow
def test_500_flickr8k_test_images_caption_as_with_imgsum_caption(on_ray, tmp_path, capsys):
    names = sorted((DATA / "Flickr_8k.testImages.txt").read_text().split())[:500]
    paths = [str(DATA / "images" / n) for n in names]
    expected = local_lines(capsys, *paths)
    summary = on_ray.caption_on_ray(paths, tmp_path / "out", workers=2, batch_size=16, progress=False)
    assert (summary.captioned, summary.errors, summary.duplicates) == (500, 0, 0)
    assert sorted(part_lines(tmp_path / "out")) == sorted(expected)


def test_bad_files_are_error_rows_and_the_job_finishes(on_ray, tmp_path, capsys):
    folder = tmp_path / "photos"
    copies(folder, 1)
    jpeg = (SAMPLES / "chelsea.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "text.jpg").write_text("a text file, not a photo")
    (folder / "empty.jpg").write_bytes(b"")
    expected = [json.loads(line) for line in local_lines(capsys, str(folder))]
    assert main(["caption", "--engine", "ray", "--out", str(tmp_path / "out"), str(folder)]) == 1  # as locally
    rows = on_ray.read_rows(tmp_path / "out")
    assert by_image(rows) == by_image(expected)
    assert sorted(Path(r["image"]).name for r in rows if "error" in r) == ["empty.jpg", "text.jpg", "truncated.jpg"]
    assert all(set(r) == {"image", "error"} for r in rows if "error" in r)


def actor_pids() -> list[int]:
    """The processes of this file's Ray instance that run a CaptionActor."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if ACTOR_TITLE in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor's process in /proc (Linux)")
def test_an_actor_killed_mid_job_and_every_image_is_captioned_once(on_ray, tmp_path, sample_rows):
    paths = copies(tmp_path / "photos", 40)  # 160 images
    out = tmp_path / "out"
    killed: dict = {}
    finished = threading.Event()

    def kill_an_actor_after_the_first_part() -> None:
        """SIGKILLs an actor once the first part file is there; then notes the actors that run afterwards."""
        while not finished.is_set():
            if not killed and list(out.glob("part-*.jsonl")) and actor_pids():
                killed.update(rows_written=len(part_lines(out)), before=set(actor_pids()), after=set())
                os.kill(min(killed["before"]), signal.SIGKILL)
            elif killed:
                killed["after"].update(actor_pids())
            time.sleep(0.05)

    killer = threading.Thread(target=kill_an_actor_after_the_first_part)
    killer.start()
    try:
        summary = on_ray.caption_on_ray(paths, out, workers=2, batch_size=4, rows_per_part=8, progress=False)
    finally:
        finished.set()
        killer.join()
    assert killed and killed["rows_written"] < len(paths)  # killed while the job still had work to do
    assert killed["after"] - killed["before"]  # Ray started an actor in its place
    assert (summary.captioned, summary.errors) == (len(paths), 0)
    assert_captions_of_copies(on_ray.read_rows(out), paths, sample_rows)


def test_a_second_run_over_the_same_output_does_no_work(on_ray, tmp_path):
    paths = [*sorted(str(p) for p in SAMPLES.glob("*.jpg")), str(tmp_path / "missing.jpg")]
    out = tmp_path / "out"
    first = on_ray.caption_on_ray(paths, out, progress=False)
    assert (first.captioned, first.errors) == (4, 1)
    parts = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    second = on_ray.caption_on_ray(paths, out, progress=False)
    assert (second.captioned, second.errors, second.skipped, second.parts) == (0, 0, 5, 0)  # error rows are done too
    assert second.first_rows_seconds is None  # no rows came back: nothing was sent to Ray
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == parts


def test_a_stopped_job_resumes_without_duplicates(on_ray, tmp_path, sample_rows):
    paths = copies(tmp_path / "photos", 3)  # 12 images
    out = tmp_path / "out"
    on_ray.caption_on_ray(paths[:5], out, rows_per_part=2, progress=False)  # the parts a stopped job left
    (out / ".part-killed-00009.jsonl.x1y2.tmp").write_text('{"image": "half a row')  # a write cut short
    summary = on_ray.caption_on_ray([*paths, paths[0]], out, rows_per_part=2, progress=False)
    assert (summary.captioned, summary.skipped) == (7, 5)
    assert not list(out.glob(".*.tmp"))
    assert_captions_of_copies(on_ray.read_rows(out), paths, sample_rows)


@pytest.mark.slow
def test_ctrl_c_keeps_the_rows_made_and_the_same_command_goes_on(tmp_path):
    """``imgsum caption --engine ray`` in its own process, with its own local Ray: interrupted as from a terminal
    (SIGINT to the whole process group), then run again."""
    pytest.importorskip("ray.data", reason=NO_SCALE)
    paths = copies(tmp_path / "photos", 50)  # 200 images
    command = [sys.executable, "-m", "imgsum.cli", "caption", "--engine", "ray", "--ray-workers", "1",
               "--out", str(tmp_path / "out"), str(tmp_path / "photos")]
    # A terminal's Ctrl-C reaches a process whose SIGINT is at its default; a test run started in the background
    # (``cmd &`` in a script) inherits SIGINT ignored, so the child gets the default back, as from a terminal.
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    while chunk := os.read(proc.stderr.fileno(), 4096):  # the progress bar: stop once 20 images are done
        seen += chunk
        if any(int(n) >= 20 for n in re.findall(rb"(\d+)/200", seen)):
            os.killpg(proc.pid, signal.SIGINT)
            break
    seen += proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, seen.decode(errors="replace")[-2000:]
    assert b"the same command goes on from there" in seen
    kept = len(part_lines(tmp_path / "out"))
    assert 20 <= kept < 200
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{kept} skipped as done" in again.stderr
    rows = [json.loads(line) for line in part_lines(tmp_path / "out")]
    assert sorted(r["image"] for r in rows) == sorted(paths) and all("caption" in r for r in rows)


def test_parquet_and_jsonl_parts_carry_the_same_rows(on_ray, tmp_path):
    import pyarrow.parquet as pq

    paths = [*sorted(str(p) for p in SAMPLES.glob("*.jpg")), str(tmp_path / "missing.jpg")]
    on_ray.caption_on_ray(paths, tmp_path / "jsonl", fmt="jsonl", progress=False)
    on_ray.caption_on_ray(paths, tmp_path / "parquet", fmt="parquet", progress=False)
    (part,) = (tmp_path / "parquet").glob("part-*.parquet")
    assert pq.read_schema(part).remove_metadata() == on_ray.ROW_SCHEMA  # concepts: a list of {word, p} structs
    jsonl, parquet = on_ray.read_rows(tmp_path / "jsonl"), on_ray.read_rows(tmp_path / "parquet")
    assert by_image(parquet) == by_image(jsonl) and len(jsonl) == 5


def test_a_ray_dataset_of_bytes_or_paths_is_a_source_too(on_ray, tmp_path, sample_rows):
    import ray.data

    paths = copies(tmp_path / "photos", 2)
    files = ray.data.read_binary_files(str(tmp_path / "photos"), include_paths=True)  # as from a bucket
    summary = on_ray.caption_on_ray(files, tmp_path / "bytes", workers=1, progress=False)
    assert (summary.captioned, summary.errors) == (8, 0)
    assert_captions_of_copies(on_ray.read_rows(tmp_path / "bytes"), paths, sample_rows)
    again = on_ray.caption_on_ray(files, tmp_path / "bytes", workers=1, progress=False)
    assert (again.captioned, again.skipped) == (0, 8)
    listed = ray.data.from_items([{"image": p} for p in paths])
    on_ray.caption_on_ray(listed, tmp_path / "listed", workers=1, progress=False)
    assert by_image(on_ray.read_rows(tmp_path / "listed")) == by_image(on_ray.read_rows(tmp_path / "bytes"))


def test_the_ray_engine_needs_an_output_folder(caplog):
    assert main(["caption", "--engine", "ray", str(SAMPLES)]) == 2
    assert "--out DIR" in caplog.text
    assert main(["caption", "--engine", "ray", "--out", "x", "--format", "csv", str(SAMPLES)]) == 2
    assert main(["caption", "--out", "x", str(SAMPLES)]) == 2
    assert "only with --engine ray" in caplog.text


def test_without_ray_the_engine_says_what_to_install(tmp_path):
    code = ("import sys\n"
            "sys.modules['ray'] = None  # as if Ray were not installed\n"
            "from imgsum.cli import main\n"
            f"sys.exit(main(['caption', '--engine', 'ray', '--out', {str(tmp_path / 'out')!r}, {str(SAMPLES)!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pip install 'imgsum[scale]'" in done.stderr and "Traceback" not in done.stderr
