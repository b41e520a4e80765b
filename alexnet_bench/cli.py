"""Command-line interface: ``alexnet-bench train | report | figure1 | list-failed | preview-data``.

Every user-facing error is one line, ``error: <what is wrong>; <how to fix it>``, exit status 2.
SIGINT/SIGTERM unwind the job (``finally`` blocks stop telemetry and release GPU locks, no
output is finalised) and end with one ``interrupted: ...`` line and status 128 + signal number.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import RunConfig, deep_merge, parse_override
from .errors import BenchError, DeviceError, DiskFullError
from .gpu_lock import GpuLease, acquire_gpus, visible_gpu_pool
from .metrics import write_history, write_metrics

log = logging.getLogger("alexnet_bench")
EXIT_USER_ERROR = 2
DDP_STOP_GRACE_S = 60.0  # torchrun itself gives its workers 30 s after forwarding SIGTERM


class Interrupted(BaseException):
    """A SIGINT/SIGTERM arrived. A BaseException, so ``except Exception`` never swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _parse_labels(items: Sequence[str]) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        labels[key] = int(value) if value.isdigit() else value
    return labels


DEFAULT_STUDY = Path("config.yaml")


def _study_base(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run config and labels of a study cell (``--preset/--ablation/--seed`` from ``--study``).

    With no config source at all (no ``--config``, ``--config-json`` or ``--preset``) and a
    ``config.yaml`` in the working directory, the study's own preset and baseline are used, so
    ``alexnet-bench train --out DIR`` trains the CPU-sized default; without one, the schema
    defaults (the paper's full-scale settings) apply.
    """
    from .config import load_yaml
    from .study import resolve_run

    explicit = args.preset or args.ablation or args.study
    if not explicit and (args.config or args.config_json or not DEFAULT_STUDY.exists()):
        return {}, {}
    study_path = Path(args.study) if args.study else DEFAULT_STUDY
    if not study_path.exists():
        raise BenchError(
            f"study config '{study_path}' not found; pass --study PATH to the config.yaml that "
            "defines the presets, or use --config RUN.yaml"
        )
    study = load_yaml(study_path) or {}
    if not isinstance(study, dict) or "presets" not in study or "ablation_defs" not in study:
        raise BenchError(
            f"'{study_path}' is not a study config (needs 'presets' and 'ablation_defs'); pass "
            "--study PATH to the repository's config.yaml"
        )
    preset = args.preset or study.get("preset", "default")
    ablation = args.ablation or study.get("baseline", "baseline")
    seed = args.seed if args.seed is not None else 0
    cfg = resolve_run(study, preset, ablation, seed)
    if not explicit:
        log.info(
            "no --config given: using preset '%s', ablation '%s', seed %d from %s",
            preset, ablation, seed, study_path,
        )  # fmt: skip
    return cfg.to_dict(), {"preset": preset, "ablation": ablation, "seed": seed}


def load_run_config(args: argparse.Namespace) -> tuple[RunConfig, dict[str, Any]]:
    """Merge the study cell, ``--config`` (YAML), ``--config-json``, ``--set`` and ``--seed``.

    Returns the validated run config and the labels implied by the study cell (if any).
    """
    from .config import load_yaml

    data, labels = _study_base(args)
    if args.config:
        loaded = load_yaml(args.config) or {}
        if not isinstance(loaded, dict):
            raise BenchError(f"config file '{args.config}' must hold a mapping of sections")
        data = deep_merge(data, loaded)
    if args.config_json:
        try:
            data = deep_merge(data, json.loads(args.config_json))
        except json.JSONDecodeError as exc:
            raise BenchError(
                f"--config-json is not valid JSON ({exc.msg}); pass a JSON object"
            ) from None
    for text in args.set or []:
        data = deep_merge(data, parse_override(text))
    if args.seed is not None:
        data = deep_merge(data, {"train": {"seed": args.seed}})
    return RunConfig(data), labels


def _record(
    out: Path, status: str, reason: str, cfg: RunConfig | None, labels: dict[str, Any]
) -> None:
    """Write a metrics.json for a run that did not train (failed or skipped), atomically."""
    write_metrics(
        out / "metrics.json",
        {
            "status": status,
            "reason": reason,
            "run": labels,
            "config": cfg.to_dict() if cfg else None,
            "config_hash": cfg.hash if cfg else None,
            "epochs_completed": 0,
        },
    )
    if not (out / "history.csv").exists():
        write_history(out / "history.csv", [])


def _torchrun_command(args: argparse.Namespace, nprocs: int) -> list[str]:
    argv = [a for a in sys.argv[1:]]
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nprocs}", "-m", "alexnet_bench.cli", *argv,
    ]  # fmt: skip


def _install_signal_handlers() -> dict[int, Any]:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` so ``finally`` blocks (telemetry, locks) run.

    Returns the previous handlers (for :func:`main` to restore); none outside the main thread.
    """

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _die_with_parent() -> None:
    """``preexec_fn``: the kernel sends this child SIGTERM when its parent dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the except-branch of _supervise still applies
        pass


def _supervise(
    cmd: list[str],
    env: dict[str, str],
    pass_fds: Sequence[int] = (),
    grace_s: float = DDP_STOP_GRACE_S,
) -> int:
    """Run ``cmd`` and return its status; if this process is interrupted, stop it first.

    On SIGINT/SIGTERM the child (torchrun) gets SIGTERM, which it forwards to its workers, and
    this process waits for it (SIGKILL after ``grace_s``): no worker outlives the job and writes
    results after it was reported as ended. ``PR_SET_PDEATHSIG`` covers a SIGKILL of this process;
    ``pass_fds`` (the GPU lock files) keep the devices locked until the child has exited too.
    """
    preexec = _die_with_parent if sys.platform.startswith("linux") else None
    proc = subprocess.Popen(cmd, env=env, preexec_fn=preexec, pass_fds=tuple(pass_fds))
    try:
        return proc.wait()
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise


def cmd_train(args: argparse.Namespace) -> int:
    """Train one run (relaunching under torchrun when it is a multi-process DDP job)."""
    from .runtime import DistContext, resolve_device_type

    out = Path(args.out)
    labels = _parse_labels(args.label or [])
    cfg: RunConfig | None = None
    try:
        cfg, cell_labels = load_run_config(args)
        labels = {**cell_labels, **labels}
        rt = cfg.runtime
        dist = DistContext.from_env()
        lease = _lease_gpus(args, cfg) if not dist.distributed else None
        try:
            device_kind = resolve_device_type(rt.device, rt.gpus)
            if device_kind == "cpu" and rt.gpus > 1 and args.cpu_standins == "skip":
                reason = CPU_STANDIN_SKIPPED.format(gpus=rt.gpus)
                _record(out, "skipped", reason, cfg, labels)
                print(f"skipped: {reason}", file=sys.stderr)
                return 0
            if rt.gpus > 1 and rt.parallel == "ddp" and not dist.distributed:
                return _launch_ddp(args, cfg, device_kind, out, lease)
            peak = Path(args.peak_flops) if args.peak_flops else None
            return _train_here(cfg, out, labels, dist, device_kind, peak)
        finally:
            if lease is not None:
                lease.release()
    except DeviceError as exc:
        if args.on_insufficient_gpus == "skip" and cfg is not None:
            _record(out, "skipped", str(exc), cfg, labels)
            print(f"skipped: {exc}", file=sys.stderr)
            return 0
        return _fail(out, exc, cfg, labels, args.record_failures)
    except BenchError as exc:
        return _fail(out, exc, cfg, labels, args.record_failures)


CPU_STANDIN_SKIPPED = (
    "needs {gpus} GPUs and none is visible; its CPU stand-in repeats the one-device baseline's "
    "arithmetic (a correctness check the test suite covers) and is not trained by default: set "
    "cpu_standins: run in config.yaml (or pass --cpu-standins run) to train it anyway"
)

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")  # fmt: skip


def rank_thread_env(env: dict[str, str], nprocs: int) -> dict[str, str]:
    """Thread variables giving each of ``nprocs`` CPU ranks its share of the job's threads.

    The job's budget is ``OMP_NUM_THREADS`` (Snakemake sets it and MKL_NUM_THREADS & co. to the
    rule's ``threads``) or else all CPUs. Every variable is set: torch also honours
    MKL_NUM_THREADS, so leaving Snakemake's value there oversubscribed the cores (2 ranks x 2
    threads on 2 cores ran the default preset's DDP cell at 136-159 instead of 540 img/s).
    """
    budget = env.get("OMP_NUM_THREADS", "")
    total = int(budget) if budget.isdigit() and int(budget) > 0 else (os.cpu_count() or 2)
    per_rank = str(max(1, total // nprocs))
    return dict.fromkeys(THREAD_ENV_VARS, per_rank)


def _launch_ddp(
    args: argparse.Namespace,
    cfg: RunConfig,
    device_kind: str,
    out: Path,
    lease: GpuLease | None = None,
) -> int:
    """Re-run this command under torchrun with one process per device."""
    nprocs = cfg.runtime.gpus
    log.info("launching %d DDP processes (%s) via torch.distributed.run", nprocs, device_kind)
    env = dict(os.environ)
    if device_kind == "cpu" and not cfg.runtime.threads:
        env.update(rank_thread_env(env, nprocs))
    fds = [fh.fileno() for fh in lease.handles] if lease is not None else []
    code = _supervise(_torchrun_command(args, nprocs), env, pass_fds=fds)
    if code != 0 and not (out / "metrics.json").exists():
        # Not recorded as 'failed' even with --record-failures: user errors are recorded by the
        # workers themselves (exit 0), so this is a crash or a kill, and a rerun must resume.
        print(
            f"error: DDP worker group exited with status {code} (a worker crashed or was "
            "killed; see the log above); rerun the job to resume from its last checkpoint",
            file=sys.stderr,
        )
    return code


def _train_here(
    cfg: RunConfig,
    out: Path,
    labels: dict[str, Any],
    dist: Any,
    device_kind: str,
    peak_flops: Path | None = None,
) -> int:
    """Train in this process (a single-process job or one DDP rank)."""
    if dist.distributed:
        from .distributed import init_distributed

        dist = init_distributed(dist, device_kind)
    from .train import run_training

    metrics = run_training(cfg, out, labels, dist, peak_flops)
    if dist.is_main:
        final = metrics.get("final", {})
        print(
            f"{metrics['status']}: {metrics['epochs_completed']} epochs, "
            f"val top-1 error {final.get('val_top1_error')}, wrote {out / 'metrics.json'}"
        )
    return 0


def _lease_gpus(args: argparse.Namespace, cfg: RunConfig) -> GpuLease | None:
    """Lock this job's GPUs and expose only them (before CUDA is initialised in this process)."""
    if not args.gpu_lock_dir or cfg.runtime.device == "cpu":
        return None
    pool = visible_gpu_pool()
    if not pool:
        return None  # no GPU here: device auto falls back to CPU, device cuda fails later
    lease = acquire_gpus(cfg.runtime.gpus, args.gpu_lock_dir, pool, timeout_s=args.gpu_wait_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = lease.cuda_visible_devices
    log.info("locked GPU(s) %s (CUDA_VISIBLE_DEVICES)", lease.cuda_visible_devices)
    return lease


def _fail(
    out: Path, exc: Exception, cfg: RunConfig | None, labels: dict[str, Any], record: bool
) -> int:
    print(f"error: {exc}", file=sys.stderr)
    if record:
        try:
            _record(out, "failed", str(exc), cfg, labels)
        except DiskFullError:  # no room for the record either: a plain failure, rerun later
            return EXIT_USER_ERROR
        print(f"recorded failure in {out / 'metrics.json'}", file=sys.stderr)
        return 0
    return EXIT_USER_ERROR


def cmd_list_failed(args: argparse.Namespace) -> int:
    """Print the metrics.json paths of runs that did not complete (for ``snakemake -R``)."""
    for path in sorted(Path(args.results).rglob("metrics.json")):
        try:
            status = json.loads(path.read_text()).get("status")
        except (OSError, json.JSONDecodeError):
            status = "unparseable"
        if status not in ("completed",) and (args.status is None or status in args.status):
            print(path)
    return 0


def cmd_peak_flops(args: argparse.Namespace) -> int:
    """Measure the CPU peak FLOP/s for each thread count and write them (atomically)."""
    from .telemetry.peak import write_cpu_peaks

    result = write_cpu_peaks(Path(args.out), args.threads)
    peaks = ", ".join(
        f"{n} thread(s): {v / 1e9:.1f} GFLOP/s" for n, v in result["peak_flops_by_threads"].items()
    )
    print(f"{peaks}; wrote {args.out}")
    return 0


def cmd_preview_data(args: argparse.Namespace) -> int:
    """Save a PNG grid with examples of every class of the embedded data set."""
    from .data.preview import save_preview

    path = save_preview(Path(args.out), size=args.size, per_class=args.per_class)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet-bench",
        description="AlexNet benchmark and ablation suite: train one configured run, render reports.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train and evaluate one run",
        description=(
            "Train one run and write history.csv, metrics.json (atomically), gpu.csv (NVML telemetry, "
            "when available) and checkpoint.pt into --out. Rerunning with the same config resumes "
            "from the last complete epoch. Config = schema defaults (the paper's full-scale "
            "settings) <- study cell (--preset/--ablation from --study; by default, with no "
            "--config/--config-json, the preset and baseline of ./config.yaml when it exists) "
            "<- --config YAML <- --config-json <- --set overrides <- --seed (see "
            "alexnet_bench/schemas/run.schema.yaml for every key)."
        ),
    )
    train.add_argument(
        "--study", metavar="CONFIG_YAML",
        help="study config holding presets and ablation_defs (default: ./config.yaml if present)",
    )  # fmt: skip
    train.add_argument(
        "--preset", help="start from this preset of the study, e.g. default, tiny, cifar10"
    )
    train.add_argument(
        "--ablation", help="apply this ablation of the study, e.g. tanh (default: its baseline)"
    )
    train.add_argument("--seed", type=int, help="training seed (overrides train.seed)")
    train.add_argument(
        "--config",
        help="run config YAML (sections model/data/augment/eval/train/runtime/telemetry)",
    )
    train.add_argument("--config-json", help="run config as a JSON object, merged over --config")
    train.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE",
        help="override one setting, value parsed as YAML (repeatable), e.g. --set train.epochs=5",
    )  # fmt: skip
    train.add_argument("--out", required=True, help="output directory of this run")
    train.add_argument(
        "--label", action="append", metavar="KEY=VALUE",
        help="label stored under 'run' in metrics.json (repeatable), e.g. --label ablation=tanh",
    )  # fmt: skip
    train.add_argument(
        "--record-failures", action="store_true",
        help="on a user error write metrics.json with status 'failed' and exit 0 (workflow mode)",
    )  # fmt: skip
    train.add_argument(
        "--on-insufficient-gpus", choices=["fail", "skip"], default="fail",
        help="when the job needs more GPUs than visible: fail (exit 2) or record status 'skipped'",
    )  # fmt: skip
    train.add_argument(
        "--cpu-standins", choices=["run", "skip"], default="run",
        help="a multi-device run on a host without GPUs: train it on CPU processes/threads "
        "(run, the default) or record it as skipped (skip, what the workflow does by default)",
    )  # fmt: skip
    train.add_argument(
        "--gpu-lock-dir", metavar="DIR",
        help="acquire runtime.gpus free GPUs via lock files in DIR and set CUDA_VISIBLE_DEVICES to them",
    )  # fmt: skip
    train.add_argument(
        "--gpu-wait-s", type=float, default=None,
        help="give up waiting for free GPUs after this many seconds (default: wait)",
    )  # fmt: skip
    train.add_argument(
        "--peak-flops", metavar="PEAK_JSON",
        help="the host's CPU peak FLOP/s per thread count, measured once per study by "
        "'alexnet-bench peak-flops' (default: probe it in this job)",
    )  # fmt: skip
    train.set_defaults(func=cmd_train)

    peak = sub.add_parser(
        "peak-flops",
        help="measure this host's CPU peak FLOP/s once (run it with nothing else running)",
    )
    peak.add_argument(
        "--out", required=True, help="JSON file to write, e.g. results/default/peak_flops.json"
    )
    peak.add_argument(
        "--threads", type=int, nargs="+", default=[1], help="thread counts to measure (default: 1)"
    )
    peak.set_defaults(func=cmd_peak_flops)

    failed = sub.add_parser(
        "list-failed", help="list metrics.json files of runs that did not complete"
    )
    failed.add_argument("results", help="results directory, e.g. results/default")
    failed.add_argument(
        "--status", action="append", help="only these statuses (failed, diverged, skipped, ...)"
    )
    failed.set_defaults(func=cmd_list_failed)

    preview = sub.add_parser(
        "preview-data", help="save example images of the embedded shapes10 data set"
    )
    preview.add_argument("--out", default="reports/shapes10.png")
    preview.add_argument("--size", type=int, default=37)
    preview.add_argument("--per-class", type=int, default=10)
    preview.set_defaults(func=cmd_preview_data)

    try:
        from .reports.cli import add_calibration_parser, add_report_parser
    except ImportError:  # reports extra not importable: keep training usable
        pass
    else:
        add_report_parser(sub)
        add_calibration_parser(sub)
    from .figure1.cli import add_figure1_parser

    add_figure1_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    previous = _install_signal_handlers()
    try:
        return int(args.func(args) or 0)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        print(
            f"interrupted by {signal.Signals(signum).name}: {_resume_hint(args)}", file=sys.stderr
        )
        return 128 + signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _resume_hint(args: argparse.Namespace) -> str:
    """What an interrupted command left behind and how to carry on."""
    if args.command != "train":
        return "nothing was finalised; run the command again"
    checkpoint = Path(args.out) / "checkpoint.pt"
    where = f"resume from {checkpoint}" if checkpoint.exists() else "start again"
    return f"no metrics.json was written; rerun the same command to {where}"


if __name__ == "__main__":
    sys.exit(main())
