"""What a deeper ``gpt`` member would cost the default ensemble's batch speed, measured before training one.

The shipped ``gpt`` is given extra transformer blocks whose output projections (self-attention, cross-attention
and feed-forward) are zero: each extra block's residual adds nothing, so the model says the shipped captions with
the deeper model's arithmetic. Each deeper copy is exported to ONNX (``imgsum export``), joined to the shipped
``lstm`` at the default ensemble's settings (``imgsum ensemble``), and every ensemble, the shipped one first,
captions the same Flickr8k test photos in batch, in turns, ``--rounds`` times.

    .venv/bin/python benchmarks/deeper_gpt_cost.py          # writes results/deeper_gpt_cost.md and .json

Run it on an otherwise idle machine; compare only the ratios of one run. The captions of every ensemble must be
the shipped one's (the script checks it): otherwise the extra blocks were not idle and the timing is not a cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from data_paths import FLICKR8K_CAPTIONS
from harness import rate, timed
from imgsum.api import Captioner
from imgsum.checkpoint import load_checkpoint, save_checkpoint
from imgsum.ensemble import make_ensemble, read_ensemble
from imgsum.eval.machine import machine_info, machine_line, utc_now
from imgsum.export import export_checkpoint
from imgsum.pretrained import shipped_path
from run_all import test_images

HERE = Path(__file__).resolve().parent
#: The extra blocks' output layers: zero, the block is the identity on the residual stream.
OUTPUTS = (".proj.", ".cross_proj.", ".mlp.2.")


def deeper_gpt(layers: int, out: Path) -> Path:
    """The shipped ``gpt`` with ``layers`` blocks, the extra ones copies of its last with zero outputs."""
    state, info = load_checkpoint(shipped_path("gpt"))
    last = info.decoder.layers - 1
    for i in range(info.decoder.layers, layers):
        for key in [k for k in state if k.startswith(f"blocks.{last}.")]:
            value = state[key].clone()
            if any(o in key for o in OUTPUTS):
                value.zero_()
            state[key.replace(f"blocks.{last}.", f"blocks.{i}.", 1)] = value
    path = out / f"gpt{layers}.safetensors"
    save_checkpoint(path, state, replace(info, decoder=replace(info.decoder, layers=layers)))
    return path


def ensemble_of(layers: int, out: Path) -> Path:
    """An ensemble manifest like the shipped default's (its other members, weights and decoding), its ``gpt``
    member ``layers`` deep."""
    name = f"gpt{layers}"
    export_checkpoint(deeper_gpt(layers, out), out, name=name)
    shipped = read_ensemble(shipped_path("ensemble"))
    members = [out / f"{name}.json", *shipped.member_paths("onnx")[1:]]
    return make_ensemble(members, shipped.weights, out, f"ensemble-{name}", shipped.decoding.to_dict()).manifest


def run(args: argparse.Namespace) -> dict:
    paths = test_images(str(FLICKR8K_CAPTIONS), args.images)
    with tempfile.TemporaryDirectory() as tmp:
        models = {3: "ensemble", **{n: str(ensemble_of(n, Path(tmp))) for n in args.layers}}
        captioners = {n: Captioner.load(m) for n, m in models.items()}
        speeds: dict[int, list[float]] = {n: [] for n in models}
        captions: dict[int, list[str]] = {}
        for _ in range(args.rounds):
            for n, cap in captioners.items():
                seconds, results = timed(lambda: cap.caption_batch(paths, batch_size=args.batch_size))
                speeds[n].append(rate(len(paths), seconds))
                captions[n] = [r.caption for r in results]
    base = statistics.median(speeds[3])
    rows = [{"layers": n, "images_per_second": s, "median": statistics.median(s),
             "ratio": statistics.median(s) / base, "same_captions": captions[n] == captions[3]}
            for n, s in speeds.items()]
    return {"date": utc_now(), "machine": machine_info(), "images": len(paths), "batch_size": args.batch_size,
            "rounds": args.rounds, "rows": rows}


def table(r: dict) -> str:
    lines = [f"# A deeper `gpt` member's cost to the default's batch speed ({r['date'][:10]})", "",
             f"{machine_line(r['machine'])}; {r['images']} Flickr8k test photos in batch ({r['batch_size']} a batch), "
             f"each ensemble {r['rounds']} times in turns; `python benchmarks/deeper_gpt_cost.py`.", "",
             "| `gpt` blocks | photos a second (each round) | median | against 3 blocks | the shipped captions |",
             "| --- | --- | --- | --- | --- |"]
    for row in r["rows"]:
        runs = ", ".join(f"{s:.2f}" for s in row["images_per_second"])
        lines.append(f"| {row['layers']}{' (shipped)' if row['layers'] == 3 else ''} | {runs} | {row['median']:.2f} | "
                     f"{row['ratio']:.2f} | {'yes' if row['same_captions'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, nargs="+", default=[4, 5], help="depths to cost (default: 4 5)")
    p.add_argument("--images", type=int, default=300, help="test photos a round (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "results" / "deeper_gpt_cost")
    args = p.parse_args()
    result = run(args)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    args.out.with_suffix(".md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
