"""Evaluation: coco-caption metrics, human agreement, ``imgsum eval`` end to end, the README generator."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

import tables
import update_readme
from conftest import DATA, ROOT, needs_data
from imgsum.cli import main
from imgsum.eval import metrics
from imgsum.eval.agreement import agreement_sets, human_agreement
from imgsum.eval.evaluate import (EvalSettings, caption_stats, command_line, default_out, model_label,
                                  read_outputs)
from imgsum.eval.metrics import CaptionScorer, score_captions, tokenize_captions
from imgsum.eval.report import pick_rows
from imgsum.eval.subjects import is_degenerate

F8 = ROOT / "tests" / "fixtures" / "captions" / "flickr8k"

needs_coco = pytest.mark.skipif(importlib.util.find_spec("pycocoevalcap") is None,
                                reason="the eval extra (pycocoevalcap) is not installed")
needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="Java absent: the PTB tokenizer and METEOR need it")

REFS = {
    "a": ["a dog runs on the grass", "a brown dog is running outside", "the dog runs through a field"],
    "b": ["two children play in the snow", "kids playing in snow", "two kids are playing outside in the snow"],
    "c": ["a man rides a red bike", "a cyclist on a street", "a man riding his bicycle down the road"],
}


# --- metrics ----------------------------------------------------------------------------------


@needs_coco
def test_identical_captions_score_one_without_java() -> None:
    hyps = {k: v[0] for k, v in REFS.items()}
    scores = score_captions({k: [v[0]] for k, v in REFS.items()}, hyps, ptb=False, meteor=False)
    for m in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert scores[m] == pytest.approx(1.0, abs=1e-6), m
    assert scores["CIDEr"] == pytest.approx(10.0, rel=1e-3)  # CIDEr-D's scale: 10 x cosine similarity


@needs_coco
def test_bleu1_by_hand() -> None:
    # Clipped unigram precision 2/4 ("a" and "dog" count once each); hypothesis longer than reference: no penalty.
    scores = score_captions({"x": ["a dog runs"]}, {"x": "a dog a dog"}, ptb=False, meteor=False)
    assert scores["BLEU-1"] == pytest.approx(0.5, abs=1e-6)


@needs_coco
def test_unrelated_caption_scores_zero_and_per_image_rows() -> None:
    scores = score_captions(REFS, {"a": "zebra", "b": "zebra", "c": "zebra"}, ptb=False, meteor=False,
                            per_image=True)
    assert scores["CIDEr"] == 0.0 and scores["ROUGE-L"] == 0.0
    assert set(scores["per_image"]) == set(REFS)
    assert all(row["CIDEr"] == 0.0 for row in scores["per_image"].values())


@needs_coco
def test_scorer_refuses_missing_captions() -> None:
    with CaptionScorer(meteor=False) as scorer, pytest.raises(ValueError, match="no caption"):
        scorer.score({"a": ["x y"]}, {})


@needs_coco
@needs_java
def test_ptb_tokenizer_lowercases_and_drops_punctuation_keeping_empty_captions() -> None:
    tokens = tokenize_captions({"a": ["A Dog, running.", ""], "b": [""]})
    assert tokens == {"a": ["a dog running", ""], "b": [""]}


@needs_coco
@needs_java
@pytest.mark.slow
def test_meteor_of_identical_caption_is_one() -> None:
    scores = score_captions({"a": ["A dog runs on the grass ."]}, {"a": "a dog runs on the grass"}, meteor=True)
    assert scores["METEOR"] == pytest.approx(1.0, abs=1e-3)
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-6)


def test_without_java_a_clear_message(monkeypatch) -> None:
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with pytest.raises(metrics.JavaMissing, match="apt-get install default-jre-headless"):
        tokenize_captions({"a": ["x"]})


# --- human agreement --------------------------------------------------------------------------


def test_agreement_folds_score_each_reference_and_the_model_against_the_same_others() -> None:
    calls = []

    def fake_score(refs, hyps):
        calls.append((dict(refs), dict(hyps)))
        return {"CIDEr": float(len(calls))}

    hyps = {k: f"model {k}" for k in REFS}
    result = human_agreement(REFS, hyps, fake_score)
    assert result["references"] == 2 and result["images"] == 3
    assert len(calls) == 6  # three folds, each scoring people then the model
    for i in range(3):
        (human_refs, human_hyps), (model_refs, model_hyps) = calls[2 * i], calls[2 * i + 1]
        assert human_hyps == {k: v[i] for k, v in REFS.items()}
        assert human_refs == model_refs == {k: v[:i] + v[i + 1 :] for k, v in REFS.items()}
        assert model_hyps == hyps
    assert result["human"] == {"CIDEr": (1 + 3 + 5) / 3}
    assert result["model"] == {"CIDEr": (2 + 4 + 6) / 3}


@needs_coco
def test_agreement_with_real_scores_a_model_that_copies_reference_0() -> None:
    refs = {k: [" ".join(v.split()) for v in vs] for k, vs in REFS.items()}
    with CaptionScorer(meteor=False) as scorer:
        result = human_agreement(refs, {k: v[0] for k, v in refs.items()}, scorer.score)
    # In fold 0 the model's captions are the people's candidates, against the same references.
    assert result["folds"]["model"][0] == result["folds"]["human"][0]
    assert result["folds"]["model"][1]["BLEU-1"] == pytest.approx(1.0, abs=1e-6)  # ref 0 is among the references


def test_agreement_sets_use_the_smallest_count_and_leave_out_single_references() -> None:
    sets, k = agreement_sets({"a": ["1", "2", "3"], "b": ["1", "2"], "c": ["1"]})
    assert k == 2 and sets == {"a": ["1", "2"], "b": ["1", "2"]}
    with pytest.raises(ValueError, match="at least two"):
        agreement_sets({"a": ["1"]})


# --- statistics and report ---------------------------------------------------------------------


def test_caption_stats_counts_distinct_and_copied_captions() -> None:
    hyps = {"a": "A dog runs.", "b": "a dog runs", "c": "a new sentence here"}
    stats = caption_stats(hyps, REFS, ["a dog runs", "something else"], vocab_size=10)
    assert stats["distinct_captions"] == 2
    assert stats["copied_from_training"] == 2 and stats["copied_from_training_share"] == pytest.approx(2 / 3)
    assert stats["distinct_words"] == 6
    assert stats["length"]["min"] == 3 and stats["length"]["max"] == 4
    assert stats["most_frequent"][0] == {"caption": "a dog runs", "count": 2}
    assert stats["degenerate"] == 0 and stats["degenerate_examples"] == []


def test_caption_stats_count_degenerate_captions() -> None:
    hyps = {"a": "a black dog and a black dog and a black dog", "b": "a dog runs",
            "c": "a man wearing a sunglasses and sunglasses and sunglasses"}
    stats = caption_stats(hyps, REFS, [])
    assert stats["degenerate"] == 2 and stats["degenerate_share"] == pytest.approx(2 / 3)
    assert stats["degenerate_examples"] == [{"image": "a", "caption": hyps["a"]}, {"image": "c", "caption": hyps["c"]}]


def test_pick_rows_best_and_worst_by_cider() -> None:
    rows = [{"image": f"{i}.jpg", "CIDEr": float(i)} for i in range(30)]
    picked = pick_rows(rows, sample=5, extremes=3)
    assert [r["image"] for r in picked["best"]] == ["29.jpg", "28.jpg", "27.jpg"]
    assert [r["image"] for r in picked["worst"]] == ["0.jpg", "1.jpg", "2.jpg"]
    assert len(picked["sample"]) == 5 and picked == pick_rows(rows, sample=5, extremes=3)


def test_model_label() -> None:
    assert model_label("gpt") == "gpt"
    assert model_label("runs/gpt/best.safetensors") == "gpt-best"
    assert model_label("/x/mine.safetensors") == "mine"
    assert model_label("export/gpt.json") == "gpt" and model_label("export/gpt-onnx/") == "gpt-onnx"


def test_command_line_and_output_folder_of_a_subject_evaluation() -> None:
    settings = EvalSettings(model="lstm", subjects="../shared/data/imagenet_dev", decoding={"beam": 5}, ptb=False)
    assert command_line(settings) == "imgsum eval --model lstm --subjects ../shared/data/imagenet_dev --beam 5"
    assert default_out(settings) == Path("runs/eval/lstm-imagenet_dev")
    assert default_out(EvalSettings(model="lstm", split="dev")) == Path("runs/eval/lstm-dev")


# --- imgsum eval, end to end ------------------------------------------------------------------


def _eval(tmp_path: Path, checkpoint: Path, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(checkpoint), "--data", str(F8 / "Flickr8k.token.txt"), "--split", "train",
                 "--out", str(out), "--no-progress", *extra])
    return code, out


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_eval_cli_end_to_end_without_java(tmp_path: Path, tiny_checkpoints, kind: str, capsys) -> None:
    code, out = _eval(tmp_path, tiny_checkpoints[kind], "--no-ptb", "--no-meteor", "--beam", "1")
    assert code == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["kind"] == "coco"
    assert set(result["metrics"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}
    s = result["settings"]
    assert (s["split"], s["images"], s["beam"], s["max_len"], s["decoder"]) == ("train", 4, 1, 10, kind)
    assert s["backend"] == "torch" and result["date"].endswith("Z") and result["machine"]["cores"] >= 1
    assert "SPICE not computed" in result["spice"]
    # Three of the four train images have at least two references: agreement over them, against one other.
    agreement = result["human_agreement"]
    assert agreement["references"] == 1 and agreement["images"] == 2
    assert set(agreement["human"]) == set(result["metrics"])
    rows = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all({"image", "caption", "concepts", "degenerate", "references", "CIDEr"} <= set(r)
                                  for r in rows)
    assert read_outputs(out) == {**result, "rows": rows}  # what write_outputs wrote, read back
    with pytest.raises(FileNotFoundError, match="not an imgsum eval --out folder"):
        read_outputs(tmp_path)
    degenerate = sum(is_degenerate(r["caption"]) for r in rows)
    assert [r["degenerate"] for r in rows] == [is_degenerate(r["caption"]) for r in rows]
    assert result["stats"]["degenerate"] == degenerate
    printed = json.loads(capsys.readouterr().out)
    assert printed["degenerate_captions"] == degenerate and printed["metrics"] == result["metrics"]
    cider = result["intervals"]["CIDEr"]  # over the photos' own CIDEr, whose mean is the corpus CIDEr
    assert cider["mean"] == pytest.approx(result["metrics"]["CIDEr"]) and cider["photos"] == 4
    assert cider["low"] <= cider["mean"] <= cider["high"] and printed["intervals"] == result["intervals"]
    html = (out / "report.html").read_text()
    assert html.count("data:image/jpeg;base64,") >= 4 and "Worst" in html and "SPICE" in html
    assert f"95% bootstrap interval over the 4 photos (2000 resamples): CIDEr {cider['low']:.3f} to" in html
    assert f"Degenerate captions (a word other than a, the, and, in, on, of, with, or a two- or three-word " \
           f"sequence, three times): <b>{degenerate}</b>" in html
    assert result["command"].startswith("imgsum eval --model")


def test_eval_cli_says_what_to_install_without_java(tmp_path, tiny_checkpoints, monkeypatch, caplog) -> None:
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    code, out = _eval(tmp_path, tiny_checkpoints["gpt"])
    assert code == 2 and not out.exists()
    assert "default-jre-headless" in caplog.text and "--no-ptb" in caplog.text


@needs_java
def test_eval_cli_coco_protocol(tmp_path: Path, tiny_checkpoints) -> None:
    code, out = _eval(tmp_path, tiny_checkpoints["gpt"], "--no-meteor")
    assert code == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["settings"]["tokenizer"] == "ptb" and "CIDEr" in result["metrics"]


# --- on the real data -------------------------------------------------------------------------


@needs_coco
@needs_java
@needs_data
@pytest.mark.data
@pytest.mark.slow
def test_human_agreement_and_constant_caption_on_flickr8k_test() -> None:
    """The figures measured on this data (its README, in $IMGSUM_DATA), reproduced."""
    from imgsum.data.formats import load_captions
    from imgsum.data.splits import split_by_image

    data = load_captions(DATA / "Flickr8k.token.txt")
    refs = {k: data.captions[k] for k in split_by_image(data)["test"]}
    tokens = tokenize_captions(refs)
    constant = {k: v[0] for k, v in tokenize_captions({k: ["a dog runs through the grass ."] for k in refs}).items()}
    with CaptionScorer(meteor=True) as scorer:
        scores = scorer.score(tokens, constant)
        agreement = human_agreement(tokens, None, scorer.score)
    assert round(scores["BLEU-4"], 3) == 0.024 and round(scores["CIDEr"], 3) == 0.067
    expected = {"BLEU-1": 0.647, "BLEU-2": 0.457, "BLEU-3": 0.314, "BLEU-4": 0.214, "METEOR": 0.255,
                "ROUGE-L": 0.495, "CIDEr": 0.820}
    assert {k: round(agreement["human"][k], 3) for k in expected} == expected
    assert agreement["images"] == 1000 and agreement["references"] == 4


# --- README sections and the benchmark tables ---------------------------------------------------


def _fake_eval(label: str, split: str = "test") -> dict:
    scores = {m: 0.5 for m in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")}
    return {
        "date": "2026-11-26T15:00:00Z", "machine": {"cpu": "CPU", "cores": 2},
        "settings": {"label": label, "split": split, "images": 1000, "beam": 3, "tokenizer": "ptb", "backend": "onnx"},
        "metrics": scores, "spice": "SPICE not computed.", "command": f"imgsum eval --model {label} --beam 3",
        "human_agreement": {"references": 4, "human": scores, "model": scores},
        "stats": {"captions": 1000, "length": {"mean": 9.0}, "reference_length": {"mean": 11.0},
                  "distinct_captions": 400, "distinct_captions_share": 0.4, "distinct_words": 300,
                  "reference_distinct_words": 3000, "copied_from_training_share": 0.5},
    }


def test_quality_markdown_lists_models_and_people() -> None:
    text = update_readme.quality_markdown([_fake_eval("gpt"), _fake_eval("lstm")])
    assert "| `gpt`, beam 3 (onnx) | 0.500" in text and "people: each reference against the other 4" in text
    assert "imgsum eval --model lstm --beam 3" in text and "SPICE not computed." in text
    assert "bootstrap interval" not in text  # results written before imgsum eval had intervals
    with_interval = {**_fake_eval("gpt"), "intervals": {"CIDEr": {"low": 0.46, "high": 0.54}}}
    text = update_readme.quality_markdown([with_interval, _fake_eval("lstm")])
    assert "CIDEr's 95% bootstrap interval over the 1,000 photos" in text and "`gpt` 0.460 to 0.540." in text


def test_subjects_markdown_gives_the_named_shares_interval_in_percent() -> None:
    result = {"settings": {"label": "ensemble"}, "command": "imgsum eval --subjects x",
              "metrics": {"named": 423, "scored": 500, "named_share": 0.846, "concept_named_share": 0.898,
                          "degenerate": 0}, "intervals": {"named_share": {"low": 0.814, "high": 0.876}}}
    text = update_readme.subjects_markdown([result])
    assert "| `ensemble` | 423 of 500 (84.6%) | 89.8% | 0 |" in text and "`ensemble` 81.4% to 87.6%." in text


def test_update_readme_replaces_only_the_marked_sections(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# t\n<!-- quality:start -->\nold\n<!-- quality:end -->\nkept\n"
                      "<!-- speed:start -->\nold\n<!-- speed:end -->\n")
    from imgsum.pretrained import SHIPPED

    default, other = list(SHIPPED)[:2]
    for label in (default, other):
        (tmp_path / label).mkdir()
        (tmp_path / label / "metrics.json").write_text(json.dumps(_fake_eval(label)))
    args = ["--readme", str(readme), "--eval", str(tmp_path / other / "metrics.json"),  # not in release order
            str(tmp_path / default / "metrics.json"), "--bench", str(tmp_path / "none.json")]
    assert update_readme.main([*args, "--check"]) == 1
    assert update_readme.main(args) == 0
    text = readme.read_text()
    assert "old\n<!-- quality:end -->" not in text and "kept" in text
    assert text.index(f"`{default}`, beam 3") < text.index(f"`{other}`, beam 3")  # the default model first
    assert "<!-- speed:start -->\nold\n<!-- speed:end -->" in text  # no benchmark results: left as it was
    assert update_readme.main([*args, "--check"]) == 0
    readme.write_text("no markers")
    assert update_readme.main(args) == 2


def test_benchmark_tables_ratios_and_targets() -> None:
    result = {
        "date": "2026-11-26T15:00:00Z", "backend": "auto", "default": "gpt",
        "machine": {"cpu": "CPU", "cores": 2, "torch_threads": 2},
        "targets": {"throughput_images_per_second": 30.0, "throughput_ratio": 4.0, "latency_median_ms": 80.0,
                    "cold_start_s": 3.0},
        "latency": [{"system": "gpt", "kind": "gpt", "beam": 3, "median_ms": 50.0, "p95_ms": 60.0},
                    {"system": "spec-gpt", "kind": "gpt", "beam": 1, "baseline": True, "median_ms": 500.0,
                     "p95_ms": 600.0}],
        "throughput": [{"system": "gpt", "kind": "gpt", "beam": 3, "batch_size": 16, "images": 500,
                        "images_per_second": 20.0},
                       {"system": "spec-gpt", "kind": "gpt", "beam": 1, "baseline": True, "images": 500,
                        "images_per_second": 2.0},
                       {"system": "spec-lstm", "kind": "lstm", "beam": 1, "baseline": True, "images": 500,
                        "images_per_second": 8.0}],
        "cold_start": [{"system": "gpt", "kind": "gpt", "first_output_s": 2.0, "peak_rss_mib": 100.0},
                       {"system": "spec-gpt", "kind": "gpt", "baseline": True, "first_output_s": 4.0,
                        "peak_rss_mib": 400.0}],
        "training": [],
    }
    tables.ratios(result)
    assert result["latency"][0]["vs_spec"] == 10.0 and result["throughput"][0]["vs_spec"] == 10.0
    assert result["cold_start"][0]["vs_spec"] == 2.0 and result["cold_start"][0]["rss_vs_spec"] == 0.25
    checks = tables.check_targets(result)
    assert [c["met"] for c in checks] == [False, True, False, True, True]  # 30 images/s; 4x each spec; 80 ms; 3 s
    assert checks[0]["note"] == "missed: 20 images/s against 30 images/s (1.50x off)"
    assert checks[2]["note"] == "missed: 2.5x against 4x (1.60x off)"  # against the faster spec-lstm
    text = tables.render_markdown(result)
    assert "| single-image warm latency, median (p95) | gpt | beam 3 | 50.0 ms (60.0) | spec-gpt: 500 ms (600) | " \
           "**10.0x** |" in text


def test_benchmark_tables_compare_backend_and_onnx_targets() -> None:
    """Ours on onnx beside the same model on torch, in one run: both ratios, and the ONNX issue's targets."""
    result = {
        "date": "2026-11-26T15:00:00Z", "backend": "auto", "compare_backend": "torch", "default": "lstm",
        "backends": {"lstm": "onnx"}, "machine": {"cpu": "CPU", "cores": 2, "torch_threads": 2},
        "targets": {"throughput_images_per_second": 30.0, "throughput_ratio": 4.0, "latency_median_ms": 80.0,
                    "cold_start_s": 3.0},
        "targets_onnx": {"backend": "onnx", "throughput_images_per_second": 100.0, "latency_median_ms": 20.0,
                         "cold_start_s": 1.0},
        "latency": [{"system": "lstm", "kind": "lstm", "beam": 3, "backend": "onnx", "median_ms": 10.0, "p95_ms": 12.0,
                     "foreign_cpu": 0.01},
                    {"system": "lstm", "kind": "lstm", "beam": 3, "backend": "torch", "comparison": True,
                     "median_ms": 40.0, "p95_ms": 50.0, "foreign_cpu": 0.0},
                    {"system": "spec-lstm", "kind": "lstm", "beam": 1, "baseline": True, "median_ms": 100.0,
                     "p95_ms": 110.0, "foreign_cpu": 0.02}],
        "throughput": [{"system": "lstm", "kind": "lstm", "beam": 3, "batch_size": 16, "backend": "onnx",
                        "images": 500, "images_per_second": 90.0},
                       {"system": "lstm", "kind": "lstm", "beam": 3, "batch_size": 16, "backend": "torch",
                        "comparison": True, "images": 500, "images_per_second": 45.0},
                       {"system": "spec-lstm", "kind": "lstm", "beam": 1, "baseline": True, "images": 500,
                        "images_per_second": 9.0}],
        "cold_start": [{"system": "lstm", "kind": "lstm", "backend": "onnx", "first_output_s": 0.25,
                        "peak_rss_mib": 160.0},
                       {"system": "lstm", "kind": "lstm", "backend": "torch", "comparison": True,
                        "first_output_s": 1.0, "peak_rss_mib": 320.0},
                       {"system": "spec-lstm", "kind": "lstm", "baseline": True, "first_output_s": 1.25,
                        "peak_rss_mib": 550.0}],
        "training": [],
    }
    tables.ratios(result)
    ours, torch_path = result["latency"][0], result["latency"][1]
    assert ours["vs_compare"] == 4.0 and ours["vs_spec"] == 10.0 and "vs_compare" not in torch_path
    assert result["throughput"][0]["vs_compare"] == 2.0 and result["cold_start"][0]["rss_vs_compare"] == 0.5
    checks = tables.check_targets(result)
    assert [(c["issue"], c["met"]) for c in checks] == [
        ("evaluation", True), ("evaluation", True), ("evaluation", True), ("evaluation", True),  # not torch's figures
        ("ONNX Runtime", False), ("ONNX Runtime", True), ("ONNX Runtime", True)]
    assert checks[4]["note"] == "missed: 90 images/s against 100 images/s (1.11x off)"
    text = tables.render_markdown(result)
    assert "| measure | system | setting | ours, onnx | ours, torch | vs torch | specification's design | vs spec |" \
        in text
    assert "| single-image warm latency, median (p95) | lstm | beam 3 | 10.0 ms (12.0) | 40.0 ms (50.0) | **4.0x** | " \
           "spec-lstm: 100 ms (110) | **10.0x** |" in text
    assert text.count("| lstm |") == 3  # the torch figures are columns of our rows, not rows of their own
    assert "at most 2.0% of the CPU" in text and "Disturbed" not in text


