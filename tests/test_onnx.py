"""The ONNX Runtime path, pinned to the torch path: same logits, same captions, and never a torch import.

Tiny random-weight checkpoints (conftest) are exported once for the session, through the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from PIL import Image  # noqa: E402

from conftest import DATA, ROOT, needs_data  # noqa: E402
from imgsum.api import Captioner  # noqa: E402
from imgsum.cli import main  # noqa: E402
from imgsum.decoding import DecodingOptions, beam_search, greedy  # noqa: E402
from imgsum.images import open_image  # noqa: E402
from imgsum.models.captioner import CaptionModel  # noqa: E402
from imgsum.pretrained import shipped_path  # noqa: E402
from imgsum.quantize import MIN_COSINE, calibration_photos, check_close  # noqa: E402
from imgsum.runtime import read_bundle  # noqa: E402
from imgsum.runtime.ort import OnnxCaptionModel  # noqa: E402

KINDS = ("gpt", "lstm")


@pytest.fixture(scope="session")
def bundles(tiny_checkpoints, tmp_path_factory) -> dict[str, Path]:
    """Both tiny checkpoints exported into one folder (sharing the encoder file): kind -> manifest."""
    out = tmp_path_factory.mktemp("onnx")
    assert main(["export", *(str(tiny_checkpoints[k]) for k in KINDS), "--out", str(out)]) == 0
    return {k: out / f"tiny-{k}.json" for k in KINDS}


@pytest.fixture(scope="session")
def photos(sample_photos, tmp_path_factory) -> list[Path]:
    """The shipped sample photos, or, where they are absent, a few made on the spot."""
    if sample_photos:
        return sample_photos
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(320, 240), (500, 375), (224, 224)]):
        ramp = np.linspace(0, 255, w * h * 3).reshape(h, w, 3)
        pixels = np.clip(ramp + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        paths.append(folder / f"photo{i}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths


def test_export_writes_a_bundle_that_describes_itself(bundles, tiny_checkpoints):
    folder = bundles["gpt"].parent
    assert len(list(folder.glob("*.onnx"))) == 5  # one encoder, shared; a start and a step per decoder
    for kind in KINDS:
        bundle = read_bundle(bundles[kind])
        bundle.verify(checksums=True)
        assert bundle.encoder == "efficientnet_lite0.onnx"
        assert bundle.info.decoder.kind == kind
        assert bundle.info.vocab == CaptionModel.from_checkpoint(tiny_checkpoints[kind]).info.vocab
        assert bundle.info.decoding == DecodingOptions(beam=2, max_len=10, length_penalty=0.0)
        assert bundle.source["checkpoint"] == tiny_checkpoints[kind].name
    assert read_bundle(bundles["gpt"]).carried[0] == "position"
    assert read_bundle(bundles["lstm"]).memory == ["values", "keys", "bias", "slots", "empty", "concept_ids",
                                                   "concept_p"]


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_logits_equal_torch_step_by_step(kind, bundles, tiny_checkpoints):
    torch_model = CaptionModel.from_checkpoint(tiny_checkpoints[kind])
    onnx_model = OnnxCaptionModel.load(bundles[kind])
    views = onnx_model.info.preprocess.views
    pixels = np.random.default_rng(1).standard_normal((3 * views, 3, 224, 224)).astype(np.float32)  # 3 photos
    grid, pooled = onnx_model.encode(pixels)
    ref_grid, ref_pooled = map(torch.from_numpy, torch_model.encode(pixels))
    assert len(grid) == len(pooled) == 3
    np.testing.assert_allclose(grid, ref_grid.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pooled, ref_pooled.numpy(), rtol=1e-4, atol=1e-4)
    logits, state = onnx_model.stepper.start(ref_grid.numpy(), ref_pooled.numpy())
    with torch.no_grad():
        ref, ref_state = torch_model.decoder.start(ref_grid, ref_pooled)
        np.testing.assert_allclose(logits, ref.numpy(), rtol=1e-5, atol=1e-5)
        tokens = torch.randint(4, len(torch_model.vocab), (6, 3), generator=torch.Generator().manual_seed(2))
        for t in range(tokens.shape[0]):  # the transformer's cache grows along its time axis
            logits, state = onnx_model.stepper.step(tokens[t].numpy(), state)
            ref, ref_state = torch_model.decoder.step(tokens[t], ref_state)
            np.testing.assert_allclose(logits, ref.numpy(), rtol=1e-5, atol=1e-5)
        # Reordering rows (as beam search does) keeps the two in step.
        index = np.array([2, 2, 0])
        logits, _ = onnx_model.stepper.step(tokens[0].numpy(), onnx_model.stepper.reorder(state, index))
        ref, _ = torch_model.decoder.step(tokens[0], {k: v[torch.from_numpy(index)] for k, v in ref_state.items()})
        np.testing.assert_allclose(logits, ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scope", ["all", "regions"])
def test_memory_layers_export_and_match_torch(kind, scope, photos, tmp_path):
    from conftest import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / f"memory-{kind}.safetensors", kind, memory_layers=2, memory_scope=scope)
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "onnx")]) == 0
    bundle = tmp_path / "onnx" / f"memory-{kind}.json"
    on_torch, on_onnx = CaptionModel.from_checkpoint(checkpoint), OnnxCaptionModel.load(bundle)
    grid, pooled = map(torch.from_numpy, on_torch.encode(np.random.default_rng(1).standard_normal(
        (2 * on_torch.info.preprocess.views, 3, 224, 224)).astype(np.float32)))
    logits, _ = on_onnx.stepper.start(grid.numpy(), pooled.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(logits, on_torch.decoder.start(grid, pooled)[0].numpy(), rtol=1e-5, atol=1e-5)
    captions = [Captioner.load(m).caption_batch(photos, beam=3, batch_size=2)
                for m in (checkpoint, bundle)]
    assert [r.caption for r in captions[0]] == [r.caption for r in captions[1]]


@pytest.mark.parametrize("kind", KINDS)
def test_captions_equal_between_backends(kind, bundles, tiny_checkpoints, photos):
    on_onnx = Captioner.load(bundles[kind])
    on_torch = Captioner.load(tiny_checkpoints[kind])
    assert (on_onnx.backend, on_torch.backend) == ("onnx", "torch")
    for beam in (1, 3):
        got = [r.caption for r in on_onnx.caption_batch(photos, beam=beam, batch_size=2)]
        assert got == [r.caption for r in on_torch.caption_batch(photos, beam=beam, batch_size=2)]
        assert got[0] == on_onnx.caption(photos[0], beam=beam)


def test_an_ensemble_captions_alike_on_both_backends(bundles, tiny_checkpoints, photos, tmp_path):
    """One manifest, each backend loading the members' own form (ONNX exports, checkpoints) from one folder."""
    for path in [*bundles["gpt"].parent.iterdir(), *tiny_checkpoints.values()]:
        shutil.copy(path, tmp_path)
    assert main(["ensemble", str(tmp_path / "tiny-gpt.json"), str(tmp_path / "tiny-lstm.safetensors"),
                 "--out", str(tmp_path), "--beam", "3"]) == 0
    on_onnx = Captioner.load(tmp_path / "ensemble.json")
    on_torch = Captioner.load(tmp_path / "ensemble.json", backend="torch")
    assert (on_onnx.backend, on_torch.backend, on_onnx.info.decoder.kind) == ("onnx", "torch", "gpt+lstm")
    got = [r.caption for r in on_onnx.caption_batch(photos, batch_size=2)]
    assert got == [r.caption for r in on_torch.caption_batch(photos, batch_size=2)]
    assert got[0] == on_onnx.caption(photos[0])
    alone = [r.caption for r in Captioner.load(bundles["gpt"]).caption_batch(photos, beam=3)]
    assert got != alone  # the lstm counts


