"""A real, tiny training end to end: run folder, best checkpoint, and resumption after an interruption."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")

from imgsum.checkpoint import load_checkpoint  # noqa: E402
from imgsum.cli import main  # noqa: E402
from imgsum.models.captioner import CaptionModel  # noqa: E402
from imgsum.text import Vocabulary  # noqa: E402
from imgsum.train.config import TrainConfig  # noqa: E402
from imgsum.train.examples import mirror_words  # noqa: E402
from imgsum.train.objective import Objective  # noqa: E402

from conftest import TINY_TRAINING as TINY  # noqa: E402
from conftest import TRAIN_CAPTIONS as CAPTIONS  # noqa: E402
from conftest import FIXTURES, fill_disk  # noqa: E402

TEXT = FIXTURES / "captions" / "flickr30k" / "captions.txt"


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["gpt", "lstm"])
def test_training_writes_a_complete_run_folder(tmp_path, decoder):
    out = tmp_path / "run"
    code = main(["train", str(CAPTIONS), "--decoder", decoder, "--out", str(out), "--epochs", "2",
                 "--cache-dir", str(tmp_path / "cache"), *TINY])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "curves.png", "last.pt", "best.safetensors"}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "dev_loss", "dev_token_accuracy", "dev_BLEU-4", "dev_CIDEr"} <= set(rows[0])
    model = CaptionModel.from_checkpoint(out / "best.safetensors")
    assert model.info.training["images"] == {"train": 3, "dev": 1, "test": 1}  # the fixture's standard split files
    assert json.loads((out / "config.json").read_text())["decoder"] == decoder


@pytest.mark.slow
def test_memory_layers_are_trained_with_text_only_captions_and_kept_in_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(CAPTIONS), "--decoder", "lstm", "--memory-layers", "1", "--text", str(TEXT),
                 "--out", str(out), "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), *TINY]) == 0
    state, info = load_checkpoint(out / "best.safetensors")
    assert (info.decoder.memory_layers, info.decoder.regions) == (1, 49)  # Lite0's 7 x 7 grid
    assert state["concepts.encoder.position"].shape == (1, 49, 16)
    assert any(k.startswith("concepts.encoder.layers.0.") for k in state)


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_memory_layers_give_the_regions_a_place(kind: str) -> None:
    from conftest import tiny_decoder

    grid = torch.randn(1, 49, 1280, generator=torch.Generator().manual_seed(0))
    shuffled = grid[:, torch.randperm(49, generator=torch.Generator().manual_seed(1))]
    for layers, moves in ((0, False), (1, True)):  # attention alone cannot tell the regions' order
        decoder, _ = tiny_decoder(kind, memory_layers=layers)
        decoder.eval()
        with torch.no_grad():
            logits = [decoder.start(g, g.mean(1))[0] for g in (grid, shuffled)]
        assert not torch.allclose(*logits, atol=1e-5) if moves else torch.allclose(*logits, atol=1e-5)


@pytest.mark.parametrize("scope", ["all", "regions"])
def test_memory_scope_says_whether_the_concept_slots_are_rewritten(scope: str) -> None:
    from imgsum.model_info import DecoderConfig
    from imgsum.models.concept_layers import MemoryEncoder

    encoder = MemoryEncoder(DecoderConfig(dim=32, memory_layers=1, memory_scope=scope, regions=49)).eval()
    memory = torch.randn(2, 1 + 49 + 5, 32, generator=torch.Generator().manual_seed(0))
    hidden = torch.zeros(2, 1 + 49 + 5, dtype=torch.bool)
    other = memory.clone()
    other[:, 50:] += 1  # other concept slots
    with torch.no_grad():
        out, out_other = encoder(memory, hidden, 49), encoder(other, hidden, 49)
    assert not torch.allclose(out[:, :50], out_other[:, :50])  # the regions see the slots either way
    if scope == "regions":
        assert torch.equal(out[:, 50:], memory[:, 50:])  # the slots as they came
    else:
        assert not torch.allclose(out[:, 50:], memory[:, 50:], atol=1e-3)
    with pytest.raises(ValueError, match="memory_scope"):
        MemoryEncoder(DecoderConfig(dim=32, memory_layers=1, memory_scope="slots", regions=49))


@pytest.mark.slow
def test_release_decoding_is_the_checkpoints_and_validation_keeps_its_own(tmp_path, caplog):
    config = tmp_path / "release.toml"
    config.write_text("concept_boost = 1.5\nrelease_decoding = { concept_boost = 4.0, length_penalty = 1.0, "
                      "concepts_once = true }\n")
    out = tmp_path / "run"
    assert main(["train", str(CAPTIONS), "--config", str(config), "--out", str(out), "--epochs", "1",
                 "--cache-dir", str(tmp_path / "cache"), *TINY]) == 0
    info = CaptionModel.from_checkpoint(out / "best.safetensors").info
    assert (info.decoding.concept_boost, info.decoding.length_penalty, info.decoding.concepts_once) == (4.0, 1.0, True)
    assert info.decoding.block_repeats  # the rest as validation's
    assert info.training["config"]["concept_boost"] == 1.5  # what validation used to pick the epoch
    config.write_text("release_decoding = { beam_width = 5 }\n")  # not a decoding option: refused before any work
    assert main(["train", str(CAPTIONS), "--config", str(config), "--out", str(tmp_path / "bad"), *TINY]) == 2
    assert "release_decoding: unknown decoding option(s) beam_width" in caplog.text


@pytest.mark.slow
def test_fine_tuning_starts_from_a_checkpoint_with_its_vocabulary_and_extra_text(tmp_path, caplog):
    caplog.set_level("INFO")
    common = ["train", str(CAPTIONS), "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), "--text", str(TEXT),
              *TINY]
    assert main([*common, "--out", str(tmp_path / "base")]) == 0
    base = CaptionModel.from_checkpoint(tmp_path / "base" / "best.safetensors")
    extra = tmp_path / "extra.csv"  # words the base vocabulary never saw: they stay <unk>, the vocabulary is kept
    extra.write_text("image,caption\nx0,a koala is sleeping in a eucalyptus tree\nx1,a cup of espresso on a saucer\n")
    caplog.clear()
    # a learning rate of ~0 and no dropout: the tuned weights are the base's, so the run started from them; the
    # checkpoint fixes the architecture, so the memory layers asked for are ignored, with a warning
    assert main([*common, "--out", str(tmp_path / "tuned"), "--init", str(tmp_path / "base" / "best.safetensors"),
                 "--extra-text", str(extra), "--extra-text-repeats", "3", "--lr", "1e-12", "--dropout", "0",
                 "--text-with-image", "0.5", "--own-concepts", "0.3", "--memory-layers", "1"]) == 0
    assert "fixes the architecture; ignoring memory_layers=1 (it has 0)" in caplog.text
    tuned = CaptionModel.from_checkpoint(tmp_path / "tuned" / "best.safetensors")
    assert tuned.info.decoder.memory_layers == 0 and tuned.info.decoder.dropout == 0 < base.info.decoder.dropout
    assert tuned.info.vocab == base.info.vocab and "eucalyptus" not in tuned.info.vocab
    for name, weight in base.decoder.state_dict().items():
        torch.testing.assert_close(tuned.decoder.state_dict()[name], weight, atol=1e-6, rtol=0)
    assert tuned.info.training["text"]["captions"] == base.info.training["text"]["captions"] + 2
    assert tuned.info.training["config"]["text_with_image"] == 0.5 and tuned.info.training["config"]["own_concepts"] == 0.3
    assert "text-only pool" in caplog.text and "+ 2 extra x 3" in caplog.text
    # a checkpoint of another decoder is refused before any work
    assert main([*common, "--decoder", "lstm", "--out", str(tmp_path / "bad"),
                 "--init", str(tmp_path / "base" / "best.safetensors")]) == 2
    assert "is a gpt decoder" in caplog.text


def test_text_only_captions_are_shown_with_no_image_or_a_share_with_a_random_image_of_the_batch():
    grid, pooled = torch.randn(4, 49, 8), torch.randn(4, 8)
    none = torch.full((6,), -1)
    state = torch.random.get_rng_state()
    text_grid, text_pooled, shown = Objective(torch.nn.Identity(), 0.1, 2).text_images(grid, pooled, none)
    assert text_grid.shape == (6, 1, 8) and not text_grid.any() and not text_pooled.any() and not shown.any()
    assert torch.equal(torch.random.get_rng_state(), state)  # the default draws nothing: older runs stay as they were
    torch.manual_seed(0)
    text_grid, text_pooled, shown = Objective(torch.nn.Identity(), 0.1, 2, 0.5).text_images(
        grid, pooled, torch.full((2000,), -1))
    assert 0.45 < shown.float().mean() < 0.55
    assert not text_grid[~shown].any() and not text_pooled[~shown].any()
    for g, p in zip(text_grid[shown], text_pooled[shown]):  # each shown caption has one of the batch's images, whole
        match = [i for i in range(4) if torch.equal(g, grid[i])]
        assert len(match) == 1 and torch.equal(p, pooled[match[0]])
    assert Objective(torch.nn.Identity(), 0.1, 2, 1.0).text_images(grid, pooled, none)[2].all()
    # image captions given their own words' concepts are shown with their own image; text-only ones beside them not
    text_grid, text_pooled, shown = Objective(torch.nn.Identity(), 0.1, 2).text_images(grid, pooled,
                                                                                       torch.tensor([2, -1, 0]))
    assert shown.tolist() == [True, False, True] and not text_grid[1].any() and not text_pooled[1].any()
    assert torch.equal(text_grid[0], grid[2]) and torch.equal(text_grid[2], grid[0]) and torch.equal(text_pooled[0], pooled[2])


def test_image_captions_get_the_concepts_their_own_words_name_as_their_slots():
    from imgsum.concepts import ConceptTable, slot_tokens
    from imgsum.text import Vocabulary
    from imgsum.train.examples import TextExamples
    from imgsum.train.text_only import TextCaptions

    table = ConceptTable.load()
    vocab = Vocabulary([*slot_tokens(5), "a", "cat", "on", "sofa", "man", "runs"])
    examples = TextExamples(TextCaptions([], []), table, vocab, 5, 10, seed=0)
    words = [["a", "cat", "on", "a", "sofa"], ["a", "man", "runs"]]
    cat = table.index["cat"]
    said = 0
    for step in range(40):
        batch = examples.own_concepts(words, torch.tensor([3, 1]), 1.0, step)
        assert batch.image.tolist() == [3, 1] and batch.concept_ids.shape == (2, 5)
        if cat in batch.concept_ids[0].tolist():  # kept (p 0.85): the caption's "cat" is the slot's token
            k = batch.concept_ids[0].tolist().index(cat)
            assert vocab.stoi[f"<c{k}>"] in batch.tokens[0].tolist() and vocab.stoi["cat"] not in batch.tokens[0].tolist()
            said += 1
        assert torch.equal(batch.tokens, examples.own_concepts(words, torch.tensor([3, 1]), 1.0, step).tokens)
    assert 25 <= said <= 40
    assert len(examples.own_concepts(words, torch.tensor([3, 1]), 0.0, 0).tokens) == 0
    assert len(examples.batch(0, 0).tokens) == 0  # no text-only pool: an empty batch beside them


@pytest.mark.slow
def test_self_critical_epochs_follow_and_the_cross_entropy_regulariser_changes_them(tmp_path):
    common = ["train", str(CAPTIONS), "--epochs", "1", "--scst-epochs", "1", "--scst-samples", "3",
              "--cache-dir", str(tmp_path / "cache"), "--text", str(TEXT), "--scst-lr", "1e-2", *TINY]
    weights = {}
    for xe in ("0", "0.5"):
        out = tmp_path / f"xe{xe}"
        assert main([*common, "--out", str(out), "--scst-xe", xe]) == 0
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["lr"] == 1e-2  # the second is self-critical
        assert json.loads((out / "config.json").read_text())["scst_xe"] == float(xe)
        weights[xe] = torch.load(out / "last.pt", weights_only=True)["model"]
    # the same cross-entropy epoch (same seed), then a self-critical one with and without the regulariser
    assert any(not torch.equal(w, weights["0.5"][n]) for n, w in weights["0"].items())


@pytest.mark.slow
def test_features_are_cached_and_reused(tmp_path):
    args = ["train", str(CAPTIONS), "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), *TINY]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    (cache,) = (tmp_path / "cache").iterdir()
    stamp = (cache / "grid.npy").stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert (cache / "grid.npy").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_mirrored_photos_are_cached_once_and_change_the_training(tmp_path):
    data = Path(shutil.copytree(CAPTIONS.parent, tmp_path / "data"))
    for i, image in enumerate(sorted((data / "images").iterdir())):  # the fixture's solid colours mirror to themselves
        ramp = np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None] * np.ones((32, 1, 3), np.uint8)
        Image.fromarray(np.roll(ramp, 7 * i, axis=2)).save(image, format="JPEG")
    args = ["train", str(data / CAPTIONS.name), "--epochs", "1", "--cache-dir", str(tmp_path / "cache"), *TINY]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--out", str(tmp_path / "mirror"), "--mirror", "0.5"]) == 0
    plain, mirror = sorted((tmp_path / "cache").iterdir(), key=lambda p: "mirror" in p.name)
    assert "mirror" in mirror.name and json.loads((mirror / "meta.json").read_text())["done"] == 5
    a, b = np.load(plain / "grid.npy"), np.load(mirror / "grid.npy")
    assert a.shape == b.shape and not np.array_equal(a, b)  # the encoder's features of the mirrored photos
    weights = [torch.load(tmp_path / run / "last.pt", weights_only=True)["model"] for run in ("plain", "mirror")]
    assert any(not torch.equal(w, weights[1][n]) for n, w in weights[0].items())
    assert json.loads((tmp_path / "mirror" / "config.json").read_text())["mirror"] == 0.5


def test_mirrored_photos_captions_say_left_for_right():
    vocab = Vocabulary(["a", "dog", "left", "right", "turns"])
    tokens = torch.tensor([vocab.encode("a dog turns left")[1:-1], vocab.encode("a dog turns right")[1:-1]])
    swapped = mirror_words(tokens, torch.tensor([True, False]), vocab)
    assert [vocab.decode(t.tolist()) for t in swapped] == ["a dog turns right", "a dog turns right"]


@pytest.mark.slow
def test_interrupted_training_resumes_where_it_stopped(tmp_path):
    out, epochs = tmp_path / "run", 25
    cmd = [sys.executable, "-m", "imgsum.cli", "train", str(CAPTIONS), "--out", str(out), "--epochs", str(epochs),
           "--cache-dir", str(tmp_path / "cache"), *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # as Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "state saved" in err
    done = len(metrics.read_text().splitlines())
    assert 2 <= done < epochs

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {out / 'last.pt'}: epoch {done + 1}" in resumed.stderr
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == list(range(1, epochs + 1))


def test_bad_caption_file_is_a_clear_error(tmp_path, caplog):
    bad = tmp_path / "captions.json"
    bad.write_text("{ not json")
    assert main(["train", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "captions.json" in caplog.text


@pytest.mark.slow
def test_a_full_disk_stops_training_clearly_and_loses_nothing(tmp_path, small_disk):
    out = small_disk / "run"

    def train(epochs: int) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "imgsum.cli", "train", str(CAPTIONS), "--out", str(out), "--epochs", str(epochs),
               "--cache-dir", str(tmp_path / "cache"), *TINY]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    assert train(1).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    filler = fill_disk(small_disk)
    full = train(2)  # resumes, trains epoch 2, and cannot save it
    assert full.returncode == 1, full.stderr
    assert "No space left on device" in full.stderr and "run the same command" in full.stderr
    assert "Traceback" not in full.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing half-written, nothing lost

    filler.unlink()
    resumed = train(2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {out / 'last.pt'}: epoch 2" in resumed.stderr
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    CaptionModel.from_checkpoint(out / "best.safetensors")


def test_the_configs_parse_and_the_shipped_gpt_is_its_second_stages_recipe():
    """Every recipe in configs/ loads; a stage that starts from a checkpoint starts from another recipe's best
    model; and the shipped gpt was trained by configs/gpt-scst.toml (only where it ran and what it started from
    differ: the run folder, and the first stage's checkpoint given by its path)."""
    root = Path(__file__).resolve().parents[1]
    configs = {p.stem: TrainConfig.from_file(p) for p in sorted((root / "configs").glob("*.toml"))}
    assert {"gpt", "gpt-scst", "lstm"} <= set(configs)
    outs = {f"{c.out}/best.safetensors" for c in configs.values()}
    for name, cfg in configs.items():
        if cfg.init:
            assert cfg.init in outs, f"configs/{name}.toml starts from {cfg.init}, which no recipe makes"
    _, info = load_checkpoint(root / "src" / "imgsum" / "pretrained" / "gpt.safetensors")
    trained = info.training["config"]
    recipe = configs["gpt-scst"].to_dict()
    # An option added since the run is absent from its config: at its default it trains as the run did.
    defaults = TrainConfig().to_dict()
    differ = {k for k in recipe if recipe[k] != trained.get(k, defaults[k])}
    # concept_crop came after the run: scripts/set_decoding.py set it, as the recipe now writes it.
    set_after = {"concept_crop"} if ("preprocess_set" in info.training
                                     and info.preprocess.concept_crop == recipe["concept_crop"]) else set()
    assert differ <= {"out", "init"} | set_after, {k: (recipe[k], trained.get(k)) for k in differ}


def test_concept_bias_adds_the_boost_at_each_concepts_word_and_its_plural() -> None:
    from imgsum.concepts import FIRST_SLOT
    from imgsum.train.scst import concept_bias

    p = torch.tensor([[0.5, 0.25, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    bias = concept_bias(p, 40, 4.0)
    assert bias.shape == (2, 40)
    assert bias[0, FIRST_SLOT].item() == bias[0, FIRST_SLOT + 5].item() == 2.0  # <c0> and <c0s>
    assert bias[0, FIRST_SLOT + 1].item() == bias[0, FIRST_SLOT + 6].item() == 1.0
    assert bias[1, FIRST_SLOT + 4].item() == bias[1, FIRST_SLOT + 9].item() == 4.0
    assert bias.sum(1).tolist() == [6.0, 8.0]  # nothing anywhere else


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_self_critical_training_samples_and_scores_the_boosted_policy(kind: str) -> None:
    from imgsum.concepts import FIRST_SLOT
    from imgsum.text import Vocabulary
    from imgsum.train.scst import sample
    from conftest import tiny_decoder

    decoder, info = tiny_decoder(kind)
    decoder.eval()
    vocab = Vocabulary.from_list(info.vocab)
    torch.manual_seed(0)
    grid, pooled = torch.randn(2, 49, 1280), torch.randn(2, 1280)
    ids = torch.tensor([[1, 2, 3, 4, 5]] * 2)
    p = torch.tensor([[0.9, 0.0, 0.0, 0.0, 0.0]] * 2)  # one confident concept
    slot_tokens = {FIRST_SLOT, FIRST_SLOT + 5}  # its word and its plural
    plain = sample(decoder, grid, pooled, 3, 8, vocab)
    boosted = sample(decoder, grid, pooled, 3, 8, vocab, boost=30.0, concept_p=p)
    assert not set(plain.flatten().tolist()) <= slot_tokens | {0}
    assert set(boosted.flatten().tolist()) <= slot_tokens | {0}  # the boost is what it samples from
    objective = Objective(decoder, 0.0, vocab.eos_id)
    advantage = torch.ones(len(boosted))
    loss, count = objective("scst", grid, pooled, (ids, p), boosted, advantage)
    loss_boosted, count_boosted = objective("scst", grid, pooled, (ids, p), boosted, advantage, 30.0)
    # Under the policy that sampled them, each token is the word or its plural at even odds: log 2 a token; under
    # the model's own, far less probable.
    assert count == count_boosted > 0
    assert loss_boosted.item() / count == pytest.approx(math.log(2), abs=0.01) and loss > 3 * loss_boosted