def test_specification_baseline_decodes_the_asked_number_of_steps() -> None:
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    import baseline  # benchmarks/baseline.py
    torch.manual_seed(0)
    image = torch.randn(1, baseline.EMBED)
    for kind in ("lstm", "gpt"):
        decoder = baseline.DECODERS[kind]().eval()
        words = decoder.greedy(image, steps=4)
        assert len(words) == 4 and all(0 <= w < baseline.VOCAB for w in words)
        # Training-time forward pass and the re-fed greedy loop agree on the first word.
        logits = decoder(image, torch.tensor([[baseline.BOS]]))
        assert int(logits[0, -1].argmax()) == words[0]


def test_the_default_models_targets_are_checked_at_its_own_beam() -> None:
    """The concepts issue's targets: the default model as users get it (its stored beam, 5 for gpt), not beam 3."""
    def row(beam: int, **figures) -> dict:
        return {"system": "gpt", "kind": "gpt", "beam": beam, "backend": "onnx", **figures}

    result = {
        "default": "gpt", "backends": {"gpt": "onnx"},
        "targets": {"throughput_images_per_second": 30.0, "throughput_ratio": 4.0, "latency_median_ms": 80.0,
                    "cold_start_s": 3.0},
        "targets_default": {"backend": "onnx", "throughput_images_per_second": 10.0, "latency_median_ms": 250.0,
                            "beam": 5},
        "latency": [row(3, median_ms=30.0, p95_ms=40.0), row(5, median_ms=300.0, p95_ms=400.0)],
        "throughput": [row(3, images_per_second=80.0), row(5, images_per_second=60.0)],
        "cold_start": [], "training": [],
    }
    concepts = [c for c in tables.check_targets(result) if c["issue"] == "concepts"]
    assert [(c["target"], c["value"], c["met"]) for c in concepts] == [
        ("batch throughput, gpt beam 5 on onnx >= 10 images/s", 60.0, True),
        ("single-image warm latency, gpt beam 5 on onnx, median <= 250 ms", 300.0, False)]
