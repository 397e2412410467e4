"""The evaluation report: one self-contained HTML file (thumbnails embedded as small JPEGs) to look at.

It shows the scores beside human agreement, caption statistics (the degenerate captions among them), a
fixed random sample of images with their references and our caption, and the best and the worst images
by per-image CIDEr. For ``imgsum eval --subjects``: the share of captions that name their subject, the
degenerate captions, and samples of the photos whose caption does and does not name it.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import random
from pathlib import Path

from ..files import write_text_atomic
from .machine import machine_line
from .metrics import ALL_METRICS

logger = logging.getLogger(__name__)

THUMBNAIL = 176  # pixels, longest side

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table.m{border-collapse:collapse} table.m td,table.m th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
table.m th:first-child,table.m td:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1em}
.card{display:flex;align-items:flex-start;gap:.7em;border:1px solid #ddd;border-radius:6px;padding:.6em;font-size:.85em}
.card img{width:176px;height:auto;flex:none;border-radius:4px}
.ours{font-weight:600;font-size:1.05em;margin:0 0 .3em} .score{color:#666}
.card ol{margin:.3em 0 0 1.2em;padding:0;color:#444} .note{color:#555;font-size:.9em}
.concepts{color:#446;margin:.2em 0} .yes{color:#080} .no{color:#b00} .card div{min-width:0;overflow-wrap:anywhere}
"""


