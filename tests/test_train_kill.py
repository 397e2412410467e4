"""Training killed with SIGKILL, once in the middle of an epoch and once in the middle of a save, then resumed.

Nothing may be lost or repeated: each epoch once in ``metrics.jsonl``, no temporary file left in the run
folder, and the final checkpoints load. ``fixtures/train/paused_train.py`` stops the run at an exact
point (a training step; a save of ``last.pt`` between writing its temporary file and renaming it), so
the kill lands where it is meant to, every time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, TINY_TRAINING, TRAIN_CAPTIONS

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

LAUNCHER = FIXTURES / "train" / "paused_train.py"
EPOCHS = 4  # of 2 steps each (3 training images, 2 a batch)


def train_args(tmp_path: Path, out: Path) -> list[str]:
    config = tmp_path / "save-often.toml"
    config.write_text("save_every_steps = 1\n")  # a mid-epoch state to resume from
    return [str(TRAIN_CAPTIONS), "--out", str(out), "--epochs", str(EPOCHS), "--cache-dir", str(tmp_path / "cache"),
            "--config", str(config), *TINY_TRAINING]


def kill_at(where: str, n: int, args: list[str], marker: Path) -> None:
    """Starts the training, waits until it reaches the pause point, and SIGKILLs it there."""
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), str(marker), where, str(n), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"training ended (status {proc.returncode}) before its pause point {where} {n}: "
                        f"{proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"no pause point {where} {n} in 180 s"
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.communicate(timeout=60)


def epochs_in(out: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.slow
def test_training_killed_mid_epoch_and_mid_save_resumes_and_loses_nothing(tmp_path: Path) -> None:
    from imgsum.models.captioner import CaptionModel

    out, marker = tmp_path / "run", tmp_path / "paused"
    args = train_args(tmp_path, out)

    kill_at("step", 4, args, marker)  # epoch 2's second step; its first step's state was saved
    assert epochs_in(out) == [1]
    assert torch.load(out / "last.pt", weights_only=True)["state"]["step_in_epoch"] == 1  # resumes mid-epoch

    kill_at("save", 2, args, marker)  # resumed, then killed between writing last.pt's new state and renaming it
    assert temporaries(out), "the kill did not land in the middle of a save"
    done = epochs_in(out)
    assert done == list(range(1, len(done) + 1)) and len(done) < EPOCHS

    resumed = subprocess.run([sys.executable, "-m", "imgsum.cli", "train", *args], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert epochs_in(out) == list(range(1, EPOCHS + 1))  # each epoch once, none lost, none repeated
    assert temporaries(out) == []
    assert torch.load(out / "last.pt", weights_only=True)["state"]["epoch"] == EPOCHS
    model = CaptionModel.from_checkpoint(out / "best.safetensors")
    assert model.info.training["epoch"] <= EPOCHS
