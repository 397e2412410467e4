"""``torchrun --nproc-per-node 2 -m imgsum train``: DDP on CPU (gloo), real processes, the tiny training set.

One optimisation step on 2 ranks × batch b must equal one process with batch 2b; a short 2-process run
must finish, resume, and leave a checkpoint that captions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, SAMPLES, TINY_TRAINING, TRAIN_CAPTIONS

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
pytestmark = pytest.mark.slow

TEXT = FIXTURES / "captions" / "flickr30k" / "captions.txt"
LR = 1e-3


def options(tmp_path: Path, decoder: str) -> list[str]:
    """The tiny model without dropout (each process draws its own masks), text-only captions mixed in."""
    tiny = list(TINY_TRAINING)
    at = tiny.index("--batch-images")
    del tiny[at : at + 2]  # each test sets its own
    return [str(TRAIN_CAPTIONS), *tiny, "--decoder", decoder, "--dropout", "0", "--lr", str(LR),
            "--cache-dir", str(tmp_path / "cache"), "--text", str(TEXT)]


def run(args: list[str], processes: int = 1) -> subprocess.CompletedProcess:
    if processes == 1:
        cmd = [sys.executable, "-m", "imgsum", "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--standalone", "-m", "imgsum", "train", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def saved(out: Path) -> dict:
    return torch.load(out / "last.pt", weights_only=True)


@pytest.mark.parametrize("decoder", ["gpt", "lstm"])
def test_one_step_on_two_ranks_equals_one_process_with_twice_the_batch(tmp_path: Path, decoder: str) -> None:
    common = [*options(tmp_path, decoder), "--epochs", "1", "--epoch-images", "2"]  # one step of 2 images
    run([*common, "--batch-images", "1", "--text-batch", "2", "--out", str(tmp_path / "two")], processes=2)
    run([*common, "--batch-images", "2", "--text-batch", "4", "--out", str(tmp_path / "one")])
    two, one = saved(tmp_path / "two"), saved(tmp_path / "one")
    assert two["state"]["global_step"] == one["state"]["global_step"] == 1
    # The gradient (Adam's first moment after one step is 0.1 × it) is the same to rounding.
    moments = {i: (two["opt"]["state"][i]["exp_avg"], s["exp_avg"]) for i, s in one["opt"]["state"].items()}
    scale = max(m.abs().max().item() for _, m in moments.values())
    assert scale > 0  # the step did move the weights
    for i, (m2, m1) in moments.items():
        assert torch.allclose(m2, m1, rtol=1e-4, atol=1e-6 * scale), i
    # The weights too, within a tenth of one Adam step (Adam divides by |gradient|, so a gradient that is zero
    # in exact arithmetic, such as the attention keys' bias, moves by rounding noise).
    for name, w in one["model"].items():
        assert torch.allclose(two["model"][name].float(), w.float(), rtol=0, atol=LR / 10), name


def test_a_two_process_run_finishes_resumes_and_its_checkpoint_captions(tmp_path: Path) -> None:
    from imgsum.api import Captioner

    out = tmp_path / "run"
    args = [*options(tmp_path, "gpt"), "--batch-images", "1", "--text-batch", "2", "--out", str(out)]
    first = run([*args, "--epochs", "1"], processes=2)
    assert first.stdout.count('"best_dev_CIDEr"') == 1  # rank 0 reports for both
    run([*args, "--epochs", "2"], processes=2)  # resumes from epoch 1's state
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["processes"] == 2 and r["train_captions_per_second"] > 0 for r in rows)
    assert saved(out)["state"]["global_step"] == 2 * 2  # 3 training images, 2 a step (1 each): 2 steps an epoch
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    caption = Captioner.load(out / "best.safetensors", backend="torch").caption(SAMPLES / "chelsea.jpg")
    assert isinstance(caption, str) and caption


def test_torchrun_is_not_needed_for_one_process(tmp_path: Path) -> None:
    """Without torchrun's environment, training runs in one process and joins no process group."""
    done = run([*options(tmp_path, "gpt"), "--epochs", "1", "--epoch-images", "2", "--batch-images", "2",
                "--out", str(tmp_path / "solo")])
    assert "DDP" not in done.stderr and "joined" not in done.stderr