def thumbnail_uri(path: str | Path, size: int = THUMBNAIL) -> str:
    """A ``data:`` URI of a small JPEG of the image; an empty string if it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=70, optimize=True)
    except OSError as err:
        logger.warning("no thumbnail for %s: %s", path, err)
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def _interval_note(result: dict) -> str:
    """The bootstrap intervals of ``result`` (:mod:`.bootstrap`), as a note; empty for results without them."""
    intervals = result.get("intervals", {})
    parts = [f"{html.escape(name)} {i['low']:.3f} to {i['high']:.3f}" for name, i in intervals.items()]
    if not parts:
        return ""
    first = next(iter(intervals.values()))
    return (f'<p class="note">{100 * first["level"]:.0f}% bootstrap interval over the {first["photos"]} photos '
            f'({first["samples"]} resamples): {"; ".join(parts)}. Another sample of photos like these could score '
            "anywhere in it.</p>")


def _metrics_table(result: dict) -> str:
    metrics = result["metrics"]
    names = [m for m in ALL_METRICS if m in metrics]
    agreement = result.get("human_agreement", {})
    rows = [("Model, against all references", metrics)]
    if "human" in agreement:
        n = agreement["references"]
        rows += [(f"Model, against {n} references (mean of {n + 1} folds)", agreement["model"]),
                 (f"Human: each reference against the other {n}", agreement["human"])]
    head = "".join(f"<th>{m}</th>" for m in names) + "<th>SPICE</th>"
    body = "".join(
        "<tr><td>" + html.escape(label) + "</td>" + "".join(f"<td>{_fmt(r.get(m, ''))}</td>" for m in names)
        + "<td>n/a</td></tr>" for label, r in rows
    )
    note = _interval_note(result) + f'<p class="note">SPICE: {html.escape(result.get("spice", ""))}</p>'
    if "skipped" in agreement:
        note += f'<p class="note">Human agreement not measured: {html.escape(agreement["skipped"])}</p>'
    return f'<table class="m"><tr><th></th>{head}</tr>{body}</table>{note}'


def _degenerate(stats: dict) -> str:
    """The degenerate captions: how many, and the first few (nothing for results made before they were counted)."""
    if "degenerate" not in stats:
        return ""
    listed = "".join(f"<li>{html.escape(r['caption'])} <span class='note'>({html.escape(r['image'])})</span></li>"
                     for r in stats["degenerate_examples"])
    return (f"<p>Degenerate captions (a word other than a, the, and, in, on, of, with, or a two- or three-word "
            f"sequence, three times): <b>{stats['degenerate']}</b> ({100 * stats['degenerate_share']:.1f}%)</p>"
            + (f"<ol>{listed}</ol>" if listed else ""))


def _stats(stats: dict) -> str:
    n = stats["captions"]
    length = stats["length"]
    items = [
        f"Caption length: mean {length['mean']:.1f} words (median {length['median']}, "
        f"{length['min']}–{length['max']});"
        f" references: mean {stats['reference_length']['mean']:.1f}",
        f"Distinct captions: {stats['distinct_captions']} of {n} ({100 * stats['distinct_captions_share']:.1f}%)",
        f"Distinct words used: {stats['distinct_words']} (references of these images: "
        f"{stats['reference_distinct_words']}; model vocabulary: {stats['model_vocabulary']})",
        f"Copied verbatim from a training caption: {stats['copied_from_training']} of {n} "
        f"({100 * stats['copied_from_training_share']:.1f}%)",
    ]
    hist = " ".join(f"{k}:{v}" for k, v in length["histogram"].items())
    items.append(f"Length histogram (words:captions): {html.escape(hist)}")
    frequent = "".join(f"<li>{html.escape(r['caption'])} — {r['count']}×</li>" for r in stats["most_frequent"])
    return ("<ul>" + "".join(f"<li>{i}</li>" for i in items) + f"</ul><p>Most frequent captions:</p><ol>{frequent}</ol>"
            + _degenerate(stats))


def _scored_card(row: dict) -> str:
    """Below a caption of the coco-caption evaluation: its per-image scores and its references."""
    refs = "".join(f"<li>{html.escape(r)}</li>" for r in row["references"])
    scores = " · ".join(f"{m} {row[m]:.2f}" for m in ("CIDEr", "BLEU-4", "METEOR") if m in row)
    return f'<span class="score">{html.escape(row["image"])} · {scores}</span><ol>{refs}</ol>'


def _subject_card(row: dict) -> str:
    """Below a caption of the subject evaluation: whether it names the subject, and the concepts."""
    named = {True: "<span class='yes'>names its subject</span>", False: "<span class='no'>does not name it</span>",
             None: "no synset in the name"}[row["named"]]
    concepts = ", ".join(f"{html.escape(c['word'])} {c['p']:.2f}" for c in row.get("concepts", []))
    return (f'<span class="score">{html.escape(row["image"])} · {named}</span>'
            f'<p class="concepts">{concepts or "(no concepts)"}</p>')


def _card(row: dict, image_dir: Path) -> str:
    uri = thumbnail_uri(image_dir / row["image"])
    img = f'<img src="{uri}" alt="{html.escape(row["image"])}">' if uri else ""
    below = _subject_card(row) if "named" in row else _scored_card(row)
    return (f'<div class="card">{img}<div><p class="ours">{html.escape(row["caption"]) or "<i>(empty)</i>"}</p>'
            f"{below}</div></div>")


def _cards(rows: list[dict], image_dir: Path) -> str:
    return '<div class="grid">' + "".join(_card(r, image_dir) for r in rows) + "</div>"


def pick_rows(rows: list[dict], sample: int = 12, extremes: int = 10, seed: int = 0) -> dict[str, list[dict]]:
    """A fixed random sample, and the best and worst rows by per-image CIDEr (ties broken by image name)."""
    ranked = sorted(rows, key=lambda r: (-r.get("CIDEr", 0.0), r["image"]))
    return {
        "sample": _sample(rows, sample, seed),
        "best": ranked[:extremes],
        "worst": ranked[::-1][:extremes],
    }


def _head(result: dict, title: str, data: str) -> list[str]:
    """The page's head, title, settings line (``data``: what was captioned) and machine line."""
    s = result["settings"]
    settings = (f"model <b>{html.escape(s['model'])}</b> ({html.escape(s['decoder'])} decoder, "
                f"{html.escape(s['encoder'])} encoder, {html.escape(s.get('backend', ''))} backend) · "
                f"{data} · beam {s['beam']}, max_len {s['max_len']}, length penalty {s['length_penalty']}")
    machine = f"{html.escape(result['date'])} · {html.escape(machine_line(result['machine']))}"
    timing = result.get("timing", {})
    speed = (f" · captioned in {timing['caption_seconds']:.1f} s ({timing['images_per_second']:.1f} images/s)"
             if timing else "")
    return [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>{settings}</p><p class='note'>{machine}{speed}</p>",
    ]