def test_an_int8_encoder_is_exported_beside_the_float_one(tiny_checkpoints, photos, tmp_path):
    """``--int8-encoder``: the manifest names the int8 file, the float one stays for torch's checks, and the
    model captions with features close to the float encoder's."""
    assert main(["export", str(tiny_checkpoints["lstm"]), "--out", str(tmp_path), "--int8-encoder",
                 str(photos[0].parent), "--calibration-photos", "3"]) == 0
    bundle = read_bundle(tmp_path / "tiny-lstm.json")
    bundle.verify(checksums=True)
    assert (bundle.encoder, bundle.float_encoder) == ("efficientnet_lite0.int8.onnx", "efficientnet_lite0.onnx")
    assert bundle.int8_encoder
    assert bundle.source["int8_encoder"]["calibration_photos"] == min(3, len(photos))
    assert bundle.path(bundle.encoder).stat().st_size < 0.4 * bundle.path(bundle.float_encoder).stat().st_size
    pixels = np.concatenate([bundle.info.preprocess.load(p) for p in photos])
    assert check_close(bundle.path(bundle.float_encoder), bundle.path(bundle.encoder), pixels) >= MIN_COSINE
    model = OnnxCaptionModel.load(tmp_path / "tiny-lstm.json")
    int8_grid = model.encode(pixels)[0]
    float_grid = OnnxCaptionModel(bundle, float_encoder=True).encode(pixels)[0]
    assert not np.array_equal(int8_grid, float_grid)  # it is another encoder ...
    assert np.corrcoef(int8_grid.ravel(), float_grid.ravel())[0, 1] > 0.95  # ... computing nearly the same
    results = Captioner.load(tmp_path / "tiny-lstm.json").caption_batch(photos, batch_size=2)
    assert all(r.ok and r.caption for r in results)


