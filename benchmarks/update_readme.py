"""Regenerates the README's Quality and Speed sections from the outputs of ``imgsum eval`` and the benchmarks.

    .venv/bin/python benchmarks/update_readme.py            # from benchmarks/results/ (see the defaults below)
    .venv/bin/python benchmarks/update_readme.py --check    # exit 1 if README.md is not what the outputs give

Each section lies between marker comments, ``<!-- quality:start -->`` / ``<!-- quality:end -->`` and
``<!-- speed:start -->`` / ``<!-- speed:end -->``; what is between them is replaced, the rest is kept.
A section whose inputs are absent is left as it is, with a warning. The Quality table is made here
(:func:`quality_markdown`), the Speed table by ``tables.py`` beside this file: README generation is
project tooling, not part of the installed package.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

import tables
from imgsum.eval.machine import machine_line
from imgsum.eval.metrics import ALL_METRICS

ROOT = Path(__file__).resolve().parents[1]

logger = logging.getLogger("update_readme")

EVAL_GLOB = "benchmarks/results/eval/*/metrics.json"
BENCH = "benchmarks/results/benchmarks.json"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with what lies between the ``name`` markers replaced by ``body``; ValueError if they are absent."""
    start, end = markers(name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"the README has no {start} ... {end} markers")
    return pattern.sub(lambda _: f"{start}\n{body.strip()}\n{end}", text, count=1)


def _order(results: list[dict]) -> list[dict]:
    """The default model first, then the other shipped ones in release order, then the rest by name."""
    try:
        from imgsum.pretrained import SHIPPED

        rank = {name: i for i, name in enumerate(SHIPPED)}
    except ImportError:
        rank = {}
    return sorted(results, key=lambda r: (rank.get(r["settings"]["label"], len(rank)), r["settings"]["label"]))


def _row(label: str, scores: dict, names: list[str]) -> str:
    return f"| {label} | " + " | ".join(f"{scores[m]:.3f}" if m in scores else "" for m in names) + " |"


def quality_markdown(results: list[dict], links: dict[str, str] | None = None) -> str:
    """The README's Quality section from ``imgsum eval`` results (``metrics.json``), the default model first.

    ``links``: label -> a relative link to that result's HTML report.
    """
    if not results:
        raise ValueError("no evaluation results")
    first = results[0]
    s, m = first["settings"], first["machine"]
    names = [n for n in ALL_METRICS if n in first["metrics"]]
    lines = [
        f"Flickr8k {s['split']} split ({s['images']:,} images), coco-caption protocol ({s['tokenizer'].upper()} "
        "tokenizer; BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D), from `imgsum eval` on "
        f"{first['date'][:10]} ({machine_line(m)}).",
        "",
        "| model | " + " | ".join(names) + " | SPICE |",
        "| --- " * (len(names) + 2) + "|",
    ]
    for r in results:
        rs = r["settings"]
        label = f"`{rs['label']}`, beam {rs['beam']}" if rs["beam"] > 1 else f"`{rs['label']}`, greedy"
        if rs.get("backend"):
            label += f" ({rs['backend']})"
        lines.append(_row(label, r["metrics"], names) + " n/a |")
    lines += _interval_lines(results, "CIDEr", f"CIDEr's 95% bootstrap interval over the {s['images']:,} photos")
    agreement = [(r, r["human_agreement"]) for r in results if "human" in r.get("human_agreement", {})]
    if agreement:
        n = agreement[0][1]["references"]
        lines += [
            "",
            f"Against {n} references instead of {n + 1} (each reference left out in turn, mean of {n + 1} folds), "
            "so that people and models are scored alike:",
            "",
            "| scored against the same references | " + " | ".join(names) + " |",
            "| --- " * (len(names) + 1) + "|",
            _row(f"people: each reference against the other {n}", agreement[0][1]["human"], names),
        ]
        lines += [_row(f"`{r['settings']['label']}`", a["model"], names) for r, a in agreement]
    lines += ["", first.get("spice", ""), ""]
    for r in results:
        st, rs = r["stats"], r["settings"]
        link = f" [Report]({links[rs['label']]})." if links and rs["label"] in links else ""
        lines.append(
            f"- `{rs['label']}`: captions of {st['length']['mean']:.1f} words on average (references "
            f"{st['reference_length']['mean']:.1f}); {st['distinct_captions']} distinct captions of {st['captions']} "
            f"({100 * st['distinct_captions_share']:.0f}%); {st['distinct_words']} distinct words (the references "
            f"use {st['reference_distinct_words']}); {100 * st['copied_from_training_share']:.0f}% copied verbatim "
            f"from a training caption.{link}")
    commands = [r["command"] for r in results if r.get("command")]
    if commands:
        lines += ["", "Made with:", "", "```bash", *commands, "```"]
    return "\n".join(lines)


