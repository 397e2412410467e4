"""Shared fixtures: paths to the repository's sample photos and data, and tiny checkpoints made on the spot.

Nothing here imports torch until a fixture that needs it runs, so the torch-free tests run on the core
install (``pip install -e . pytest httpx``); the tests that need torch skip there, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from data_paths import FLICKR8K, flickr8k_present

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "imgsum" / "assets" / "samples"
FIXTURES = ROOT / "tests" / "fixtures"
DATA = FLICKR8K

needs_data = pytest.mark.skipif(not flickr8k_present(), reason=f"Flickr8k data absent ({DATA}; set $IMGSUM_DATA)")

#: Fixtures that take long to make: a test that uses one is marked ``slow``, so ``pytest -m "not slow"`` leaves it out.
SLOW_FIXTURES = {"bundles", "browser"}  # the tiny models exported to ONNX (~20 s); Chromium (~10 s)


def load_script(name: str):
    """``scripts/NAME.py`` as a module (the scripts are not a package), for tests of their functions."""
    if str(ROOT / "scripts") not in sys.path:  # as when run: a script imports the scripts beside it
        sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


TINY_WORDS = ["a", "dog", "cat", "runs", "on", "the", "grass", "man", "red", "ball"]
#: The tiny training set (3 train, 1 dev, 1 test image) and the options that make ``imgsum train`` on it take seconds.
TRAIN_CAPTIONS = FIXTURES / "captions" / "flickr8k" / "captions.txt"
TINY_TRAINING = ["--min-count", "1", "--dim", "16", "--hidden", "16", "--attention-dim", "8", "--layers", "1",
                 "--heads", "2", "--batch-images", "2", "--warmup-steps", "1"]


def tiny_decoder(kind: str = "gpt", seed: int = 0, memory_layers: int = 0, memory_scope: str = "all"):
    """A tiny decoder with random weights in the current model format, and its :class:`ModelInfo`: slot tokens
    first in the vocabulary, the concept head filled from the shipped concept table and EfficientNet-Lite0's
    ImageNet classifier (so its concepts are real), reading the photo's centre square as the shipped models do
    (``concept_crop``), the rest meaningless (needs torch). ``memory_layers``: self-attention over its memory first, rewriting what ``memory_scope`` says."""
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from imgsum.concepts import ConceptTable, slot_tokens
    from imgsum.model_info import DecoderConfig, ModelInfo
    from imgsum.models.concept_layers import concept_sizes
    from imgsum.models.decoders import create_decoder
    from imgsum.models.encoders import create_encoder
    from imgsum.text import Vocabulary

    torch.manual_seed(seed)
    table = ConceptTable.load()
    slots = DecoderConfig().slots
    vocab = Vocabulary([*slot_tokens(slots), *TINY_WORDS])
    cfg = DecoderConfig(kind=kind, vocab_size=len(vocab), dim=32, hidden=32, attention_dim=16, layers=1, heads=2,
                        max_len=12, slots=slots, memory_layers=memory_layers, memory_scope=memory_scope, regions=49, **concept_sizes(table))
    decoder = create_decoder(cfg)
    encoder = create_encoder("efficientnet_lite0")
    decoder.concepts.head.load(table, encoder.classifier)
    preprocess = replace(encoder.preprocess, concept_crop=True)
    info = ModelInfo(encoder=encoder.name, preprocess=preprocess, decoder=cfg, vocab=vocab.to_list(),
                     concepts=table.pairs(), decoding={"beam": 2, "max_len": 10, "length_penalty": 0.0},
                     metrics={"dev": {"dev_CIDEr": 0.0}})
    return decoder, info


def make_checkpoint(path: Path, kind: str = "gpt", seed: int = 0, beam: int | None = None,
                    memory_layers: int = 0, memory_scope: str = "all") -> Path:
    """A checkpoint of :func:`tiny_decoder`: real files, real loading, real concepts, meaningless captions;
    ``beam``: its own beam, if not :func:`tiny_decoder`'s; ``memory_layers``, ``memory_scope``: as :func:`tiny_decoder`'s."""
    from imgsum.checkpoint import save_checkpoint

    decoder, info = tiny_decoder(kind, seed, memory_layers, memory_scope)
    info.decoding = info.decoding.with_overrides(beam=beam)
    save_checkpoint(path, decoder.state_dict(), info)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {kind: make_checkpoint(folder / f"tiny-{kind}.safetensors", kind) for kind in ("gpt", "lstm")}


WIDE_BEAM = 5  # wider than the tiny models' own beam (2)


@pytest.fixture(scope="session")
def wide_checkpoint(tmp_path_factory) -> Path:
    """A tiny gpt checkpoint whose own beam is WIDE_BEAM: a model of one's own served beside the others."""
    return make_checkpoint(tmp_path_factory.mktemp("wide") / "tiny-wide.safetensors", "gpt", beam=WIDE_BEAM)


@pytest.fixture(scope="session")
def sample_photos() -> list[Path]:
    return sorted(SAMPLES.glob("*.jpg"))


@pytest.fixture()
def small_disk(tmp_path):
    """A real 64 MB file system (tmpfs) that a test can fill up (a tiny run folder with its concept tables fits)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root and mount(8) to make a small tmpfs that can fill up")
    disk = tmp_path / "disk"
    disk.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill_disk(folder: Path) -> Path:
    """Writes a file in ``folder`` until its file system is full; returns it (delete it to free the space)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


@pytest.fixture(scope="module")
def tiny_server(tiny_checkpoints, tmp_path_factory):
    """A real uvicorn server on 127.0.0.1 serving the tiny checkpoints (``gpt``, ``lstm``); ``.output`` is where
    Save writes. Needs the serve extra."""
    pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
    pytest.importorskip("uvicorn", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
    from imgsum.serve.app import create_app
    from imgsum.serve.background import BackgroundServer
    from imgsum.serve.settings import Settings

    output = tmp_path_factory.mktemp("saved")
    settings = Settings(models={kind: str(path) for kind, path in tiny_checkpoints.items()}, output_dir=output,
                        max_upload_bytes=400_000, max_request_bytes=1_500_000, max_images=4)
    with BackgroundServer(create_app(settings)) as running:
        running.output = output
        yield running
