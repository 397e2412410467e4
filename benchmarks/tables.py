"""Ratios to the baseline and to the other backend, target checks, and the Markdown table, from a
``benchmarks.json`` result.

Used by ``run_all.py`` and by ``update_readme.py`` (the README's Speed section).
Every ratio is a speed-up, measured in the same run, higher is better (for memory, ours as a fraction
of the other's): ``vs_spec`` over the specification's design with the same kind of decoder;
``vs_compare`` over the same model and setting on the comparison backend (entries marked
``"comparison": true``, e.g. the torch path beside our ONNX Runtime figures).
"""

from __future__ import annotations

SECTION_KEYS = {"latency": "median_ms", "throughput": "images_per_second", "cold_start": "first_output_s",
                "training": "captions_per_second"}
LOWER_IS_BETTER = {"latency", "cold_start"}
#: A measurement during which other processes used more than this share of the CPU is marked disturbed.
FOREIGN_WARN = 0.05


def _spec(entries: list[dict], kind: str) -> dict | None:
    """The baseline with our entry's kind of decoder; an ensemble's (``gpt+lstm``) is its first member's."""
    kind = kind.split("+")[0]
    return next((e for e in entries if e.get("baseline") and e.get("kind") == kind), None)


def _compared(entries: list[dict], e: dict) -> dict | None:
    """The comparison backend's entry for the same system and setting as our entry ``e``."""
    return next((c for c in entries if c.get("comparison") and c["system"] == e["system"]
                 and c.get("beam") == e.get("beam") and c.get("batch_size") == e.get("batch_size")), None)


def _ours(e: dict) -> bool:
    """One of our main entries: neither the baseline nor the comparison backend."""
    return not e.get("baseline") and not e.get("comparison")


def _speedup(section: str, ours: float, spec: float) -> float:
    if section in LOWER_IS_BETTER:
        return spec / ours if ours else float("inf")
    return ours / spec if spec else float("inf")


def ratios(result: dict) -> list[dict]:
    """Adds ``vs_spec`` (speed-up) and ``spec`` (its system) to each of our entries (the comparison
    backend's too), and ``vs_compare`` and ``compare_backend`` to each main entry that has a
    comparison; returns them all, one row per entry."""
    rows = []
    for section, key in SECTION_KEYS.items():
        entries = result.get(section, [])
        for e in entries:
            if e.get("baseline"):
                continue
            row = {"section": section, "system": e["system"], "beam": e.get("beam")}
            if e.get("backend"):
                row["backend"] = e["backend"]
            spec = _spec(entries, e["kind"])
            if spec is not None:
                e["spec"] = spec["system"]
                e["vs_spec"] = _speedup(section, e[key], spec[key])
                if section == "cold_start":
                    e["rss_vs_spec"] = e["peak_rss_mib"] / spec["peak_rss_mib"]
                row |= {"spec": spec["system"], "vs_spec": e["vs_spec"]}
            other = _compared(entries, e) if _ours(e) else None
            if other is not None:
                e["compare_backend"] = other.get("backend")
                e["vs_compare"] = _speedup(section, e[key], other[key])
                if section == "cold_start":
                    e["rss_vs_compare"] = e["peak_rss_mib"] / other["peak_rss_mib"]
                row |= {"compare_backend": e["compare_backend"], "vs_compare": e["vs_compare"]}
            if "vs_spec" in row or "vs_compare" in row:
                rows.append(row)
    return rows


def _default(entries: list[dict], system: str, **match) -> dict | None:
    """Our main entry (not the baseline's, not the comparison backend's) for ``system`` matching ``match``."""
    return next((e for e in entries if _ours(e) and e["system"] == system
                 and all(e.get(k) == v for k, v in match.items())), None)


def _on_backend(result: dict, section: str, system: str, backend: str, **match) -> dict | None:
    """Our entry (main or comparison) for ``system`` measured on ``backend``; an entry without its own
    ``backend`` (older results) is on the one ``result["backends"]`` gives its system."""
    for e in result.get(section, []):
        if e.get("baseline") or e["system"] != system or any(e.get(k) != v for k, v in match.items()):
            continue
        if e.get("backend", (result.get("backends") or {}).get(system)) == backend:
            return e
    return None


