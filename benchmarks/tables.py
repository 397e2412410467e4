"""Ratios to the baseline, target checks, and the Markdown table, from a ``benchmarks.json`` result.

Used by ``run_all.py`` and by ``scripts/update_readme.py`` (the README's Speed section).
Every ratio is a speed-up over the specification's design with the same kind of decoder, measured in
the same run: higher is better (for memory, ours as a fraction of its).
"""

from __future__ import annotations

SECTION_KEYS = {"latency": "median_ms", "throughput": "images_per_second", "cold_start": "first_output_s",
                "training": "captions_per_second"}
LOWER_IS_BETTER = {"latency", "cold_start"}
#: A measurement during which other processes used more than this share of the CPU is marked disturbed.
FOREIGN_WARN = 0.05


def _spec(entries: list[dict], kind: str) -> dict | None:
    return next((e for e in entries if e.get("baseline") and e.get("kind") == kind), None)


def _speedup(section: str, ours: float, spec: float) -> float:
    if section in LOWER_IS_BETTER:
        return spec / ours if ours else float("inf")
    return ours / spec if spec else float("inf")


def ratios(result: dict) -> list[dict]:
    """Adds ``vs_spec`` (speed-up) and ``spec`` (its system) to each of our entries; returns them all."""
    rows = []
    for section, key in SECTION_KEYS.items():
        entries = result.get(section, [])
        for e in entries:
            if e.get("baseline"):
                continue
            spec = _spec(entries, e["kind"])
            if spec is None:
                continue
            e["spec"] = spec["system"]
            e["vs_spec"] = _speedup(section, e[key], spec[key])
            if section == "cold_start":
                e["rss_vs_spec"] = e["peak_rss_mib"] / spec["peak_rss_mib"]
            rows.append({"section": section, "system": e["system"], "beam": e.get("beam"), "spec": spec["system"],
                         "vs_spec": e["vs_spec"]})
    return rows


def _default(entries: list[dict], system: str, **match) -> dict | None:
    return next((e for e in entries if e["system"] == system and all(e.get(k) == v for k, v in match.items())), None)


def check_targets(result: dict) -> list[dict]:
    """The issue's targets for the default model, each with its value, whether it is met and by how much."""
    t, d = result["targets"], result["default"]
    checks = []

    def add(name: str, target: float, value: float | None, higher_better: bool, unit: str) -> None:
        if value is None:
            checks.append({"target": name, "value": None, "met": None, "note": "not measured"})
            return
        met = value >= target if higher_better else value <= target
        gap = (target / value if higher_better else value / target) if value else float("inf")
        sep = "" if unit == "x" else " "
        note = "met" if met else f"missed: {value:.3g}{sep}{unit} against {target:g}{sep}{unit} ({gap:.2f}x off)"
        checks.append({"target": name, "value": value, "met": met, "note": note})

    thr = _default(result.get("throughput", []), d, beam=3)
    add(f"batch throughput, {d} beam 3 >= {t['throughput_images_per_second']:g} images/s",
        t["throughput_images_per_second"], thr and thr["images_per_second"], True, "images/s")
    if thr and "vs_spec" in thr:
        add(f"batch throughput >= {t['throughput_ratio']:g}x the specification's design ({thr['spec']})",
            t["throughput_ratio"], thr["vs_spec"], True, "x")
        specs = [e for e in result["throughput"] if e.get("baseline")]
        fastest = max(specs, key=lambda e: e["images_per_second"])
        if fastest["system"] != thr["spec"]:
            add(f"batch throughput >= {t['throughput_ratio']:g}x the faster specification decoder "
                f"({fastest['system']})",
                t["throughput_ratio"], thr["images_per_second"] / fastest["images_per_second"], True, "x")
    lat = _default(result.get("latency", []), d, beam=3)
    add(f"single-image warm latency, {d} beam 3, median <= {t['latency_median_ms']:g} ms",
        t["latency_median_ms"], lat and lat["median_ms"], False, "ms")
    cold = _default(result.get("cold_start", []), d)
    add(f"cold start to first caption, {d} <= {t['cold_start_s']:g} s", t["cold_start_s"],
        cold and cold["first_output_s"], False, "s")
    return checks


def _mark(e: dict | None) -> str:
    """A dagger after a figure measured while other processes took more than FOREIGN_WARN of the CPU."""
    share = (e or {}).get("foreign_cpu")
    return "†" if share is not None and share > FOREIGN_WARN else ""


def _disturbed(result: dict) -> list[str]:
    return [f"{section} {e['system']}{' beam ' + str(e['beam']) if section in ('latency', 'throughput') else ''} "
            f"({100 * e['foreign_cpu']:.0f}%)" for section in SECTION_KEYS for e in result.get(section, []) if _mark(e)]