def _interval_lines(results: list[dict], metric: str, what: str, percent: bool = False) -> list[str]:
    """A paragraph with each result's bootstrap interval of ``metric`` (``imgsum eval``'s ``intervals``), if any."""
    found = [(r["settings"]["label"], r["intervals"][metric]) for r in results if metric in r.get("intervals", {})]
    if not found:
        return []
    form = (lambda x: f"{100 * x:.1f}%") if percent else (lambda x: f"{x:.3f}")
    each = "; ".join(f"`{label}` {form(i['low'])} to {form(i['high'])}" for label, i in found)
    return ["", f"{what} (another sample of such photos could score anywhere in it): {each}. Whether one model beats "
            "another on the same photos: `python benchmarks/compare_evals.py RUN_A RUN_B` (paired bootstrap)."]


def subjects_markdown(results: list[dict]) -> str:
    """The share of captions that name their subject on a folder of ImageNet-named photos (``imgsum eval --subjects``)."""
    lines = ["Photos outside Flickr8k's world: `imagenet_dev`, 500 ImageNet photos, one per class; the share of captions "
             "that name their subject by the rule of `../shared/data/README.md`, beside the share whose most probable "
             "visual concept alone names it (what the classifier knew):", "",
             "| model | captions that name their subject | top concept names it | degenerate captions |",
             "| --- | --- | --- | --- |"]
    for r in results:
        m = r["metrics"]
        lines.append(f"| `{r['settings']['label']}` | {m['named']} of {m['scored']} ({100 * m['named_share']:.1f}%) | "
                     f"{100 * m['concept_named_share']:.1f}% | {m['degenerate']} |")
    lines += _interval_lines(results, "named_share", "The named share's 95% bootstrap interval over the photos",
                             percent=True)
    lines += ["", "Made with:", "", "```bash", *[r["command"] for r in results if r.get("command")], "```"]
    return "\n".join(lines)


def quality_section(paths: list[Path], readme: Path) -> str | None:
    results, links, subjects = [], {}, []
    for path in paths:
        result = json.loads(path.read_text())
        if result.get("kind") == "subjects":
            subjects.append(result)
            continue
        if result["settings"]["split"] != "test":
            logger.info("%s: %s split, not test; left out", path, result["settings"]["split"])
            continue
        results.append(result)
        report = path.parent / result.get("files", {}).get("report", "report.html")
        if report.is_file():
            links[result["settings"]["label"]] = os.path.relpath(report, readme.parent)
    if not results:
        return None
    sources = ", ".join(os.path.relpath(p, readme.parent) for p in paths)
    note = f"<!-- generated by benchmarks/update_readme.py from {sources}; edit those, not this -->"
    extra = "\n\n" + subjects_markdown(_order(subjects)) if subjects else ""
    return note + "\n\n" + quality_markdown(_order(results), links) + extra


def speed_section(path: Path, readme: Path) -> str | None:
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    note = (f"<!-- generated by benchmarks/update_readme.py from {os.path.relpath(path, readme.parent)}; "
            "edit that, not this -->")
    command = "Made with `.venv/bin/python benchmarks/run_all.py` (all the benchmarks, one command)."
    if result.get("compare_backend"):
        main = "/".join(sorted(set((result.get("backends") or {}).values()))) or result["backend"]
        command = ("Made with `.venv/bin/python benchmarks/run_all.py` (all the benchmarks, one command: ours on "
                   f"{main} and on {result['compare_backend']}, and the specification's design).")
    return f"{note}\n\n{tables.render_markdown(result)}\n\n{command}"


def update(readme: Path, eval_paths: list[Path], bench: Path) -> tuple[str, str]:
    """(old text, new text) of the README."""
    old = readme.read_text(encoding="utf-8")
    new = old
    for name, body in (("quality", quality_section(eval_paths, readme)), ("speed", speed_section(bench, readme))):
        if body is None:
            logger.warning("%s section left as it is: its inputs are absent", name)
            continue
        new = replace_section(new, name, body)
    return old, new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--eval", type=Path, nargs="*", help=f"imgsum eval metrics.json files (default: {EVAL_GLOB})")
    p.add_argument("--bench", type=Path, default=ROOT / BENCH, help=f"benchmark results (default: {BENCH})")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README is out of date")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    eval_paths = args.eval if args.eval is not None else sorted(ROOT.glob(EVAL_GLOB))
    try:
        old, new = update(args.readme, eval_paths, args.bench)
    except (OSError, ValueError) as err:
        logger.error("%s", err)
        return 2
    if args.check:
        if old != new:
            logger.error("%s is out of date: run benchmarks/update_readme.py", args.readme)
            return 1
        return 0
    if old != new:
        args.readme.write_text(new, encoding="utf-8")
        logger.info("updated %s", args.readme)
    else:
        logger.info("%s already up to date", args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