def _sample(rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    """A fixed random sample of ``n`` rows, in their order."""
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))]


def render_subjects_report(result: dict, sample: int = 12, extremes: int = 10) -> str:
    """The report of ``imgsum eval --subjects``: the share named, the degenerate captions, samples of both sides."""
    s, m = result["settings"], result["metrics"]
    title = f"imgsum eval: {s['label']} on {Path(s['subjects']).name}"
    share = "n/a" if m["named_share"] is None else f"{100 * m['named_share']:.1f}%"
    ceiling = "n/a" if m.get("concept_named_share") is None else f"{100 * m['concept_named_share']:.1f}%"
    rows, image_dir = result["rows"], Path(s["image_dir"])
    named = [r for r in rows if r["named"]]
    missed = [r for r in rows if r["named"] is False]
    parts = _head(result, title, f"{s['images']} photos of {html.escape(s['subjects'])}") + [
        "<h2>Subjects named</h2>",
        f"<table class='m'><tr><th>names its subject</th><th>its top concept names it</th><th>scored</th>"
        f"<th>no synset in the name</th><th>degenerate</th><th>captions</th></tr><tr><td>{m['named']} ({share})</td>"
        f"<td>{ceiling}</td><td>{m['scored']}</td><td>{m['no_synset']}</td><td>{m['degenerate']}</td>"
        f"<td>{m['captions']}</td></tr></table>",
        _interval_note(result),
        f"<p class='note'>{html.escape(result.get('rule', ''))}</p>",
        _degenerate(result["stats"]),
        f"<h2>A random sample of {min(sample, len(rows))} photos (seed 0)</h2>",
        _cards(_sample(rows, sample), image_dir),
        f"<h2>{min(extremes, len(missed))} of the {len(missed)} captions that do not name their subject (seed 0)</h2>",
        _cards(_sample(missed, extremes), image_dir),
        f"<h2>{min(extremes, len(named))} of the {len(named)} captions that name it (seed 0)</h2>",
        _cards(_sample(named, extremes), image_dir),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def render_report(result: dict, sample: int = 12, extremes: int = 10) -> str:
    s = result["settings"]
    image_dir = Path(s["image_dir"])
    picked = pick_rows(result["rows"], sample, extremes)
    title = f"imgsum eval: {s['label']} on {s['split']}"
    data = (f"{s['images']} {html.escape(s['split'])} images of {html.escape(s['data'])} · "
            f"{s['tokenizer'].upper()} tokenizer")
    parts = _head(result, title, data) + [
        "<h2>Scores (coco-caption: PTB tokenizer, BLEU, METEOR 1.5, ROUGE-L, CIDEr-D)</h2>"
        if s["tokenizer"] == "ptb" else "<h2>Scores (imgsum tokenizer: not the coco-caption protocol)</h2>",
        _metrics_table(result),
        "<h2>Captions</h2>", _stats(result["stats"]),
        f"<h2>A random sample of {len(picked['sample'])} images (seed 0)</h2>", _cards(picked["sample"], image_dir),
        f"<h2>Best {len(picked['best'])} by per-image CIDEr</h2>", _cards(picked["best"], image_dir),
        f"<h2>Worst {len(picked['worst'])} by per-image CIDEr</h2>", _cards(picked["worst"], image_dir),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def write_report(result: dict, path: Path, sample: int = 12, extremes: int = 10) -> Path:
    render = render_subjects_report if result.get("kind") == "subjects" else render_report
    write_text_atomic(path, render(result, sample, extremes))
    logger.info("report: %s", path)
    return path