def check_targets(result: dict) -> list[dict]:
    """The issues' targets for the default model, each with its value, whether it is met and by how much.

    ``targets``: the evaluation issue's, on the main backend (what users get). ``targets_onnx`` and
    ``targets_default`` (when present): the fast model's and the default model's, on their ``backend``, for
    their ``model`` (the default when not named).
    """
    t, d = result["targets"], result["default"]
    checks = []
    issue = "evaluation"

    def add(name: str, target: float, value: float | None, higher_better: bool, unit: str) -> None:
        if value is None:
            checks.append({"issue": issue, "target": name, "value": None, "met": None, "note": "not measured"})
            return
        met = value >= target if higher_better else value <= target
        gap = (target / value if higher_better else value / target) if value else float("inf")
        sep = "" if unit == "x" else " "
        note = "met" if met else f"missed: {value:.3g}{sep}{unit} against {target:g}{sep}{unit} ({gap:.2f}x off)"
        checks.append({"issue": issue, "target": name, "value": value, "met": met, "note": note})

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

    for issue, o in (("ONNX Runtime", result.get("targets_onnx")), ("concepts", result.get("targets_default"))):
        if not o:
            continue
        b, m, beam = o.get("backend", "onnx"), o.get("model", d), o.get("beam", 3)
        thr = _on_backend(result, "throughput", m, b, beam=beam)
        add(f"batch throughput, {m} beam {beam} on {b} >= {o['throughput_images_per_second']:g} images/s",
            o["throughput_images_per_second"], thr and thr["images_per_second"], True, "images/s")
        lat = _on_backend(result, "latency", m, b, beam=beam)
        add(f"single-image warm latency, {m} beam {beam} on {b}, median <= {o['latency_median_ms']:g} ms",
            o["latency_median_ms"], lat and lat["median_ms"], False, "ms")
        if "cold_start_s" in o:
            cold = _on_backend(result, "cold_start", m, b)
            add(f"cold start to first caption, {m} on {b} <= {o['cold_start_s']:g} s", o["cold_start_s"],
                cold and cold["first_output_s"], False, "s")
    return checks


def _mark(e: dict | None) -> str:
    """A dagger after a figure measured while other processes took more than FOREIGN_WARN of the CPU."""
    share = (e or {}).get("foreign_cpu")
    return "†" if share is not None and share > FOREIGN_WARN else ""


def _label(section: str, e: dict) -> str:
    beam = f" beam {e['beam']}" if section in ("latency", "throughput") else ""
    on = f" on {e['backend']}" if e.get("comparison") else ""
    return f"{section} {e['system']}{beam}{on}"


def _disturbed(result: dict) -> list[str]:
    return [f"{_label(section, e)} ({100 * e['foreign_cpu']:.0f}%)"
            for section in SECTION_KEYS for e in result.get(section, []) if _mark(e)]


def _most_foreign(result: dict) -> float | None:
    """The largest share of the CPU other processes took during any one measurement (None: not measured)."""
    shares = [e.get("foreign_cpu") for section in SECTION_KEYS for e in result.get(section, [])]
    shares += [b.get("foreign_cpu") for b in (result.get("breakdown"), result.get("breakdown_compare")) if b]
    shares = [s for s in shares if s is not None]
    return max(shares) if shares else None


def _ratio(e: dict, key: str = "vs_spec") -> str:
    return f"**{e[key]:.1f}x**" if key in e else ""


def _setting(e: dict) -> str:
    return "greedy" if e.get("beam") == 1 else f"beam {e.get('beam')}"


def _figure(section: str, e: dict) -> str:
    """One measurement as the table shows it, with its dagger when disturbed."""
    text = {"latency": lambda: f"{e['median_ms']:.1f} ms ({e['p95_ms']:.1f})",
            "throughput": lambda: f"{e['images_per_second']:.1f} images/s",
            "cold_start": lambda: f"{e['first_output_s']:.2f} s ({e['peak_rss_mib']:.0f} MiB)",
            "training": lambda: f"{e['captions_per_second']:.0f} captions/s"}[section]()
    return text + _mark(e)


def _spec_figure(section: str, s: dict | None) -> str:
    if s is None:
        return ""
    text = {"latency": lambda: f"{s['median_ms']:.0f} ms ({s['p95_ms']:.0f}){_mark(s)}",
            "throughput": lambda: f"{s['images_per_second']:.2f} images/s{_mark(s)} ({s['images']} images, one at "
                                  "a time)",
            "cold_start": lambda: f"{s['first_output_s']:.2f} s ({s['peak_rss_mib']:.0f} MiB){_mark(s)}",
            "training": lambda: f"{s['captions_per_second']:.0f} captions/s{_mark(s)}"}[section]()
    return f"{s['system']}: {text}"


def _measure(section: str, e: dict) -> tuple[str, str]:
    """(measure, setting) cells of a row."""
    if section == "latency":
        return "single-image warm latency, median (p95)", _setting(e)
    if section == "throughput":
        return f"batch throughput, {e['images']} test images from disk", f"{_setting(e)}, batch {e['batch_size']}"
    if section == "cold_start":
        return "cold start to first caption (peak RSS)", "`imgsum caption`, model default beam"
    return "decoder training on cached features", f"{e['captions_per_step']} captions x {e['words']} words per step"


def _breakdown(bd: dict | None) -> str:
    parts = {k: v for k, v in (bd or {}).items() if isinstance(v, dict)}
    return "; ".join(f"{name} (batch {b['batch_size']}): read+preprocess {b['read_preprocess_ms']:.1f}, encoder "
                     f"{b['encoder_ms']:.1f}, decoder {b['decoder_ms']:.1f}" for name, b in parts.items())


