"""Whether one `imgsum eval` run beats another, or the difference is the sample's: paired bootstrap over photos.

Each run is an `imgsum eval --out` folder (its captions.jsonl holds one row per photo: the photo's own CIDEr-D for
a Flickr8k split, whether the caption names its subject for `--subjects`). The first run is the baseline; every
other is compared with it on the photos both captioned (imgsum.eval.bootstrap):

    python benchmarks/compare_evals.py benchmarks/results/eval/ensemble-test benchmarks/results/eval/gpt-test
    python benchmarks/compare_evals.py BASE_DEV OTHER_DEV --out benchmarks/results/compare.md

CIDEr-D's document frequencies come from the references alone, so two runs on one split score each photo on the
same scale. Both runs must have scored the split with the same tokenizer (PTB or imgsum's `--no-ptb`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imgsum.eval.bootstrap import LEVEL, SAMPLES, interval, paired
from imgsum.eval.evaluate import read_outputs


def read_run(folder: Path) -> tuple[str, dict[str, float], str]:
    """A run's per-photo figure by image, the figure's name, and the tokenizer ("subjects" for those runs)."""
    try:
        result = read_outputs(folder)
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from err
    rows = result["rows"]
    if result.get("kind") == "subjects":
        return "named", {r["image"]: float(r["named"]) for r in rows if r.get("named") is not None}, "subjects"
    if not rows or "CIDEr" not in rows[0]:
        raise SystemExit(f"{folder}/captions.jsonl has no per-photo CIDEr: run it again with this imgsum eval")
    return "CIDEr", {r["image"]: float(r["CIDEr"]) for r in rows}, result["settings"]["tokenizer"]


def compare(folders: list[Path], samples: int = SAMPLES, seed: int = 0) -> str:
    """A Markdown table: each run's figure with its interval, and each run's gain on the first with its interval."""
    runs = [read_run(f) for f in folders]
    name, base, scale = runs[0]
    for folder, (other, _, other_scale) in zip(folders[1:], runs[1:]):
        if (other, other_scale) != (name, scale):
            raise SystemExit(f"{folder} is scored as {other} ({other_scale}), {folders[0]} as {name} ({scale}): "
                             "not comparable")
    pct = f"{100 * LEVEL:.0f}%"
    lines = [f"| run | photos | {name} | {pct} interval | gain on the first | {pct} interval of the gain "
             "| resamples in which it scores more |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for i, (folder, (_, values, _)) in enumerate(zip(folders, runs)):
        alone = interval(list(values.values()), samples=samples, seed=seed)
        cells = [f"`{folder}`", str(alone["photos"]), f"{alone['mean']:.3f}",
                 f"{alone['low']:.3f} to {alone['high']:.3f}"]
        if i == 0:
            cells += ["(baseline)", "", ""]
        else:
            common = sorted(set(base) & set(values))
            gain = paired([base[k] for k in common], [values[k] for k in common], samples=samples, seed=seed)
            cells += [f"{gain['mean']:+.3f} ({len(common)} photos)", f"{gain['low']:+.3f} to {gain['high']:+.3f}",
                      f"{100 * gain['better']:.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="imgsum eval --out folders; the first is the baseline")
    parser.add_argument("--samples", type=int, default=SAMPLES, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    table = compare(args.runs, args.samples, args.seed)
    print(table, end="")
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
