"""Timing helpers, and the registry of backends the benchmarks can measure.

A backend is a function that builds a captioner (``caption(path, beam)``, ``caption_batch(paths, beam,
batch_size)``, ``info``) and the command line whose first output line is a caption, for the cold start.
Another backend (e.g. ONNX Runtime) is measured by adding it to :data:`BACKENDS`.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Backend:
    name: str
    build: Callable[[str, int | None], Any]  # (model, threads) -> a captioner with imgsum.api.Captioner's methods
    cold_start_command: Callable[[str, str], list[str]]  # (model, image) -> argv that prints a caption first


def imgsum_command() -> list[str]:
    """The installed ``imgsum`` script beside this Python, else ``python -m imgsum.cli``."""
    script = Path(sys.executable).with_name("imgsum")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "imgsum.cli"]


def captioner_backend(backend: str | None) -> Backend:
    """A backend of :class:`imgsum.api.Captioner` (``None``: its own choice for each model)."""

    def build(model: str, threads: int | None):
        from imgsum.api import Captioner

        return Captioner.load(model, backend=backend, threads=threads)

    def cold_start_command(model: str, image: str) -> list[str]:
        return [*imgsum_command(), "caption", image, "--model", model, *(["--backend", backend] if backend else [])]

    return Backend(backend or "auto", build, cold_start_command)


#: What ``run_all.py --backend`` can measure; ``auto`` is what users get (ONNX Runtime for shipped models).
BACKENDS: dict[str, Backend] = {b.name: b for b in map(captioner_backend, (None, "onnx", "torch"))}


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between closest ranks (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_stats(seconds: Sequence[float]) -> dict:
    return {"median_ms": 1000 * statistics.median(seconds), "p95_ms": 1000 * percentile(seconds, 95),
            "mean_ms": 1000 * statistics.fmean(seconds), "min_ms": 1000 * min(seconds), "n": len(seconds)}


def time_each(fn: Callable[[Any], Any], items: Sequence[Any], warmup: int = 3) -> tuple[list[float], list[Any]]:
    """Seconds of ``fn(item)`` for each item, after ``warmup`` untimed calls; also the results."""
    for item in list(items)[:warmup]:
        fn(item)
    times, results = [], []
    for item in items:
        start = time.perf_counter()
        results.append(fn(item))
        times.append(time.perf_counter() - start)
    return times, results


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def launch(argv: Sequence[str], cwd: str | Path | None = None) -> dict:
    """Starts ``argv``; seconds to its first output line, to its exit, and its peak RSS in MiB (``os.wait4``)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=err, cwd=cwd)
        first = proc.stdout.readline()
        first_s = time.perf_counter() - start
        proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        total_s = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace")
    return {"first_output_s": first_s, "total_s": total_s, "peak_rss_mib": usage.ru_maxrss / 1024,
            "returncode": proc.returncode, "first_line": first.decode(errors="replace").strip()[:200],
            "stderr_tail": tail}


def cold_start(argv: Sequence[str], repeats: int = 3, cwd: str | Path | None = None) -> dict:
    """Launches ``argv`` ``repeats`` times: seconds from process start to its first output line, peak RSS.

    Each launch goes through a small helper process (this file, ``--launch``): on Linux a child's peak
    RSS counts what it inherited at ``fork``, so a child of this big benchmark process would report
    this process's memory as its own. The first launch also warms the operating system's file cache,
    as a user's second launch finds it; every run is reported, and the median.
    """
    runs = []
    for _ in range(repeats):
        helper = subprocess.run([sys.executable, __file__, "--launch", *argv], cwd=cwd, capture_output=True,
                                text=True, check=True)
        run = json.loads(helper.stdout)
        if run["returncode"] != 0 or not run["first_line"]:
            raise RuntimeError(f"{' '.join(argv)} failed ({run['returncode']}): {run['stderr_tail']}")
        del run["stderr_tail"], run["returncode"]
        runs.append(run)
    return {
        "first_output_s": statistics.median(r["first_output_s"] for r in runs),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "runs": runs,
        "command": list(argv),
    }


def _busy_seconds() -> float | None:
    """CPU-seconds all processes of the machine have been busy (Linux ``/proc/stat``), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """Measures how much of the machine other processes used while a measurement ran.

    ``share`` after the block: their CPU time over (wall time x cores); 0 on an idle machine. A
    measurement taken with a share above a few percent is disturbed (torch's small per-step ops
    slow down by tens of times when a core is taken from them) and is flagged in the results.
    """

    def __enter__(self) -> "ForeignLoad":
        self.share: float | None = None
        self._start = (time.perf_counter(), _busy_seconds(), _own_seconds())
        return self

    def __exit__(self, *exc) -> None:
        wall0, busy0, own0 = self._start
        busy1 = _busy_seconds()
        if busy0 is None or busy1 is None:
            return
        wall = time.perf_counter() - wall0
        foreign = (busy1 - busy0) - (_own_seconds() - own0)
        self.share = max(0.0, foreign / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


def optimiser_step(opt: Any, loss: Callable[[], Any], clip: Sequence[Any] = ()) -> Callable[[], float]:
    """A training step for :func:`training_rate`: ``loss()`` (a torch scalar), backward, gradient norms of ``clip``
    clipped to 1, ``opt.step()``; returns the loss."""
    if clip:
        from torch.nn.utils import clip_grad_norm_

    def step() -> float:
        value = loss()
        opt.zero_grad(set_to_none=True)
        value.backward()
        if clip:
            clip_grad_norm_(clip, 1.0)
        opt.step()
        return value.item()

    return step


def training_rate(step: Callable[[], Any], captions_per_step: int, steps: int = 5, warmup: int = 1) -> dict:
    """Captions per second of an optimisation step function, after ``warmup`` untimed steps."""
    for _ in range(warmup):
        step()
    seconds, _ = timed(lambda: [step() for _ in range(steps)])
    return {"captions_per_second": rate(captions_per_step * steps, seconds), "steps": steps,
            "captions_per_step": captions_per_step, "seconds": seconds}


if __name__ == "__main__" and sys.argv[1:2] == ["--launch"]:
    print(json.dumps(launch(sys.argv[2:])))