def render_markdown(result: dict, heading: str = "") -> str:
    """The results as Markdown: a line on when and where, one table of measures, the target checks.

    With comparison-backend entries (``run_all.py --compare-backend``), each row shows ours on the main
    backend, the same on the comparison backend and the speed-up over it, then the specification's
    design and the speed-up over that; without, ours, the specification's design and the speed-up.
    """
    m = result["machine"]
    base = result.get("baseline", {})
    sections = [s for s in SECTION_KEYS if result.get(s)]
    compared = any(e.get("comparison") for s in sections for e in result[s])
    mains = sorted({e["backend"] for s in sections for e in result[s] if _ours(e) and e.get("backend")})
    main = "/".join(mains) or result["backend"]
    cmp = result.get("compare_backend") or next(
        (e["backend"] for s in sections for e in result[s] if e.get("comparison")), "other")
    backends = result.get("backends") or {}
    resolved = f" ({', '.join(f'{k}: {v}' for k, v in backends.items())})" if backends and result["backend"] == "auto" \
        else ""
    lines = []
    if heading:
        lines += [heading, ""]
    where = (f"Measured {result['date']} on {m['cpu']}, {m['cores']} cores ({m.get('torch_threads')} torch threads), "
             f"{m.get('memory_gib')} GiB, torch {m.get('torch')}")
    if compared:
        lines += [
            f"{where}; default model `{result['default']}`. All in one run:", "",
            f"- **ours, {main}**: imgsum as installed (`--backend {result['backend']}`"
            + (f": {', '.join(f'{k} on {v}' for k, v in backends.items())}" if resolved else "") + ").",
            f"- **ours, {cmp}**: the same models on the `{cmp}` backend, each measured right after the {main} figure "
            "beside it.",
            f"- **specification's design**, the baseline: {base.get('design', '')}; {base.get('steps')} decoding steps "
            f"({base.get('steps_from', '')}).",
            f"- Ratios are speed-ups of ours on {main} (higher is better): **vs {cmp}** over the same model and "
            f"setting on {cmp}; **vs spec** over the specification's design with the same kind of decoder.",
            "",
            f"| measure | system | setting | ours, {main} | ours, {cmp} | vs {cmp} | specification's design | "
            "vs spec |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    else:
        intro = (f"{where}; backend `{result['backend']}`{resolved}; default model `{result['default']}`. "
                 f"Baseline, in the same run: the specification's design ({base.get('design', '')}), "
                 f"{base.get('steps')} decoding steps ({base.get('steps_from', '')}). "
                 "Ratio: speed-up over the specification's design with the same kind of decoder (higher is better).")
        lines += [intro, "", "| measure | system | setting | ours | specification's design | ratio |",
                  "| --- | --- | --- | --- | --- | --- |"]

    for section in SECTION_KEYS:
        entries = result.get(section, [])
        by_system = {e["system"]: e for e in entries if e.get("baseline")}
        for e in entries:
            if not _ours(e):
                continue
            measure, setting = _measure(section, e)
            spec = _spec_figure(section, by_system.get(e.get("spec")))
            if compared:
                other = _compared(entries, e)
                if other is not None:
                    theirs = _figure(section, other)
                elif section == "training":
                    theirs = "(the same: training runs on torch)"
                else:
                    theirs = ""
                lines.append(f"| {measure} | {e['system']} | {setting} | {_figure(section, e)} | {theirs} | "
                             f"{_ratio(e, 'vs_compare')} | {spec} | {_ratio(e)} |")
            else:
                lines.append(f"| {measure} | {e['system']} | {setting} | {_figure(section, e)} | {spec} | "
                             f"{_ratio(e)} |")

    disturbed = _disturbed(result)
    if disturbed:
        lines += ["", f"† Disturbed: other processes used more than {100 * FOREIGN_WARN:.0f}% of the CPU while these "
                  "were measured: " + "; ".join(disturbed) + ". Rerun on an idle machine."]
    most = _most_foreign(result)
    if most is not None and not disturbed:
        lines += ["", f"Interference: other processes used at most {100 * most:.1f}% of the CPU during any one "
                  f"measurement (a figure is marked † above {100 * FOREIGN_WARN:.0f}%)."]
    bd, bdc = _breakdown(result.get("breakdown")), _breakdown(result.get("breakdown_compare"))
    if bd:
        on = f" on {main}" if bdc else ""
        text = f"Where the time goes (default model, beam 3, milliseconds per image){on}: {bd}"
        if bdc:
            text += f". On {result['breakdown_compare'].get('backend', cmp)}: {bdc}"
        lines += ["", text]
    checks = result.get("target_checks") or []
    if checks:
        lines += ["", "| issue | target | measured | |", "| --- | --- | --- | --- |"]
        for c in checks:
            value = "" if c["value"] is None else f"{c['value']:.3g}"
            mark = {True: "met", False: "**missed**", None: "not measured"}[c["met"]]
            lines.append(f"| {c.get('issue', 'evaluation')} | {c['target']} | {value} | "
                         f"{mark if c['met'] is not False else c['note']} |")
    return "\n".join(lines)
