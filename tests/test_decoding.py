"""Decoders and search pinned by equivalences: incremental = teacher-forced; beam width 1 = greedy."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")


from imgsum.decoding import beam_search, greedy  # noqa: E402
from imgsum.model_info import DecoderConfig  # noqa: E402
from imgsum.models.decoders import TorchStepper, create_decoder, list_decoders  # noqa: E402

EOS = 2


def _decoder(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = DecoderConfig(kind=kind, vocab_size=40, feature_dim=24, dim=32, hidden=48, attention_dim=16, layers=2,
                        heads=4, max_len=16, dropout=0.1,
                        concepts=12, nodes=6, depth=3, classes=10)  # a tiny concept head (zero classifier)
    return create_decoder(cfg).eval()


def _images(batch: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    grid = torch.randn(batch, 49, 24, generator=g)  # (batch, regions, channels)
    return grid, grid.mean(1)


@pytest.mark.parametrize("kind", list_decoders())
def test_incremental_decoding_equals_teacher_forced_forward(kind):
    decoder = _decoder(kind)
    grid, pooled = _images()
    tokens = torch.randint(4, 40, (3, 7), generator=torch.Generator().manual_seed(2))
    full = decoder(grid, pooled, tokens)  # (batch, 1 + T, vocab)
    logits, state = decoder.start(grid, pooled)
    steps = [logits]
    for t in range(tokens.shape[1]):
        logits, state = decoder.step(tokens[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list_decoders())
def test_one_image_many_captions_equals_repeated_images(kind):
    decoder = _decoder(kind)
    grid, pooled = _images()
    index = torch.tensor([0, 0, 1, 2, 2, 2])
    tokens = torch.randint(4, 40, (6, 5), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(decoder(grid, pooled, tokens, index), decoder(grid[index], pooled[index], tokens))


@pytest.mark.parametrize("kind", list_decoders())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_equals_greedy(kind, seed):
    stepper = TorchStepper(_decoder(kind, seed))
    grid, pooled = _images(4, seed)
    assert beam_search(stepper, grid, pooled, EOS, 1, 12, 0.0) == greedy(stepper, grid, pooled, EOS, 12)


@pytest.mark.slow
@pytest.mark.parametrize("kind", list_decoders())
def test_beam_search_is_batch_independent_and_never_worse_than_greedy(kind):
    decoder = _decoder(kind)
    stepper = TorchStepper(decoder)
    grid, pooled = _images(4)
    batched = beam_search(stepper, grid, pooled, EOS, 3, 12, 0.0)
    one_by_one = [beam_search(stepper, grid[i : i + 1], pooled[i : i + 1], EOS, 3, 12, 0.0)[0] for i in range(4)]
    assert batched == one_by_one

    def logprob(i: int, ids: list[int]) -> float:
        full = decoder(grid[i : i + 1], pooled[i : i + 1], torch.tensor([ids])).log_softmax(-1)[0]
        finished = len(ids) < 12  # a caption cut at max_len has no <eos> to score
        targets = ids + ([EOS] if finished else [])
        return float(sum(full[t, w] for t, w in enumerate(targets)))

    greedy_ids = greedy(stepper, grid, pooled, EOS, 12)
    for i in range(4):
        if len(batched[i]) < 12 and len(greedy_ids[i]) < 12:
            assert logprob(i, batched[i]) >= logprob(i, greedy_ids[i]) - 1e-4


def test_outputs_stop_at_eos_and_respect_max_len():
    stepper = TorchStepper(_decoder("gpt"))
    grid, pooled = _images(5)
    for ids in greedy(stepper, grid, pooled, EOS, 6) + beam_search(stepper, grid, pooled, EOS, 3, 6, 0.0):
        assert len(ids) <= 6 and EOS not in ids


@pytest.mark.parametrize("beam", [1, 3])
def test_banned_tokens_are_never_emitted(beam):
    decoder = _decoder("lstm")
    with torch.no_grad():
        decoder.head.bias[3] = 50.0  # the model now prefers <unk> everywhere
    stepper, grid, pooled = TorchStepper(decoder), *_images(3)
    assert all(set(ids) == {3} for ids in beam_search(stepper, grid, pooled, EOS, beam, 6, 0.0))
    for ids in beam_search(stepper, grid, pooled, EOS, beam, 6, 0.0, banned=(0, 1, 3)):
        assert ids and not {0, 1, 3} & set(ids)
