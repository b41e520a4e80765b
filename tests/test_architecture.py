"""The package's import graph: no cycle, and every import points down the layers, so a
feature never depends on its views and nothing but an entry point depends on the CLI.

Layers, low to high (a module may import its own layer and the ones below):

0. foundation: errors, io, config, datadirs, imagefolder, identity, effects, history, runtime, distributed, gpu_lock,
   progress, train_result: no knowledge of models, runs or reports
1. components and the reading side: data/, model, cifar_net, lsuv, diagnostics, parallel/,
   telemetry/, metrics, checkpoint, runrecord, collect, claims, study
2. one run: record, train, launch
3. features built on runs: figure1/, calibration (judging the calibration sweep)
4. views: reports/, versus/ (one results directory against another), plan/ (it trains probe
   runs and renders a report section, and the report shows it)
5. entry points: cli, reports/cli, figure1/cli, versus/cli, plan/cli, reports/__main__ (may
   import anything; nothing else imports them)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "alexnet_bench"
ENTRY_POINTS = {
    "alexnet_bench.cli",
    "alexnet_bench.reports.cli",
    "alexnet_bench.figure1.cli",
    "alexnet_bench.versus.cli",
    "alexnet_bench.reports.__main__",
    "alexnet_bench.plan.cli",
}
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        [
            "alexnet_bench",
            "errors",
            "io",
            "numbers",
            "config",
            "datadirs",
            "imagefolder",
            "identity",
            "effects",
            "history",
            "runtime",
            "distributed",
            "gpu_lock",
            "progress",
            "train_result",
        ],
        0,
    ),
    **dict.fromkeys(
        [
            "data",
            "model",
            "cifar_net",
            "lsuv",
            "diagnostics",
            "parallel",
            "telemetry",
            "metrics",
            "checkpoint",
            "runrecord",
            "collect",
            "claims",
            "study",
        ],
        1,
    ),
    **dict.fromkeys(["record", "train", "launch"], 2),
    "figure1": 3,
    "calibration": 3,
    "reports": 4,
    "versus": 4,
    "plan": 4,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    if module in ENTRY_POINTS:
        return 5
    top = module.split(".")[1] if "." in module else module
    if top not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in this test")
    return LAYERS[top]


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere: top level, functions, TYPE_CHECKING).

    ``sources``: module -> (its source, whether it is a package ``__init__``)."""
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        package = module if is_package else module.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(source, module)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                # ``from pkg import name``: the module pkg.name when there is one, else pkg
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in sources else base
                    for a in node.names
                ]
            for target in targets:
                while target and target not in sources and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in sources and target != module:
                    deps.add(target)
        graph[module] = deps
    return graph


def package_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    return import_graph({module_name(p): (p.read_text(), p.name == "__init__.py") for p in files})


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
        for m, deps in graph.items()
        for d in deps
        if (d in ENTRY_POINTS and m not in ENTRY_POINTS) or layer(d) > layer(m)
    )


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(package_graph()) == []


def test_every_import_points_down_the_layers() -> None:
    assert upward(package_graph()) == []


def test_record_builds_the_record_without_the_trainer() -> None:
    graph = package_graph()
    assert "alexnet_bench.train" not in graph["alexnet_bench.record"]
    assert not any(
        d.startswith("alexnet_bench.reports") for d in graph["alexnet_bench.figure1.results"]
    )


@pytest.mark.parametrize(
    ("sources", "problem"),
    [
        (
            {
                "alexnet_bench.record": "from .train import Trainer",
                "alexnet_bench.train": "from . import record",
            },
            "cycle",
        ),
        (
            {
                "alexnet_bench.figure1.analysis": "from ..reports.stats import t_crit",
                "alexnet_bench.reports.stats": "",
            },
            "upward",
        ),
        (
            {
                "alexnet_bench.study": "def f():\n    from .reports.claims import study_claims",
                "alexnet_bench.reports.claims": "",
            },
            "upward",
        ),
        (
            {
                "alexnet_bench.reports.tables": "from .cli import main",
                "alexnet_bench.reports.cli": "",
            },
            "upward",
        ),
    ],
)
def test_the_checks_catch_what_this_package_used_to_do(sources: dict, problem: str) -> None:
    graph = import_graph({m: (src, False) for m, src in sources.items()})
    found = cycles(graph) if problem == "cycle" else upward(graph)
    assert found, f"a {problem} import went unnoticed"
