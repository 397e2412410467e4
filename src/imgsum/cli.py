"""The ``imgsum`` command line. Each subcommand imports its stack only when it runs."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from .api import CaptionResult

logger = logging.getLogger("imgsum")


class OutputError(OSError):
    """The results could not be written (a full disk, say): said once, clearly, instead of a traceback."""


def _caption_args(p: argparse.ArgumentParser) -> None:
    from . import decoding
    from .pretrained import BACKENDS

    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--model", default="default",
                   help="a shipped model (default, ensemble, gpt, lstm), or a checkpoint, exported model or ensemble")
    decoding.add_arguments(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--format", choices=("text", "jsonl", "csv", "parquet"), default=None,
                   help="text, jsonl or csv on stdout (default: text); with --engine ray, the part files' format: "
                        "jsonl (default) or parquet")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for the model (with --engine ray: per actor, default 1)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="onnx: ONNX Runtime (the default, except for a checkpoint file); "
                        "torch: PyTorch (pip install 'imgsum[train]')")
    p.add_argument("--workers", type=int, default=2, help="threads that decode images ahead of the model")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process, rows on stdout; ray: a Ray cluster's actors, rows into part files in "
                        "--out, resumable (pip install 'imgsum[scale]')")
    p.add_argument("--out", default=None, help="--engine ray: the output folder (made if absent; rerunning skips "
                                                "the images already in it)")
    p.add_argument("--ray-address", default=None,
                   help="--engine ray: the cluster (ray://HOST:10001, or auto for the one `ray start` made here); "
                        "default: start a local Ray instance")
    p.add_argument("--ray-workers", type=int, default=None, help="--engine ray: actors, each loads the model once "
                                                                 "(default: 2)")


def cmd_caption(args: argparse.Namespace) -> int:
    from .api import BackendUnavailable, CaptionResult, Captioner
    from .decoding import overrides_from
    from .images import find_images

    usage = _engine_usage_error(args)
    if usage:
        logger.error("%s", usage)
        return 2
    paths = find_images(args.paths)
    if not paths:
        logger.error("no images found in %s", " ".join(args.paths))
        return 2
    if args.engine == "ray":
        return _caption_on_ray(args, paths)
    try:
        captioner = Captioner.load(args.model, backend=args.backend, threads=args.threads)
    except BackendUnavailable as err:
        logger.error("%s", err)
        return 2
    write = _writer(args.format or "text")
    failed = 0
    progress = None
    if len(paths) > 4:
        from tqdm import tqdm

        progress = tqdm(total=len(paths), unit="img", desc="captioning", file=sys.stderr)

    def emit(r: CaptionResult) -> None:
        nonlocal failed
        failed += not r.ok
        write(r)
        if progress:
            progress.update()

    captioner.caption_batch(paths, batch_size=args.batch_size, workers=args.workers, on_result=emit,
                            **overrides_from(args))
    if progress:
        progress.close()
    if failed:
        logger.error("%d of %d images could not be captioned", failed, len(paths))
    return 1 if failed else 0


def _engine_usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the engine's options, if anything."""
    if args.engine == "ray":
        if not args.out:
            return "--engine ray writes its rows into part files: give the output folder with --out DIR"
        if args.format not in (None, "jsonl", "parquet"):
            return f"--engine ray writes jsonl or parquet part files, not {args.format}"
        return None
    given = [flag for flag, value in (("--out", args.out), ("--ray-address", args.ray_address),
                                      ("--ray-workers", args.ray_workers)) if value is not None]
    if given:
        return f"{', '.join(given)}: only with --engine ray (the local engine writes its rows to stdout)"
    if args.format == "parquet":
        return "--format parquet: only with --engine ray and --out (on stdout: text, jsonl or csv)"
    return None


def _caption_on_ray(args: argparse.Namespace, paths: list[str]) -> int:
    """``imgsum caption --engine ray``: the rows into part files in ``--out``; exit status 1 if any image failed."""
    from .decoding import overrides_from

    try:
        from ray.exceptions import RayError

        from .scale.ray_caption import caption_on_ray
    except ImportError as err:
        logger.error("--engine ray needs Ray Data and pyarrow (%s): pip install 'imgsum[scale]'", err)
        return 2
    try:
        summary = caption_on_ray(paths, args.out, model=args.model, address=args.ray_address,
                                 workers=args.ray_workers or 2, batch_size=args.batch_size, readers=args.workers,
                                 fmt=args.format or "jsonl", threads=args.threads or 1, backend=args.backend,
                                 progress=len(paths) > 4, quiet=not args.verbose, **overrides_from(args))
    except KeyboardInterrupt:
        logger.error("stopped: the rows made so far are in %s; the same command goes on from there", args.out)
        return 130
    except RayError as err:
        logger.error("the Ray job failed (the rows made so far are in %s): %s", args.out, err)
        return 1
    if summary.errors:
        logger.error("%d of %d images could not be captioned", summary.errors, summary.written)
    return 1 if summary.errors else 0


