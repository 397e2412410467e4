"""What a measurement ran on and when: recorded beside every figure, since figures mean nothing without it."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone


def utc_now() -> str:
    """The date and time in UTC, ISO 8601 to the second: ``2026-11-26T15:04:05Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict:
    """CPU model, cores (all, and those this process may use), memory; versions (and threads) of the
    inference libraries this process has loaded."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_gib": _memory_gib(),
        "os": platform.platform(terse=True),
        "python": sys.version.split()[0],
    }
    if "torch" in sys.modules:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    if "onnxruntime" in sys.modules:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    return info


def machine_line(info: dict) -> str:
    """One line for a report: ``AMD EPYC, 2 cores, 23.4 GiB, torch 2.13.0 (2 threads)``."""
    parts = [info.get("cpu", "unknown CPU"), f"{info.get('cores')} cores"]
    if info.get("memory_gib"):
        parts.append(f"{info['memory_gib']} GiB")
    if info.get("torch"):
        parts.append(f"torch {info['torch']} ({info.get('torch_threads')} threads)")
    if info.get("onnxruntime"):
        parts.append(f"onnxruntime {info['onnxruntime']}")
    return ", ".join(parts)