def test_an_int8_encoder_too_far_from_the_float_one_is_refused(tiny_checkpoints, photos, tmp_path, monkeypatch):
    import imgsum.quantize as quantize

    assert main(["export", str(tiny_checkpoints["lstm"]), "--out", str(tmp_path)]) == 0
    bundle = read_bundle(tmp_path / "tiny-lstm.json")
    assert not bundle.int8_encoder
    monkeypatch.setattr(quantize, "MIN_COSINE", 1.01)  # no int8 encoder is that close
    with pytest.raises(quantize.QuantizationError, match="too far"):
        quantize.quantize_bundle(bundle, photos[:2])
    assert read_bundle(tmp_path / "tiny-lstm.json").encoder == "efficientnet_lite0.onnx"  # the manifest is untouched
    assert not (tmp_path / "efficientnet_lite0.int8.onnx").exists()  # and no refused file is left beside it


def test_int8_calibration_photos_come_from_a_folder_or_a_training_split(photos, tmp_path):
    assert calibration_photos(photos[0].parent, 2) == sorted(photos)[:2]
    (tmp_path / "images").mkdir()
    names = [f"photo{i}.jpg" for i in range(3)]
    for name, photo in zip(names, photos * 3):
        shutil.copy(photo, tmp_path / "images" / name)
    (tmp_path / "Flickr8k.token.txt").write_text("".join(f"{n}#0\ta photo of something .\n" for n in names))
    (tmp_path / "Flickr_8k.trainImages.txt").write_text("photo2.jpg\nphoto1.jpg\n")
    assert calibration_photos(tmp_path / "Flickr8k.token.txt", 64) == [tmp_path / "images" / n
                                                                      for n in ("photo1.jpg", "photo2.jpg")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no photos"):
        calibration_photos(tmp_path / "empty", 2)


def test_an_unreadable_calibration_photo_is_left_out_and_said(tiny_checkpoints, photos, tmp_path, caplog):
    folder = tmp_path / "calibration"
    folder.mkdir()
    (folder / "a-broken.jpg").write_bytes(b"not a photo")
    shutil.copy(photos[0], folder / "b.jpg")
    with caplog.at_level("WARNING", logger="imgsum.quantize"):
        assert main(["export", str(tiny_checkpoints["lstm"]), "--out", str(tmp_path / "out"), "--int8-encoder",
                     str(folder)]) == 0
    assert "a-broken.jpg" in caplog.text
    assert read_bundle(tmp_path / "out" / "tiny-lstm.json").source["int8_encoder"]["calibration_photos"] == 1


def _shown(concepts) -> list[tuple[str, float]]:
    """Concepts as the product shows them, (word, p rounded), in an order that does not depend on how a runtime
    breaks ties (words made of the same classes, coffee and espresso, have the same probability)."""
    return sorted(((c.word, c.to_dict()["p"]) for c in concepts), key=lambda wp: (-round(wp[1], 3), wp[0]))


@pytest.mark.parametrize("kind", KINDS)
def test_concepts_equal_between_backends(kind, bundles, tiny_checkpoints, photos):
    on_onnx, on_torch = Captioner.load(bundles[kind]), Captioner.load(tiny_checkpoints[kind])
    described = [on_onnx.describe(p) for p in photos]
    assert all(d.concepts for d in described)
    assert [_shown(d.concepts) for d in described] == [_shown(on_torch.describe(p).concepts) for p in photos]
    batch = on_onnx.caption_batch(photos, batch_size=2)
    assert [_shown(r.concepts) for r in batch] == [_shown(d.concepts) for d in described]


@pytest.mark.parametrize("kind", KINDS)
def test_beam_width_one_equals_greedy_on_onnx(kind, bundles):
    model = OnnxCaptionModel.load(bundles[kind])
    grid = np.random.default_rng(3).standard_normal((5, 49, 1280)).astype(np.float32)
    pooled = grid.mean(1)
    eos = model.vocab.eos_id
    one = beam_search(model.stepper, grid, pooled, eos, 1, 8, 0.0)
    assert one == greedy(model.stepper, grid, pooled, eos, 8)
    batched = beam_search(model.stepper, grid, pooled, eos, 3, 8, 0.0)
    assert batched == [beam_search(model.stepper, grid[i : i + 1], pooled[i : i + 1], eos, 3, 8, 0.0)[0]
                       for i in range(5)]


def test_caption_batch_gives_error_rows_and_captions_the_rest(bundles, photos, tmp_path):
    bad = tmp_path / "not-an-image.jpg"
    bad.write_bytes(b"no pixels here")
    captioner = Captioner.load(bundles["gpt"])
    results = captioner.caption_batch([photos[0], bad, tmp_path / "missing.jpg", photos[-1]], batch_size=3)
    assert [r.ok for r in results] == [True, False, False, True]
    assert [bool(r.concepts) for r in results] == [True, False, False, True]
    assert "not a readable image" in results[1].error and "no such file" in results[2].error


def _run_without_torch(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter in which ``import torch`` (and safetensors) fails."""
    shim = "import sys\nsys.modules['torch'] = None\nsys.modules['safetensors'] = None\n"
    script = tmp_path / "no_torch.py"
    script.write_text(shim + textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)


def test_core_path_never_imports_torch(bundles, tiny_checkpoints, photos, tmp_path):
    code = f"""
        import sys
        from imgsum import Captioner
        from imgsum.cli import main
        captioner = Captioner.load({str(bundles['lstm'])!r})
        print("API:", captioner.caption({str(photos[0])!r}))
        rc = main(["caption", "--model", {str(bundles['gpt'])!r}, "--format", "jsonl", {str(photos[0].parent)!r}])
        assert rc == 0, rc
        rc = main(["models", "--json", {str(bundles['gpt'])!r}, {str(tiny_checkpoints['lstm'])!r}])  # metadata only
        loaded = sorted(m for m, v in sys.modules.items()
                        if v is not None and m.split(".")[0] in ("torch", "safetensors"))
        assert not loaded, loaded
    """
    done = _run_without_torch(code, tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) >= len(photos) and all("caption" in r for r in rows)
    assert "API:" in done.stdout
    listed = json.loads(done.stdout[done.stdout.index("[\n") :])
    assert [(r["decoder"], r["backends"]) for r in listed[-2:]] == [("gpt", ["onnx"]), ("lstm", ["torch"])]


def test_torch_backend_without_torch_says_what_to_install(bundles, tiny_checkpoints, photos, tmp_path):
    code = f"""
        from imgsum.cli import main
        raise SystemExit(main(["caption", "--model", {str(tiny_checkpoints['gpt'])!r}, {str(photos[0])!r}]))
    """
    done = _run_without_torch(code, tmp_path)
    assert done.returncode == 2 and "pip install 'imgsum[train]'" in done.stderr


def test_wrong_model_for_backend_is_refused_with_a_hint(bundles, tiny_checkpoints):
    with pytest.raises(ValueError, match="imgsum export"):
        Captioner.load(tiny_checkpoints["gpt"], backend="onnx")
    with pytest.raises(ValueError, match="checkpoints"):
        Captioner.load(bundles["gpt"], backend="torch")


def test_a_changed_file_is_noticed(bundles, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in bundles["gpt"].parent.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    with open(folder / "tiny-gpt.weights", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="not the file it was exported with"):
        Captioner.load(folder / "tiny-gpt.json")


def test_preprocessing_in_workers_equals_preprocessing_a_batch(bundles, photos):
    captioner = Captioner.load(bundles["gpt"])
    pre = captioner.preprocess
    images = [open_image(p, draft_size=pre.size) for p in photos]
    np.testing.assert_array_equal(np.concatenate([pre.load(p) for p in photos]), pre(images))


@needs_data
@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", ["ensemble", "gpt"])
def test_shipped_models_caption_flickr8k_test_images_alike_on_both_backends(name):
    """A subsample here; ``benchmarks/onnx_equivalence.py`` does all 1,000 test images and the metrics. (The
    ``lstm``'s int8 encoder has its own test below.)"""
    if not (shipped_path(name, "onnx").is_file() and shipped_path(name, "torch").is_file()):
        pytest.skip(f"shipped model {name!r} is not installed in both forms")
    names = (DATA / "Flickr_8k.testImages.txt").read_text().split()[::20]  # 50 images
    paths = [DATA / "images" / n for n in names]
    on_onnx = [r.caption for r in Captioner.load(name, backend="onnx").caption_batch(paths, beam=3)]
    on_torch = [r.caption for r in Captioner.load(name, backend="torch").caption_batch(paths, beam=3)]
    same = sum(a == b for a, b in zip(on_onnx, on_torch))
    assert same >= 0.98 * len(paths), [(a, b) for a, b in zip(on_onnx, on_torch) if a != b]


@needs_data
@pytest.mark.data
@pytest.mark.slow
def test_the_shipped_lstm_reads_photos_in_int8_and_its_export_matches_torch_through_the_float_encoder():
    """The shipped ``lstm`` runs on an int8 encoder on ONNX Runtime (its speed target): its decoder export is checked
    against torch through the float encoder it was quantised from; in int8 the classifier's first concept stays the
    float one's on nearly every photo (the captions' full measure: docs/experiments.md)."""
    bundle = read_bundle(shipped_path("lstm", "onnx"))
    assert bundle.encoder.endswith(".int8.onnx") and bundle.float_encoder == "efficientnet_lite0.onnx"
    names = (DATA / "Flickr_8k.testImages.txt").read_text().split()[::20]  # 50 images
    paths = [DATA / "images" / n for n in names]
    on_float = Captioner(OnnxCaptionModel(bundle, float_encoder=True), "lstm").caption_batch(paths, beam=3)
    on_torch = Captioner.load("lstm", backend="torch").caption_batch(paths, beam=3)
    assert sum(a.caption == b.caption for a, b in zip(on_float, on_torch)) >= 0.98 * len(paths)
    in_int8 = Captioner.load("lstm").caption_batch(paths, beam=3)
    assert all(r.ok for r in in_int8)
    assert sum(a.concepts[0].word == b.concepts[0].word for a, b in zip(in_int8, on_torch)) >= 0.9 * len(paths)