def _writer(fmt: str) -> Callable:
    """Writes one result to stdout and flushes it, so that a row is on disk as soon as it is made."""

    def guarded(fn: Callable, *args):
        try:
            return fn(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            raise OutputError(f"cannot write the results to {getattr(sys.stdout, 'name', 'stdout')}: "
                              f"{err.strerror or err}; the rows before this one were written") from err

    write = guarded(_rows, fmt, sys.stdout)  # csv writes its header here
    return lambda r: guarded(write, r)


def _concepts_cell(r: CaptionResult) -> str:
    """The concepts as one flat CSV cell: ``cat 0.81; tabby cat 0.42``."""
    return "; ".join(f"{c.word} {c.p:.2f}" for c in r.concepts)


def _rows(fmt: str, out) -> Callable[[CaptionResult], None]:
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(["image", "caption", "error", "concepts"])
        out.flush()
        return lambda r: (w.writerow([r.image, r.caption or "", r.error or "", _concepts_cell(r)]), out.flush())
    if fmt == "jsonl":
        def jsonl(r: CaptionResult) -> None:
            out.write(json.dumps(r.to_row()) + "\n")
            out.flush()
        return jsonl

    def text(r: CaptionResult) -> None:
        out.write(f"{r.image}\t{r.caption}\n" if r.ok else f"{r.image}\tERROR: {r.error}\n")
        out.flush()
    return text


def _model_row(name: str) -> dict:
    """A model's row for ``imgsum models``, from its metadata alone (no torch, no weights read)."""
    from pathlib import Path

    from .ensemble import is_ensemble
    from .model_info import read_checkpoint_info
    from .pretrained import BACKENDS, SHIPPED, is_checkpoint, is_shipped, resolve_model, shipped_path
    from .runtime import read_bundle

    manifest = shipped_path(name, "onnx") if is_shipped(name) else resolve_model(name)
    if is_ensemble(manifest):
        return _ensemble_row(name, manifest)
    forms: dict[str, Path] = {}
    if is_shipped(name):
        for backend in BACKENDS:
            try:
                forms[backend] = resolve_model(name, backend)
            except FileNotFoundError:
                pass
        if not forms:
            resolve_model(name, "onnx")  # raises, saying what is missing
    else:
        path = resolve_model(name)
        forms["torch" if is_checkpoint(path) else "onnx"] = path
    encoder_size, int8 = None, False
    if "onnx" in forms:
        bundle = read_bundle(forms["onnx"])
        info, path, size = bundle.info, bundle.manifest, bundle.total_bytes(shared=False)
        encoder_size, int8 = bundle.files.get(bundle.encoder, {}).get("bytes"), bundle.int8_encoder
    else:
        path = forms["torch"]
        info, size = read_checkpoint_info(path), path.stat().st_size
    return {"model": name, "default": name == next(iter(SHIPPED)), "decoder": info.decoder.kind,
            "encoder": info.encoder, "vocab": len(info.vocab), "path": str(path), "backends": sorted(forms),
            "size_mb": round(size / 1e6, 1), "encoder_mb": encoder_size and round(encoder_size / 1e6, 1),
            "encoder_int8": int8, "dev": info.metrics.get("dev", {}), "test": info.metrics.get("test", {})}


def _ensemble_row(name: str, manifest) -> dict:
    """:func:`_model_row` for an ensemble: the backends all its members have, their sizes added."""
    from .ensemble import ensemble_info, member_info, read_ensemble
    from .pretrained import BACKENDS, SHIPPED
    from .runtime import read_bundle

    spec = read_ensemble(manifest)
    forms = {}
    for backend in BACKENDS:
        try:
            forms[backend] = spec.member_paths(backend)
        except FileNotFoundError:
            pass
    if not forms:
        spec.member_paths("onnx")  # raises, saying what is missing
    backend, paths = next(iter(forms.items()))
    info = ensemble_info(spec, [member_info(p) for p in paths])
    if backend == "onnx":
        size = sum(read_bundle(p).total_bytes(shared=False) for p in paths)
    else:
        size = sum(p.stat().st_size for p in paths)
    return {"model": name, "default": name == next(iter(SHIPPED)), "decoder": info.decoder.kind,
            "encoder": info.encoder, "vocab": len(info.vocab), "path": str(manifest), "backends": sorted(forms),
            "size_mb": round(size / 1e6, 1), "encoder_mb": None, "members": dict(zip(spec.members, spec.weights)),
            "dev": {}, "test": {}}


def cmd_models(args: argparse.Namespace) -> int:
    from .pretrained import SHIPPED

    rows = []
    for name in [*SHIPPED, *args.checkpoints]:
        try:
            rows.append(_model_row(name))
        except (FileNotFoundError, ValueError, OSError) as err:
            rows.append({"model": name, "error": str(err)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<10} ERROR: {r['error']}")
            continue
        dev = r["dev"]
        metrics = "  ".join(f"{k.removeprefix('dev_')} {v:.3f}" for k, v in dev.items() if isinstance(v, float))
        flag = " (default)" if r["default"] else ""
        shared = f" (+ {r['encoder_mb']} MB encoder, shared)" if r["encoder_mb"] else ""
        if r.get("encoder_int8"):
            shared = f" (+ {r['encoder_mb']} MB int8 encoder on onnx)"
        second = f"dev: {metrics}"
        if "members" in r:
            second = "members: " + ", ".join(f"{m} (weight {w:.2f})" for m, w in r["members"].items())
        decoders = "decoders" if "+" in r["decoder"] else "decoder"
        print(f"{r['model']}{flag}: {r['decoder']} {decoders}, {r['encoder']} encoder, {r['vocab']} words, "
              f"{r['size_mb']} MB{shared}, backends: {', '.join(r['backends'])}\n    {second}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .pretrained import resolve_model

    paths = [resolve_model(c, "torch") for c in args.checkpoints]  # fails before any work if one is missing
    if args.name and len(paths) > 1:
        logger.error("--name names one model; give one checkpoint with it")
        return 2
    try:
        from .export import export_checkpoint
    except ImportError as err:
        logger.error("export needs PyTorch and onnx (%s): pip install 'imgsum[train]'", err)
        return 2
    photos = []
    if args.int8_encoder:
        from .quantize import calibration_photos, quantize_bundle

        photos = calibration_photos(args.int8_encoder, args.calibration_photos)
    for path in paths:
        bundle = export_checkpoint(path, args.out, name=args.name, verify=not args.no_verify)
        if photos:
            bundle = quantize_bundle(bundle, photos)
        print(f"{bundle.manifest}\t{bundle.total_bytes(shared=False) / 1e6:.1f} MB "
              f"(+ {bundle.encoder}: {(bundle.total_bytes() - bundle.total_bytes(shared=False)) / 1e6:.1f} MB)")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from .decoding import overrides_from
    from .ensemble import make_ensemble
    from .pretrained import resolve_model

    members = [resolve_model(m, "torch") for m in args.members]
    spec = make_ensemble(members, args.weights, args.out, args.name, overrides_from(args))
    print(f"{spec.manifest}\t{' + '.join(f'{w:.2f} {m}' for m, w in zip(spec.members, spec.weights))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .decoding import add_arguments as add_decoding_arguments

    parser = argparse.ArgumentParser(prog="imgsum", description="Caption photos with one English sentence.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("caption", help="caption images")
    _caption_args(p)
    p.set_defaults(func=cmd_caption)
    p = sub.add_parser("models", help="list the shipped models (and given checkpoints) with their dev metrics")
    p.add_argument("checkpoints", nargs="*", metavar="MODEL", help="checkpoint files or exported models to list too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("export", help="export checkpoints to ONNX files that caption without torch (ONNX Runtime)")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="checkpoint files, or shipped model names")
    p.add_argument("--out", required=True, help="folder for the ONNX files and their manifests")
    p.add_argument("--name", default=None, help="the exported model's name (default: the checkpoint's file name)")
    p.add_argument("--no-verify", action="store_true", help="skip checking the ONNX outputs against torch's")
    p.add_argument("--int8-encoder", metavar="PHOTOS", default=None,
                   help="also quantise the encoder to int8 for these models, calibrated on PHOTOS: a folder, or a "
                        "caption file (its training split); the float encoder stays beside it")
    p.add_argument("--calibration-photos", type=int, default=64, metavar="N",
                   help="how many of PHOTOS calibrate the int8 encoder (the first N by name; default 64)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("ensemble", help="write an ensemble: trained decoders that caption as one model")
    p.add_argument("members", nargs="+", metavar="MODEL",
                   help="checkpoints or exported models (each found by its path without suffix), or shipped names; "
                        "they must share the encoder, the vocabulary and the concept table")
    p.add_argument("--weights", type=float, nargs="+", default=None, help="one per member (default: equal)")
    p.add_argument("--out", required=True, help="the folder of the manifest (members are named relative to it)")
    p.add_argument("--name", default="ensemble", help="the ensemble's name: its manifest is NAME.json")
    add_decoding_arguments(p)
    p.set_defaults(func=cmd_ensemble)
    # Each tool registers its own arguments; its heavy imports happen only in ``run``.
    from .eval import cli as eval_cli
    from .serve import cli as serve_cli
    from .train import cli as train_cli

    for name, module, help_text in (("train", train_cli, "train a captioner on caption data"),
                                    ("eval", eval_cli, "score a model with the coco-caption metrics and write a report"),
                                    ("serve", serve_cli, "run the web app and REST API")):
        p = sub.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from .images import ImageError

    try:
        return args.func(args)
    except (FileNotFoundError, ImageError, ValueError) as err:
        logger.error("%s", err)
        return 2
    except OutputError as err:
        logger.error("%s", err)
        return 1
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
