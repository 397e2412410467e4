"""The language-model caption decoder of ``scripts/lm_captioner.py`` on a tiny random Llama (``scripts/smollm2.py``'s
forward pass with SmolLM2's layout and small shapes): no GGUF file needed."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the scripts run the language model on torch (the train extra)")

from conftest import load_script  # noqa: E402

lm_captioner = load_script("lm_captioner")

VOCAB, DIM, HEADS, KV_HEADS, LAYERS, REGIONS, FEATURES = 40, 32, 4, 2, 2, 4, 24
END = 3


def tiny_llama():
    g = torch.Generator().manual_seed(0)
    kv = DIM // HEADS * KV_HEADS

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.3

    w = {"token_embd.weight": rand(VOCAB, DIM), "output_norm.weight": torch.ones(DIM)}
    for i in range(LAYERS):
        p = f"blk.{i}."
        w |= {p + "attn_norm.weight": torch.ones(DIM), p + "ffn_norm.weight": torch.ones(DIM),
              p + "attn_q.weight": rand(DIM, DIM), p + "attn_k.weight": rand(kv, DIM), p + "attn_v.weight": rand(kv, DIM),
              p + "attn_output.weight": rand(DIM, DIM), p + "ffn_gate.weight": rand(2 * DIM, DIM),
              p + "ffn_up.weight": rand(2 * DIM, DIM), p + "ffn_down.weight": rand(DIM, 2 * DIM)}
    return lm_captioner.Llama(w, layers=LAYERS, dim=DIM, heads=HEADS, kv_heads=KV_HEADS, context=64)


def tiny_mapper(prefix: int = 3) -> "lm_captioner.PrefixMapper":
    torch.manual_seed(0)
    s = lm_captioner.Settings(prefix=prefix, mapper_layers=1, rank=2)
    return lm_captioner.PrefixMapper(s, feature_dim=FEATURES, regions=REGIONS, dim=DIM, kv_dim=DIM // HEADS * KV_HEADS,
                                     lm_layers=LAYERS)


def test_the_cached_forward_pass_gives_the_full_passs_logits() -> None:
    lm, ids = tiny_llama(), torch.tensor([[5, 9, 11, 7, 20, 6]])
    full = lm.forward(ids, torch.arange(6)[None], {}, torch.ones(1, 6, dtype=torch.bool), every=True)
    cache: dict = {}
    lm.forward(ids[:, :4], torch.arange(4)[None], cache, torch.ones(1, 6, dtype=torch.bool))
    for t in (4, 5):
        step = lm.forward(ids[:, t:t + 1], torch.tensor([[t]]), cache, torch.ones(1, 6, dtype=torch.bool))
        torch.testing.assert_close(step[0], full[0, t], atol=1e-4, rtol=1e-4)


def test_only_the_caption_and_its_end_are_targets() -> None:
    ids, target = lm_captioner.batch_layout([[4, 5, 6], [4]], [[10, 11, END], [12, END]])
    assert ids.tolist() == [[4, 5, 6, 10, 11, END], [4, 12, END, 0, 0, 0]]
    assert target.tolist() == [[False, False, False, True, True, True], [False, True, True, False, False, False]]


def test_training_moves_the_mapper_and_adapters_not_the_language_model() -> None:
    lm, mapper = tiny_llama(), tiny_mapper()
    before = {k: v.clone() for k, v in lm.w.items()}
    grid = torch.randn(4, REGIONS, FEATURES, generator=torch.Generator().manual_seed(1))
    ids, target = lm_captioner.batch_layout([[4, 5]] * 4, [[10 + i, 20 + i, END] for i in range(4)])
    opt = torch.optim.AdamW(mapper.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = lm_captioner.caption_loss(lm, mapper, grid, ids, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # each photo's own caption, told apart by its grid alone
    assert all(torch.equal(before[k], lm.w[k]) for k in before)
    assert any(float(p.detach().abs().sum()) > 0 for p in list(mapper.lora)[1::2])  # the adapters' B, zero at first, trained


def test_batched_greedy_decoding_with_padded_prompts_equals_one_photo_at_a_time() -> None:
    lm, mapper = tiny_llama(), tiny_mapper().eval()
    grid = torch.randn(3, REGIONS, FEATURES, generator=torch.Generator().manual_seed(2))
    prompts = [[4, 5, 6, 7], [8], [9, 10]]
    together = lm_captioner.greedy(lm, mapper, grid, prompts, END, max_tokens=12)
    alone = [lm_captioner.greedy(lm, mapper, grid[i:i + 1], [prompts[i]], END, max_tokens=12)[0] for i in range(3)]
    assert together == alone
    for said in together:
        assert END not in said and len(said) <= 12
        trigrams = [tuple(said[j:j + 3]) for j in range(len(said) - 2)]
        assert len(trigrams) == len(set(trigrams))  # no three-token sequence twice


def test_the_prompt_names_the_probable_concepts_each_once_most_probable_first() -> None:
    prompter = lm_captioner.Prompter.__new__(lm_captioner.Prompter)
    prompter.s = lm_captioner.Settings(concept_p=0.1, concept_most=2)
    assert prompter.words(["cup", "coffee", "cup", "mug"], [0.6, 0.3, 0.3, 0.2]) == ["cup", "coffee"]
    assert prompter.words(["tabby", "cat"], [0.05, 0.02]) == []


class CharTokens:
    """A stand-in tokenizer: one id a character."""

    def encode(self, text: str):
        return type("Encoding", (), {"ids": [ord(c) for c in text]})()


def test_a_steps_batch_holds_photos_then_text_only_captions_and_is_the_same_when_asked_again() -> None:
    from imgsum.concepts import ConceptTable

    table = ConceptTable.load()
    s = lm_captioner.Settings(batch=4, text_share=0.5, steps=10)
    grid = torch.arange(3 * REGIONS * FEATURES, dtype=torch.float32).reshape(3, REGIONS, FEATURES).numpy() + 1
    pairs = [(0, "a dog runs ."), (1, "a man rides a bike ."), (2, "two kids play .")]
    concepts = {r: (["dog"], [0.9]) for r in range(3)}
    texts = ["a cat sits on a sofa", "a koala in a tree"]
    batches = lm_captioner.Batches(s, lm_captioner.Prompter(CharTokens(), s), table, pairs, grid, concepts, texts,
                                   [table.find(t.split()) for t in texts])
    g, ids, target = batches(3)
    assert all(float(g[i].abs().sum()) > 0 for i in (0, 1)) and float(g[2:].abs().sum()) == 0
    captions = ["".join(chr(k) for k, t in zip(row.tolist(), keep.tolist()) if t) for row, keep in zip(ids, target)]
    assert captions[2] in (" a cat sits on a sofa.\n", " a koala in a tree.\n")
    assert captions[0].startswith(" a ") and captions[0].endswith(".\n")
    again = batches(3)
    assert all(torch.equal(a, b) for a, b in zip((g, ids, target), again))
