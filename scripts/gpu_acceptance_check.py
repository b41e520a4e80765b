"""The PASS/FAIL table of the GPU acceptance run (``scripts/gpu_acceptance.sh``).

Reads only the files the run wrote into its folder (no torch, no GPU), so it is unit-tested on
CPU with hand-made files (``tests/test_gpu_acceptance.py``)::

    steps.tsv                         step, budget_s, seconds, exit status (the shell writes it)
    environment.json                  alexnet_bench.telemetry.collect_environment() on cuda:0
    gpu_tests.xml                     JUnit XML of ``pytest -m gpu`` (with recorded properties)
    train_step_cuda.json              benchmarks/train_step.py --device cuda
    input_pipeline_cuda.json          benchmarks/input_pipeline.py --mode device --device cuda
    telemetry_overhead_cuda.json      benchmarks/telemetry_overhead.py --device cuda
    study/results/<preset>/<ablation>/seed<N>/{metrics.json,history.csv,gpu.csv}
    study/reports/index.html, study/logs/train/**.log

Writes ``acceptance.json`` and ``acceptance.md`` beside them, prints the table and exits 1 if
any assertion fails (0 otherwise)::

    python scripts/gpu_acceptance_check.py gpu-acceptance/<host>-<date> [--gpus N]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import re
import statistics
import sys
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PRESET = "gpu_acceptance"
ONE_GPU_CELLS = ("baseline", "tanh")
TWO_GPU_CELLS = ("gpus2", "gpus2_model")
SEEDS = (0, 1)
#: median NVML sampling interval within this fraction of the configured one
INTERVAL_TOLERANCE = 0.25
#: wall-clock images/s (epochs >= 2) within this fraction of the CUDA-event images/s
EVENT_WALL_TOLERANCE = 0.15
SUITE_OVER_REFERENCE = 2.0
MFU_TARGET = 0.30
PIPELINE_OVER_STEP = 2.0
BF16_TEST = "test_bf16_step_matches_fp32_on_cuda"
#: what torch._dynamo logs when it runs a frame eagerly instead of compiling it
DYNAMO_FALLBACK = re.compile(
    r"WON'T CONVERT|cache_size_limit|recompile_limit|falling back to eager"
)
RECORDED_FALLBACK = re.compile(r"^(unavailable|failed at first step): \S")


@dataclass
class Check:
    """One row of the table."""

    name: str
    passed: bool
    measured: str
    threshold: str


@dataclass
class Run:
    cell: str
    metrics: dict[str, Any]
    history: list[dict[str, str]]
    gpu_rows: list[dict[str, str]]
    log: str


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError:
        return []


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _dig(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _ips(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def load_runs(out: Path) -> dict[str, Run]:
    """Every cell of the study that wrote a metrics.json, keyed ``ablation/seedN``."""
    runs: dict[str, Run] = {}
    results = out / "study" / "results" / PRESET
    for metrics_path in sorted(results.glob("*/seed*/metrics.json")):
        cell = f"{metrics_path.parent.parent.name}/{metrics_path.parent.name}"
        log = out / "study" / "logs" / "train" / PRESET / f"{cell}.log"
        runs[cell] = Run(
            cell,
            _json(metrics_path) or {},
            _csv(metrics_path.parent / "history.csv"),
            _csv(metrics_path.parent / "gpu.csv"),
            log.read_text(errors="replace") if log.is_file() else "",
        )
    return runs


# ------------------------------------------------------------------------------ assertions


def check_steps(out: Path) -> list[Check]:
    rows = [line.split("\t") for line in _lines(out / "steps.tsv")]
    checks = []
    for name, budget, seconds, rc in (r for r in rows if len(r) == 4):
        verdict = "timed out" if rc in ("124", "137") else f"exit {rc}"
        checks.append(
            Check(
                f"step {name} ends with exit 0 within its budget",
                rc == "0",
                f"{verdict} after {seconds} s",
                f"exit 0, <= {budget} s",
            )
        )
    if not checks:
        checks.append(Check("steps ran", False, "no steps.tsv", "one row per step"))
    return checks


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _testcases(out: Path) -> list[ET.Element] | None:
    try:
        return list(ET.parse(out / "gpu_tests.xml").getroot().iter("testcase"))
    except (OSError, ET.ParseError):
        return None


def _outcome(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return "skipped" if tag == "skipped" else "failed"
    return "passed"


def check_gpu_tests(out: Path) -> list[Check]:
    cases = _testcases(out)
    name = "gpu-marked tests pass (pytest -m gpu)"
    if cases is None:
        return [Check(name, False, "no gpu_tests.xml", "0 failed, >= 1 passed")]
    outcomes = [_outcome(c) for c in cases]
    failed = [c.get("name") for c, o in zip(cases, outcomes, strict=True) if o == "failed"]
    skipped = [c.get("name") for c, o in zip(cases, outcomes, strict=True) if o == "skipped"]
    passed = outcomes.count("passed")
    measured = f"{passed} passed, {len(failed)} failed, {len(skipped)} skipped"
    if failed:
        measured += f" (failed: {', '.join(map(str, failed))})"
    if skipped:
        measured += f" (skipped: {', '.join(map(str, skipped))})"
    return [Check(name, passed > 0 and not failed, measured, "0 failed, >= 1 passed")]


def check_bf16(out: Path) -> list[Check]:
    name = "bf16 step loss within the tested tolerance of fp32 (GPU)"
    case = next((c for c in _testcases(out) or [] if c.get("name") == BF16_TEST), None)
    if case is None:
        return [Check(name, False, f"{BF16_TEST} did not run", "relative difference < 1e-2")]
    props = {p.get("name"): _num(p.get("value")) for p in case.iter("property")}
    diff, tol = props.get("bf16_loss_rel_diff"), props.get("bf16_loss_rel_tolerance")
    ok = _outcome(case) == "passed" and diff is not None and tol is not None and diff < tol
    measured = f"{_fmt(diff)} (fp32 {_fmt(props.get('fp32_loss'), 5)}, bf16 {_fmt(props.get('bf16_loss'), 5)})"
    return [Check(name, ok, measured, f"< {_fmt(tol)}")]


def _gpu_series(run: Run) -> dict[str, list[dict[str, str]]]:
    series: dict[str, list[dict[str, str]]] = {}
    for row in run.gpu_rows:
        series.setdefault(row.get("gpu", "?"), []).append(row)
    return series


def check_nvml(runs: list[Run]) -> list[Check]:
    name = "NVML series non-empty at the configured interval"
    threshold = f"every run: samples > 0, median interval within {INTERVAL_TOLERANCE:.0%}"
    if not runs:
        return [Check(name, False, "no completed GPU run", threshold)]
    bad, medians = [], []
    for run in runs:
        interval = _num(_dig(run.metrics, "config.telemetry.interval_ms"))
        series = _gpu_series(run)
        if not series or interval is None:
            bad.append(f"{run.cell}: no samples")
            continue
        for gpu, rows in series.items():
            t = [v for v in (_num(r.get("t_s")) for r in rows) if v is not None]
            gaps = [b - a for a, b in itertools.pairwise(t)]
            if not gaps:
                bad.append(f"{run.cell} gpu{gpu}: {len(t)} sample(s)")
                continue
            median_ms = statistics.median(gaps) * 1000
            medians.append(median_ms)
            if abs(median_ms / interval - 1) > INTERVAL_TOLERANCE:
                bad.append(f"{run.cell} gpu{gpu}: {median_ms:.0f} ms vs {interval:.0f} ms")
    measured = (
        f"median interval {min(medians):.0f}-{max(medians):.0f} ms over {len(runs)} runs"
        if medians
        else "no intervals"
    )
    if bad:
        measured += "; " + "; ".join(bad)
    return [Check(name, not bad, measured, threshold)]


def check_energy(runs: list[Run]) -> list[Check]:
    name = "energy counter monotonic and energy positive"
    threshold = "energy_mj non-decreasing and rising per GPU; gpu.energy_j > 0"
    if not runs:
        return [Check(name, False, "no completed GPU run", threshold)]
    bad, joules = [], []
    for run in runs:
        energy = _num(_dig(run.metrics, "gpu.energy_j"))
        method = _dig(run.metrics, "gpu.energy_method")
        if energy is None or energy <= 0:
            bad.append(f"{run.cell}: energy_j {energy}")
        else:
            joules.append(energy)
        for gpu, rows in _gpu_series(run).items():
            e = [v for v in (_num(r.get("energy_mj")) for r in rows) if v is not None]
            if not e and method == "power_integral":
                continue  # no counter on this GPU: energy integrated from power (recorded)
            if len(e) < 2 or any(b < a for a, b in itertools.pairwise(e)) or e[-1] <= e[0]:
                bad.append(f"{run.cell} gpu{gpu}: counter not monotonic and rising")
    measured = f"{min(joules):.0f}-{max(joules):.0f} J per run" if joules else "no energy"
    if bad:
        measured += "; " + "; ".join(bad)
    return [Check(name, not bad, measured, threshold)]


def check_utilisation(runs: list[Run]) -> list[Check]:
    name = "GPU utilisation above 0 during training"
    if not runs:
        return [Check(name, False, "no completed GPU run", "mean util > 0 in every run")]
    means = {r.cell: _num(_dig(r.metrics, "gpu.util_gpu_pct.mean")) for r in runs}
    bad = [f"{cell}: {v}" for cell, v in means.items() if v is None or v <= 0]
    values = [v for v in means.values() if v is not None]
    measured = f"mean {min(values):.0f}-{max(values):.0f}%" if values else "none"
    if bad:
        measured += "; " + "; ".join(bad)
    return [Check(name, not bad, measured, "mean util > 0 in every run")]


def _bench_rows(bench: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = (bench or {}).get("rows")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def check_mfu_range(runs: list[Run], bench: dict[str, Any] | None) -> list[Check]:
    name = "MFU between 0 and 1"
    values = {f"study {r.cell}": _num(_dig(r.metrics, "flops.mfu")) for r in runs}
    for row in _bench_rows(bench):
        if row.get("loop") in ("reference", "suite"):
            values[f"bench {row['loop']} bs{row.get('batch_size')}"] = _num(row.get("mfu"))
    if not values:
        return [Check(name, False, "no MFU measured", "0 < MFU <= 1")]
    bad = [f"{k}: {v}" for k, v in values.items() if v is None or not 0 < v <= 1]
    ok_values = [v for v in values.values() if v is not None]
    measured = f"{min(ok_values):.3f}-{max(ok_values):.3f}" if ok_values else "none"
    if bad:
        measured += "; " + "; ".join(bad)
    return [Check(name, not bad, measured, "0 < MFU <= 1")]


def check_compile(runs: list[Run], bench: dict[str, Any] | None) -> list[Check]:
    name = "no silent torch.compile fallback"
    threshold = "runtime.compile 'on (...)', or a fallback recorded with its reason"
    states: dict[str, str] = {}
    for run in runs:
        if _dig(run.metrics, "config.runtime.compile"):
            states[f"study {run.cell}"] = str(_dig(run.metrics, "runtime.compile"))
    for key, value in (bench or {}).items():
        if key.startswith("suite_runtime_") and isinstance(value, dict):
            states[f"bench {key.removeprefix('suite_runtime_')}"] = str(value.get("compile"))
    if not states:
        return [Check(name, False, "no run compiled", threshold)]
    bad = [
        f"{k}: {v}"
        for k, v in states.items()
        if not v.startswith("on (") and not RECORDED_FALLBACK.match(v)
    ]
    fallbacks = [f"{k}: {v}" for k, v in states.items() if RECORDED_FALLBACK.match(v)]
    silent = [r.cell for r in runs if DYNAMO_FALLBACK.search(r.log)]
    bad += [f"{cell}: torch._dynamo ran frames eagerly (see its log)" for cell in silent]
    measured = f"{len(states) - len(fallbacks)} of {len(states)} compiled"
    if fallbacks:
        measured += "; fallback recorded: " + "; ".join(fallbacks)
    if bad:
        measured += "; " + "; ".join(bad)
    return [Check(name, not bad, measured, threshold)]


def check_event_timing(runs: list[Run]) -> list[Check]:
    name = "CUDA-event step times agree with wall time"
    threshold = (
        f"wall images/s (epochs >= 2) within {EVENT_WALL_TOLERANCE:.0%} of CUDA-event images/s"
    )
    if not runs:
        return [Check(name, False, "no completed GPU run", threshold)]
    bad, ratios = [], []
    for run in runs:
        method = _dig(run.metrics, "step_time.timing_method")
        per_rank = _num(_dig(run.metrics, "step_time.images_per_s_overall"))  # rank 0's events
        world = _num(_dig(run.metrics, "parallel.world_size")) or 1
        events = per_rank * world if per_rank else None
        later = [r for r in run.history if (_num(r.get("epoch")) or 0) >= 2]
        seconds = sum(_num(r.get("epoch_time_s")) or 0 for r in later)
        images = sum(
            (_num(r.get("images_per_s")) or 0) * (_num(r.get("epoch_time_s")) or 0) for r in later
        )
        if method != "cuda_events" or not events or seconds <= 0:
            bad.append(f"{run.cell}: timing {method}, {len(later)} epochs >= 2")
            continue
        ratio = images / seconds / events
        ratios.append(ratio)
        if abs(ratio - 1) > EVENT_WALL_TOLERANCE:
            bad.append(f"{run.cell}: wall/events {ratio:.3f}")
    measured = f"wall/events {min(ratios):.3f}-{max(ratios):.3f}" if ratios else "none"
    if bad:
        measured += "; " + "; ".join(bad)
    return [Check(name, not bad, measured, threshold)]


def check_targets(bench: dict[str, Any] | None) -> list[Check]:
    """The performance targets, at the batch size where the suite is fastest."""
    names = (
        f"suite step >= {SUITE_OVER_REFERENCE:g}x the reference loop (224 px)",
        f"suite MFU >= {MFU_TARGET:.0%} at 224 px",
        f"input pipeline >= {PIPELINE_OVER_STEP:g}x the suite step",
    )
    rows = _bench_rows(bench)
    suites = [r for r in rows if r.get("loop") == "suite" and _num(r.get("images_per_s"))]
    if not suites:
        return [Check(n, False, "no train_step_cuda.json suite row", "-") for n in names]
    best = max(suites, key=lambda r: _num(r["images_per_s"]) or 0)
    batch = best.get("batch_size")

    def ips(loop: str) -> float | None:
        row = next((r for r in rows if r.get("loop") == loop and r.get("batch_size") == batch), {})
        return _num(row.get("images_per_s"))

    suite, ref, pipe = ips("suite"), ips("reference"), ips("input_pipeline")
    size, mfu = (bench or {}).get("image_size"), _num(best.get("mfu"))
    where = f"batch {batch}"
    speedup = suite / ref if suite and ref else None
    feed = pipe / suite if pipe and suite else None
    return [
        Check(
            names[0],
            speedup is not None and speedup >= SUITE_OVER_REFERENCE,
            f"{_fmt(speedup)}x ({_ips(suite)} vs {_ips(ref)} img/s, {where})",
            f">= {SUITE_OVER_REFERENCE:g}x",
        ),
        Check(
            names[1],
            size == 224 and mfu is not None and mfu >= MFU_TARGET,
            f"{_fmt(mfu)} at {size} px ({where}, peak {bench.get('peak_source') if bench else '?'})",
            f">= {MFU_TARGET:g} at 224 px",
        ),
        Check(
            names[2],
            feed is not None and feed >= PIPELINE_OVER_STEP,
            f"{_fmt(feed)}x ({_ips(pipe)} vs {_ips(suite)} img/s, {where})",
            f">= {PIPELINE_OVER_STEP:g}x",
        ),
    ]


def check_real_data(pipeline: dict[str, Any] | None, step: dict[str, Any] | None) -> list[Check]:
    """Real data (JPEGs) fed through the prepared-data cache keeps the GPU busy: the cached
    loader, batches augmented on the device, at least PIPELINE_OVER_STEP x the suite step."""
    name = (
        f"real data: cached loader (JPEG tree, raw cache) >= {PIPELINE_OVER_STEP:g}x the suite step"
    )
    suites = [
        r for r in _bench_rows(step) if r.get("loop") == "suite" and _num(r.get("images_per_s"))
    ]
    rows = [
        r
        for r in _bench_rows(pipeline)
        if str(r.get("name", "")).startswith("cached_loader_raw") and _num(r.get("images_per_s"))
    ]
    if not suites or not rows or not str((pipeline or {}).get("device", "")).startswith("cuda"):
        missing = (
            "no suite row in train_step_cuda.json"
            if not suites
            else ("no cached_loader_raw row on cuda in input_pipeline_cuda.json")
        )
        return [Check(name, False, missing, f">= {PIPELINE_OVER_STEP:g}x")]
    suite = max(suites, key=lambda r: _num(r["images_per_s"]) or 0)
    best = max(rows, key=lambda r: _num(r["images_per_s"]) or 0)
    ratio = (_num(best["images_per_s"]) or 0) / (_num(suite["images_per_s"]) or 1)
    stream = next(
        (r for r in _bench_rows(pipeline) if str(r.get("name", "")).startswith("streaming_loader")),
        {},
    )
    measured = (
        f"{_fmt(ratio)}x ({best['name']}: {_ips(_num(best['images_per_s']))} vs suite "
        f"{_ips(_num(suite['images_per_s']))} img/s at batch {suite.get('batch_size')}; "
        f"streaming JPEG decode: {_ips(_num(stream.get('images_per_s')))} img/s)"
    )
    return [Check(name, ratio >= PIPELINE_OVER_STEP, measured, f">= {PIPELINE_OVER_STEP:g}x")]


def check_telemetry_overhead(bench: dict[str, Any] | None) -> list[Check]:
    name = "telemetry overhead below its target on the GPU (real NVML)"
    if not bench:
        return [Check(name, False, "no telemetry_overhead_cuda.json", "median < 1%")]
    res = bench.get("results") or {}
    median, target = _num(res.get("overhead_pct_median")), _num(res.get("target_pct"))
    ci = res.get("overhead_pct_median_ci95") or [None, None]
    real = bench.get("nvml") == "real NVML" and str(bench.get("device", "")).startswith("cuda")
    ok = real and median is not None and target is not None and median < target
    measured = (
        f"{_fmt(median)}% (95% CI {_fmt(_num(ci[0]))} to {_fmt(_num(ci[1]))}%), "
        f"NVML: {bench.get('nvml')}, device {bench.get('device')}"
    )
    return [Check(name, ok, measured, f"median < {_fmt(target)}%, real NVML on cuda")]


def check_study(out: Path, runs: dict[str, Run], gpus: int) -> list[Check]:
    rows = []
    for ablation in ONE_GPU_CELLS + TWO_GPU_CELLS:
        two = ablation in TWO_GPU_CELLS
        want = "completed" if not two or gpus >= 2 else "skipped"
        got = {s: runs.get(f"{ablation}/seed{s}") for s in SEEDS}
        status = {s: (_dig(r.metrics, "status") if r else "missing") for s, r in got.items()}
        reasons = [str(_dig(r.metrics, "reason")) for r in got.values() if r]
        ok = all(v == want for v in status.values())
        if want == "skipped":
            ok = ok and all("GPU" in reason for reason in reasons)
        measured = ", ".join(f"seed{s} {v}" for s, v in status.items())
        if want == "skipped" and reasons:
            measured += f" ({reasons[0][:80]})"
        rows.append(
            Check(
                f"study cell {ablation} ({gpus} GPU{'s' if gpus != 1 else ''})",
                ok,
                measured,
                f"{want} (seeds {', '.join(map(str, SEEDS))})",
            )
        )
    report = out / "study" / "reports" / "index.html"
    rows.append(
        Check(
            "study report rendered",
            report.is_file(),
            "reports/index.html" if report.is_file() else "missing",
            "exists",
        )
    )
    return rows


def evaluate(out: Path, gpus: int | None = None) -> list[Check]:
    """Every assertion of the acceptance run in folder ``out``."""
    env = _json(out / "environment.json") or {}
    if gpus is None:
        gpus = int(_num(env.get("cuda_device_count")) or 0)
    runs = load_runs(out)
    gpu_runs = [r for r in runs.values() if _dig(r.metrics, "status") == "completed"]
    step_bench = _json(out / "train_step_cuda.json")
    telemetry = _json(out / "telemetry_overhead_cuda.json")
    return [
        *check_steps(out),
        *check_gpu_tests(out),
        *check_bf16(out),
        *check_nvml(gpu_runs),
        *check_energy(gpu_runs),
        *check_utilisation(gpu_runs),
        *check_mfu_range(gpu_runs, step_bench),
        *check_compile(gpu_runs, step_bench),
        *check_event_timing(gpu_runs),
        *check_targets(step_bench),
        *check_real_data(_json(out / "input_pipeline_cuda.json"), step_bench),
        *check_telemetry_overhead(telemetry),
        *check_study(out, runs, gpus),
    ]


def table(checks: list[Check]) -> str:
    """The Markdown PASS/FAIL table."""
    lines = ["| result | assertion | measured | threshold |", "| --- | --- | --- | --- |"]
    for c in checks:
        cells = (c.name, c.measured, c.threshold)
        clean = [s.replace("|", "/").replace("\n", " ") for s in cells]
        lines.append(f"| {'PASS' if c.passed else 'FAIL'} | {' | '.join(clean)} |")
    failed = sum(not c.passed for c in checks)
    lines.append("")
    lines.append(f"{len(checks) - failed} passed, {failed} failed")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="gpu-acceptance/<host>-<date>")
    p.add_argument("--gpus", type=int, help="CUDA devices visible (default: environment.json)")
    args = p.parse_args(argv)
    checks = evaluate(args.folder, args.gpus)
    text = table(checks)
    (args.folder / "acceptance.md").write_text("# GPU acceptance\n\n" + text)
    summary = {"passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks]}
    (args.folder / "acceptance.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(text, end="")
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
