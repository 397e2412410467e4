"""Load benchmark of ``imgsum serve``: N concurrent clients post photos to /api/caption on loopback.

It starts the server (``imgsum serve`` in a subprocess, on 127.0.0.1 and a free port) unless ``--url`` names
one already running on this machine, then runs two phases, each bounded in time: one client alone, then
``--clients`` clients at once (8 by default), each posting the next photo as soon as it has its answer.
Reports requests per second, p50/p95/p99 latency and errors for both, as JSON and a Markdown table in
benchmarks/results/.

    python benchmarks/load_server.py                       # 60 s with 8 clients, after 20 s with one
    python benchmarks/load_server.py --duration 10 --model gpt=path/to/checkpoint.safetensors

Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "imgsum" / "assets" / "samples"
RESULTS = ROOT / "benchmarks" / "results"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MAX_DURATION_S = 600.0


@dataclass
class Phase:
    clients: int
    duration_s: float
    requests: int = 0
    errors: int = 0
    wall_s: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    max_ms: float = 0.0
    mean_batch_images: float = 0.0
    error_samples: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_phase(url: str, clients: int, duration_s: float, photos: list[tuple[str, bytes]], model: str | None,
              beam: int | None) -> Phase:
    """``clients`` threads, each with its own keep-alive connection, post photos until the time is up."""
    latencies: list[float] = []
    batches: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients + 1)
    form = {k: str(v) for k, v in (("model", model), ("beam", beam)) if v is not None}
    deadline = 0.0

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            i = index
            start_barrier.wait()
            while time.perf_counter() < deadline:
                name, data = photos[i % len(photos)]
                i += 1
                sent = time.perf_counter()
                try:
                    r = http.post("/api/caption", files={"image": (name, data, "image/jpeg")}, data=form)
                    ok = r.status_code == 200
                    problem = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                    batch = r.json()["timing"]["batch_images"] if ok else 0
                except (httpx.HTTPError, ValueError, KeyError) as err:
                    ok, problem, batch = False, f"{type(err).__name__}: {err}", 0
                elapsed = time.perf_counter() - sent
                with lock:
                    if ok:
                        latencies.append(elapsed)
                        batches.append(batch)
                    else:
                        errors.append(problem)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    deadline = began + duration_s
    start_barrier.wait()
    for t in threads:
        t.join(duration_s + 180)
    wall = time.perf_counter() - began
    phase = Phase(clients, duration_s, requests=len(latencies) + len(errors), errors=len(errors),
                  wall_s=round(wall, 2), error_samples=errors[:5])
    if latencies:
        ms = [x * 1000 for x in latencies]
        phase.rps = round(len(latencies) / wall, 2)
        phase.p50_ms, phase.p95_ms, phase.p99_ms = (round(percentile(ms, q), 1) for q in (50, 95, 99))
        phase.mean_ms, phase.max_ms = round(statistics.fmean(ms), 1), round(max(ms), 1)
        phase.mean_batch_images = round(statistics.fmean(batches), 2)
    return phase


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(models: list[str] | None, backend: str | None, threads: int | None, output: Path,
                 log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "imgsum.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--output-dir", str(output), "--log-level", "warning"]
    for m in models or []:
        command += ["--model", m]
    if backend:
        command += ["--backend", backend]
    if threads:
        command += ["--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "UNSPLASH_ACCESS_KEY"}
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise SystemExit("the server did not start within 300 s")


def markdown(result: dict) -> str:
    phases = result["phases"]
    lines = [
        "# Load benchmark: `imgsum serve` on loopback",
        "",
        f"{result['date']}; {result['machine']['cpus']} CPUs ({result['machine']['platform']}); load average at the "
        f"start {result['machine']['load_average']}; model `{result['model']}` ({result['backend']}), "
        f"beam {result['beam'] or 'default'}; photos: {', '.join(result['photos'])}.",
        "",
        "| clients | seconds | requests | errors | requests/s | p50 ms | p95 ms | p99 ms | mean images per batch |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in phases:
        lines.append(f"| {p['clients']} | {p['wall_s']} | {p['requests']} | {p['errors']} | {p['rps']} | {p['p50_ms']} "
                     f"| {p['p95_ms']} | {p['p99_ms']} | {p['mean_batch_images']} |")
    if len(phases) == 2 and phases[0]["rps"]:
        lines += ["", f"Throughput with {phases[1]['clients']} clients: "
                      f"{phases[1]['rps'] / phases[0]['rps']:.2f}x one client's (concurrent requests share batches)."]
    lines += ["", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of the concurrent phase (default 60)")
    parser.add_argument("--single-duration", type=float, default=None,
                        help="seconds of the one-client phase (default: a third of --duration, at least 5)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--url", help="a server already running on this machine (loopback only)")
    parser.add_argument("--model", action="append", metavar="NAME[=PATH]",
                        help="models for the started server (default: the installed shipped models)")
    parser.add_argument("--use-model", help="the model the clients ask for (default: the server's default)")
    parser.add_argument("--backend", choices=("onnx", "torch"))
    parser.add_argument("--beam", type=int)
    parser.add_argument("--threads", type=int, help="CPU threads for the started server's models")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="load_server", help="file name of the results (.json, .md)")
    args = parser.parse_args(argv)

    if not 0 < args.duration <= MAX_DURATION_S or not 1 <= args.clients <= 64:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S:.0f}] and --clients in [1, 64]")
    single = args.single_duration if args.single_duration is not None else max(5.0, args.duration / 3)
    if not 0 < single <= MAX_DURATION_S:
        parser.error("--single-duration out of range")
    if args.url and (urlsplit(args.url).hostname or "") not in LOOPBACK:
        parser.error("--url must be a loopback address (127.0.0.1, localhost or ::1): this benchmark targets "
                     "this machine only")
    photos = [(p.name, p.read_bytes()) for p in sorted(SAMPLES.glob("*.jpg"))]
    load_at_start = [round(x, 2) for x in os.getloadavg()]

    process = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if args.url:
                url = args.url.rstrip("/")
            else:
                process, url = start_server(args.model, args.backend, args.threads, Path(tmp) / "saved",
                                            Path(tmp) / "server.log")
            models = httpx.get(url + "/api/models", timeout=10).json()
            model = args.use_model or models["default"]
            entry = next(m for m in models["models"] if m["name"] == model)
            print(f"server {url}: model {model} ({entry['decoder']}, {entry.get('backend', '?')})", file=sys.stderr)
            run_phase(url, 1, 2.0, photos, model, args.beam)  # warm-up, not counted
            phases = []
            for clients, seconds in ((1, single), (args.clients, args.duration)):
                print(f"{clients} client(s) for {seconds:.0f} s ...", file=sys.stderr)
                phases.append(run_phase(url, clients, seconds, photos, model, args.beam))
                p = phases[-1]
                print(f"  {p.requests} requests, {p.errors} errors, {p.rps} req/s, p50 {p.p50_ms} ms, "
                      f"p95 {p.p95_ms} ms, mean batch {p.mean_batch_images}", file=sys.stderr)
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/load_server.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average": load_at_start},
        "server": "started by the benchmark" if process is not None else "given by --url",
        "model": model, "backend": entry.get("backend"), "decoder": entry["decoder"], "beam": args.beam,
        "photos": [name for name, _ in photos],
        "phases": [asdict(p) for p in phases],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    return 1 if any(p.errors for p in phases) else 0


if __name__ == "__main__":
    sys.exit(main())
