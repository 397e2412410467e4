"""The layering of docs/architecture.md, checked by reading the package's imports (``ast``) and by importing the core
in a fresh interpreter. Torch-free and fast."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "imgsum"

#: Layers, lowest first: a module may import from its own layer and the ones below, never from one above.
#: A name stands for the module and everything under it.
LAYERS: list[set[str]] = [
    {"imgsum.files", "imgsum.text", "imgsum.concepts", "imgsum.images", "imgsum.decoding", "imgsum.model_info",
     "imgsum.pretrained", "imgsum.data"},  # ground floor: numpy and Pillow at most
    {"imgsum.runtime", "imgsum.models", "imgsum.models.concept_layers",
     "imgsum.checkpoint"},  # the two backends: ONNX Runtime; torch
    {"imgsum.api", "imgsum.ensemble", "imgsum.export", "imgsum.quantize"},  # captioning on either backend (several
    # decoders as one too); exporting from one to the other, and an int8 encoder for the second
    {"imgsum.eval", "imgsum.eval.subjects", "imgsum.train", "imgsum.train.examples", "imgsum.train.text_only",
     "imgsum.train.scst", "imgsum.train.reward", "imgsum.serve", "imgsum.scale"},  # tools built on the API and the models
    {"imgsum.cli", "imgsum.__main__", "imgsum"},  # entry points: the command line (python -m imgsum), the package's lazy attributes
]
#: Captioning with ONNX Runtime: what ``pip install imgsum`` must run without torch, the web stack or the tools.
CORE = {"imgsum.files", "imgsum.text", "imgsum.concepts", "imgsum.images", "imgsum.decoding", "imgsum.model_info",
        "imgsum.pretrained", "imgsum.runtime", "imgsum.ensemble", "imgsum.api"}
#: Third-party packages the core never imports when it is loaded.
NOT_IN_CORE = {"torch", "torchvision", "safetensors", "onnx", "fastapi", "starlette", "uvicorn", "httpx", "pydantic",
               "matplotlib", "pycocoevalcap", "ray", "pyarrow"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """The modules ``path`` imports, absolute, each with whether it is imported when the module loads (not inside a
    function). ``from . import x`` counts as importing ``x`` when that is a module, else the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        at_load = id(node) not in in_function
        if isinstance(node, ast.Import):
            found += [(alias.name, at_load) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found += [(_submodule(name, alias.name) or name, at_load) for alias in node.names]
    return found


def _submodule(package: str, name: str) -> str | None:
    """``package.name`` when that is one of our modules (``from . import decoding``), else None (a name in it)."""
    path = SRC.joinpath(*package.split("."), name)
    return f"{package}.{name}" if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() else None


def graph() -> dict[str, list[tuple[str, bool]]]:
    """Every module of the package -> the modules it imports."""
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of ``module``: that of the longest name in LAYERS that is it or a package above it (the root
    package ``imgsum`` stands for itself alone, not for every module)."""
    best = max(((name, i) for i, layer in enumerate(LAYERS) for name in layer
                if module == name or (name != "imgsum" and module.startswith(name + "."))),
               key=lambda x: len(x[0]), default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer of LAYERS (docs/architecture.md): place it")
    return best[1]


def in_core(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in CORE)


def own(name: str) -> bool:
    return name == "imgsum" or name.startswith("imgsum.")


def upward_imports(modules: dict[str, list[tuple[str, bool]]]) -> list[str]:
    return [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
            for m, targets in modules.items() for t, _ in targets if own(t) and layer_of(t) > layer_of(m)]


def core_violations(modules: dict[str, list[tuple[str, bool]]]) -> list[str]:
    """Imports that the core makes when it loads, of a third-party package it must not need or of a module
    outside the core."""
    bad = []
    for m, targets in modules.items():
        if not in_core(m):
            continue
        for t, at_load in targets:
            if at_load and (t.split(".")[0] in NOT_IN_CORE or (own(t) and t != "imgsum" and not in_core(t))):
                bad.append(f"{m} imports {t}")
    return bad


def cycles(modules: dict[str, list[tuple[str, bool]]]) -> list[list[str]]:
    """Import cycles between modules (a package counts as its ``__init__``), lazy imports included; a package's
    imports of its own submodules (``from . import x``) are not edges back up."""
    edges = {m: {t for t, _ in targets if t in modules and t != m and not m.startswith(t + ".")}
             for m, targets in modules.items()}
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == "open":
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return found


def test_every_module_has_a_layer():
    for m in graph():
        layer_of(m)


def test_nothing_imports_from_a_layer_above():
    assert upward_imports(graph()) == []


def test_the_core_imports_no_torch_web_or_tools_when_it_loads():
    assert core_violations(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_captioning_with_onnx_loads_no_torch_web_or_tools():
    """Importing the core, building the command line and loading a shipped model on ONNX Runtime, in a fresh
    interpreter: none of torch, the web stack or the tools is imported."""
    pytest.importorskip("onnxruntime")
    code = ("import json, sys\n"
            "import imgsum.api, imgsum.cli, imgsum.runtime.ort\n"
            "imgsum.cli.build_parser()\n"
            "imgsum.api.Captioner.load('lstm', backend='onnx')\n"
            f"print(json.dumps(sorted({{m for m in sys.modules if m.split('.')[0] in {sorted(NOT_IN_CORE)!r}}}"
            " | {m for m in sys.modules if m.startswith(('imgsum.models', 'imgsum.checkpoint', 'imgsum.export', "
            "'imgsum.train.loop', 'imgsum.eval.evaluate', 'imgsum.serve.app', 'imgsum.scale.ray_caption'))})))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


# The checks above must be able to fail: each is run on a small made-up graph that breaks its rule.

def test_the_checks_catch_violations():
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("imgsum.somewhere_new")
    assert upward_imports({"imgsum.decoding": [("imgsum.models.decoders", False)], "imgsum.models.decoders": []})
    assert core_violations({"imgsum.runtime.ort": [("torch", True)]})
    assert core_violations({"imgsum.api": [("imgsum.serve.app", True)]})
    assert not core_violations({"imgsum.api": [("imgsum.models.captioner", False)]})  # the torch backend, on request
    assert cycles({"imgsum.a": [("imgsum.b", True)], "imgsum.b": [("imgsum.a", False)]})