def _ratio(e: dict) -> str:
    return f"**{e['vs_spec']:.1f}x**" if "vs_spec" in e else ""


def _setting(e: dict) -> str:
    return "greedy" if e.get("beam") == 1 else f"beam {e.get('beam')}"


def render_markdown(result: dict, heading: str = "") -> str:
    """The results as Markdown: a line on when and where, one table of measures, the target checks."""
    m = result["machine"]
    base = result.get("baseline", {})
    lines = []
    if heading:
        lines += [heading, ""]
    lines += [
        f"Measured {result['date']} on {m['cpu']}, {m['cores']} cores ({m.get('torch_threads')} torch threads), "
        f"{m.get('memory_gib')} GiB, torch {m.get('torch')}; backend `{result['backend']}`; default model "
        f"`{result['default']}`. Baseline, in the same run: the specification's design ({base.get('design', '')}), "
        f"{base.get('steps')} decoding steps ({base.get('steps_from', '')}). "
        "Ratio: speed-up over the specification's design with the same kind of decoder (higher is better).",
        "",
        "| measure | system | setting | ours | specification's design | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    by_system = {}
    for section in SECTION_KEYS:
        for e in result.get(section, []):
            by_system[(section, e["system"])] = e

    def spec_of(section: str, e: dict) -> dict | None:
        return by_system.get((section, e.get("spec")))

    for e in result.get("latency", []):
        if e.get("baseline"):
            continue
        s = spec_of("latency", e)
        spec = f"{s['system']}: {s['median_ms']:.0f} ms ({s['p95_ms']:.0f}){_mark(s)}" if s else ""
        lines.append(f"| single-image warm latency, median (p95) | {e['system']} | {_setting(e)} | "
                     f"{e['median_ms']:.1f} ms ({e['p95_ms']:.1f}){_mark(e)} | {spec} | {_ratio(e)} |")
    for e in result.get("throughput", []):
        if e.get("baseline"):
            continue
        s = spec_of("throughput", e)
        spec = (f"{s['system']}: {s['images_per_second']:.2f} images/s{_mark(s)} ({s['images']} images, one at "
                "a time)" if s else "")
        lines.append(f"| batch throughput, {e['images']} test images from disk | {e['system']} | {_setting(e)}, "
                     f"batch {e['batch_size']} | {e['images_per_second']:.1f} images/s{_mark(e)} | {spec} | "
                     f"{_ratio(e)} |")
    for e in result.get("cold_start", []):
        if e.get("baseline"):
            continue
        s = spec_of("cold_start", e)
        spec = f"{s['system']}: {s['first_output_s']:.2f} s ({s['peak_rss_mib']:.0f} MiB){_mark(s)}" if s else ""
        lines.append(f"| cold start to first caption (peak RSS) | {e['system']} | `imgsum caption`, model default "
                     f"beam | {e['first_output_s']:.2f} s ({e['peak_rss_mib']:.0f} MiB){_mark(e)} | {spec} | "
                     f"{_ratio(e)} |")
    for e in result.get("training", []):
        if e.get("baseline"):
            continue
        s = spec_of("training", e)
        spec = f"{s['system']}: {s['captions_per_second']:.0f} captions/s{_mark(s)}" if s else ""
        lines.append(f"| decoder training on cached features | {e['system']} | {e['captions_per_step']} captions x "
                     f"{e['words']} words per step | {e['captions_per_second']:.0f} captions/s{_mark(e)} | {spec} | "
                     f"{_ratio(e)} |")
    disturbed = _disturbed(result)
    if disturbed:
        lines += ["", f"† Disturbed: other processes used more than {100 * FOREIGN_WARN:.0f}% of the CPU while these "
                  "were measured: " + "; ".join(disturbed) + ". Rerun on an idle machine."]
    bd = {k: v for k, v in (result.get("breakdown") or {}).items() if isinstance(v, dict)}
    if bd:
        lines += ["", "Where the time goes (default model, beam 3, milliseconds per image): " + "; ".join(
            f"{name} (batch {b['batch_size']}): read+preprocess {b['read_preprocess_ms']:.1f}, encoder "
            f"{b['encoder_ms']:.1f}, decoder {b['decoder_ms']:.1f}" for name, b in bd.items())]
    checks = result.get("target_checks") or []
    if checks:
        lines += ["", "| target | measured | |", "| --- | --- | --- |"]
        for c in checks:
            value = "" if c["value"] is None else f"{c['value']:.3g}"
            mark = {True: "met", False: "**missed**", None: "not measured"}[c["met"]]
            lines.append(f"| {c['target']} | {value} | {mark if c['met'] is not False else c['note']} |")
    return "\n".join(lines)
