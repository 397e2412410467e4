"""Sets a checkpoint's decoding defaults, chosen on the dev sets after training (docs/experiments.md).

    python scripts/set_decoding.py runs/gpt/best.safetensors --out gpt.safetensors --concept-boost 2 \
        --length-penalty 1 --concepts-once yes
    imgsum export gpt.safetensors --out src/imgsum/pretrained --name gpt     # the ONNX form carries them too

The weights are copied unchanged; the metadata's ``decoding`` takes the given options (the others keep the
checkpoint's), and ``training["decoding_set"]`` records what it was before.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from imgsum import decoding
from imgsum.checkpoint import load_checkpoint, save_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="the new checkpoint file (may be the same path)")
    decoding.add_arguments(p)
    args = p.parse_args(argv)
    overrides = decoding.overrides_from(args)
    if not overrides:
        p.error("give at least one decoding option")
    state, info = load_checkpoint(args.checkpoint)
    new = info.decoding.with_overrides(**overrides)
    training = {**info.training, "decoding_set": {"before": info.decoding.to_dict(), "changed": overrides}}
    save_checkpoint(args.out, state, replace(info, decoding=new, training=training))
    print(f"{args.out}: {new.to_dict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
