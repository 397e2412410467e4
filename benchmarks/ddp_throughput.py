"""Training throughput with DDP: captions per second with 1 and 2 processes, in the same run.

Each measurement is a short ``torchrun --standalone --nproc-per-node N -m imgsum train`` of the shipped
``gpt`` configuration (its model, its Flickr8k + Flickr30k text mix, its per-process batch) on the cached
Lite0 features, cut to ``--images`` training images; the figure is the run's own
``train_captions_per_second`` (image and text-only captions, all processes together, training steps only,
not validation). The machine's cores are shared out: each process gets cores / N threads.

    python benchmarks/ddp_throughput.py [--images 640] [--processes 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from data_paths import FLICKR8K_CAPTIONS, FLICKR30K_CAPTIONS, ROOT
from harness import ForeignLoad

OUT = ROOT / "benchmarks" / "results" / "scale"


def measure(processes: int, images: int, threads: int, work: Path) -> dict:
    out = work / f"ddp-{processes}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
           "-m", "imgsum", "train", "--config", str(ROOT / "configs" / "gpt.toml"), str(FLICKR8K_CAPTIONS),
           "--text", str(FLICKR30K_CAPTIONS), "--out", str(out), "--epochs", "1", "--scst-epochs", "0",
           "--epoch-images", str(images), "--val-images", "8", "--threads", str(threads)]
    with ForeignLoad() as load:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    return {"processes": processes, "threads_each": threads, "images": images,
            "captions_per_second": round(row["train_captions_per_second"], 1),
            "other_load": round(load.share, 3) if load.share is not None else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=640, help="training images per measurement")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    from imgsum.eval.machine import machine_info, utc_now

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, args.images, max(1, cores // n), Path(tmp)) for n in args.processes]
    base = rows[0]["captions_per_second"]
    for r in rows:
        r["vs_first"] = round(r["captions_per_second"] / base, 2)
    result = {"date": utc_now(), "machine": machine_info(), "command": "python benchmarks/ddp_throughput.py "
              + " ".join(argv if argv is not None else sys.argv[1:]), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ddp.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| processes | threads each | training images | captions/s | vs 1 process | other load |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['processes']} | {r['threads_each']} | {r['images']} | {r['captions_per_second']} | "
              f"{r['vs_first']}x | {r['other_load']} |" for r in rows]
    (args.out / "ddp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
