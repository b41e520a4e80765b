"""The SLURM profile against a real scheduler: a throw-away single-node cluster.

``scripts/local_slurm.sh`` starts munged, slurmctld and slurmd on 127.0.0.1 (config and state in
a temporary directory, two placeholder GPUs that SLURM schedules but CUDA cannot see), and the
tests run the workflow through ``workflow/profiles/slurm`` plus the overlay
``workflow/profiles/local-slurm`` (partition, no account, short limits, squeue for job status):

* a tiny study's cells become one SLURM job each, complete, and give the same errors and
  curves as the same cells trained locally; a cell that fails inside its job (a data root
  with a corrupt image) is recorded as failed with its reason and shown in the report;
* ``runtime.gpus: 2`` reaches sbatch as ``--gpus=2``, the profile's time limit and memory reach
  sbatch and SLURM, and inside a job the GPU lease takes the devices SLURM allocated;
* a job cancelled with ``scancel`` mid-training is noticed, the study's other cell completes
  (``--keep-going``), and the rerun resumes the cell to the uninterrupted result.

What the executor plugin passed to sbatch is recorded by an ``sbatch`` wrapper first on PATH;
what SLURM ran is read from its job completion log (``JobCompType=jobcomp/filetxt``).

Without SLURM (the Debian packages slurmctld, slurmd, slurm-client, munge) or root, the tests
skip with one line; under ``CI=true`` they fail instead, so CI cannot pass without them.
"""

from __future__ import annotations

import csv
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from alexnet_bench.gpu_lock import acquire_gpus
from alexnet_bench.launch import CPU_STANDIN_SKIPPED
from alexnet_bench.reports import build_report
from alexnet_bench.study import resolve_run
from alexnet_bench.telemetry.peak import write_cpu_peaks
from alexnet_bench.train import run_training

from .conftest import REPO
from .helpers import (
    checkpoint_epoch,
    held_lines,
    image_dir,
    metric_rows,
    metrics_of,
    read_history,
    snakemake_cmd,
    study_dir,
    wait_for_hold,
    with_faults,
)

# every SLURM call has its own timeout; this caps a test with the module's study (on this VM
# about 3.5 minutes) so that no failure can hang the suite
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]  # pytest-xdist runs a file on one worker (--dist loadfile): one cluster, one study

SCRIPT = REPO / "scripts" / "local_slurm.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
OVERLAY = REPO / "workflow" / "profiles" / "local-slurm"
SLURM_COMMANDS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
ERROR_COLUMNS = (
    "status",
    "epochs_completed",
    "final_train_loss",
    "final_val_loss",
    "train_top1_err_pct",
    "val_top1_err_pct",
    "val_top5_err_pct",
    "overfit_gap_pts",
    "best_epoch",
    "best_val_top1_err_pct",
)
SBATCH_WRAPPER = """#!/bin/sh
# Test wrapper: records what the executor plugin passes to sbatch and what sbatch answers.
log={log}/$(date +%s%N).$$
printf '%s\\0' "$@" >"$log.args"
out=$({real} "$@")
rc=$?
printf '%s' "$out" >"$log.out"
printf '%s\\n' "$out"
exit $rc
"""


def _slurm_missing() -> str | None:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [c for c in SLURM_COMMANDS if shutil.which(c, path=search) is None]
    if missing:
        return (
            f"SLURM is not installed (no {', '.join(missing)}): apt-get install slurmctld "
            "slurmd slurm-client munge"
        )
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (slurmd starts jobs as their user)"
    return None


@dataclass
class Cluster:
    env: dict[str, str]  # SLURM_CONF and PATH (the cluster's srun shim, the sbatch wrapper)
    state: Path  # the script's LOCAL_SLURM_DIR
    submissions: Path  # the sbatch wrapper's records

    def sbatch_calls(self) -> list[tuple[list[str], str]]:
        """(arguments, answer) of every sbatch call so far, in order."""
        calls = []
        for args in sorted(self.submissions.glob("*.args")):
            answer = args.with_suffix(".out")
            out = answer.read_text().strip() if answer.exists() else ""
            calls.append((args.read_bytes().decode().split("\0")[:-1], out))
        return calls

    def completed_jobs(self) -> dict[str, dict[str, str]]:
        """SLURM's own record of every finished job: {job id: {JobState, TimeLimit, Tres...}}."""
        jobs = {}
        log = self.state / "log" / "jobcomp.txt"
        for line in log.read_text().splitlines() if log.exists() else []:
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            jobs[fields["JobId"]] = fields
        return jobs

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, proc_env: dict[str, str]
) -> Iterator[Cluster]:
    reason = _slurm_missing()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true, so the SLURM tests must run, but {reason}")
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("slurm")
    state, wrappers, submissions = base / "cluster", base / "bin", base / "sbatch-calls"
    wrappers.mkdir()
    submissions.mkdir()
    env = {**proc_env, "LOCAL_SLURM_DIR": str(state), "LOCAL_SLURM_GPUS": str(GPUS)}
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        pytest.fail(f"the local SLURM cluster did not start:\n{started.stdout}{started.stderr}")
    # the lines the script prints for a shell: export SLURM_CONF=...; export PATH=<bin>:$PATH
    for line in started.stdout.splitlines():
        if line.startswith("export "):
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value.replace("$PATH", env["PATH"])
    real = shutil.which("sbatch", path=env["PATH"])
    (wrappers / "sbatch").write_text(SBATCH_WRAPPER.format(log=submissions, real=real))
    (wrappers / "sbatch").chmod(0o755)
    env["PATH"] = f"{wrappers}{os.pathsep}{env['PATH']}"
    cluster = Cluster(env, state, submissions)
    try:
        yield cluster
    finally:  # `stop` cancels the jobs and waits for their processes (the script's job)
        stopped = subprocess.run(
            ["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr
        assert not state.exists()


def slurm_snakemake(workdir: Path, *args: str, overlay: bool = True) -> list[str]:
    """snakemake through the SLURM profile (and the local cluster's overlay)."""
    profiles = ["--profile", str(PROFILE)] + (["--profile", str(OVERLAY)] if overlay else [])
    return snakemake_cmd(workdir, *profiles, *args)


def calls_for(cluster: Cluster, workdir: Path, comment: str) -> list[tuple[list[str], str]]:
    """sbatch calls of one Snakemake job in ``workdir`` (the plugin's --comment is
    rule_<rule>_wildcards_<values>, its -D the working directory)."""
    return [
        (args, out)
        for args, out in cluster.sbatch_calls()
        if args[args.index("--comment") + 1] == comment
        and args[args.index("-D") + 1] == str(workdir)
    ]


def option(args: list[str], name: str) -> str:
    """The value of ``-t 10`` / ``--gpus=2`` style options (the plugin writes both forms)."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"no {name} in sbatch {args}")


def runs_table(reports: Path) -> dict[str, dict[str, str]]:
    with open(reports / "tables" / "runs.csv") as fh:
        return {row["ablation"]: row for row in csv.DictReader(fh)}


# ------------------------------------------------------------------------- a tiny study


GPUS = 4  # placeholder GPUs on the test node: GPU requests never serialise the tiny study
CELLS = ("baseline", "tanh", "gpus2", "bad_data")
CANCELLED = "tanh"
BAD_DATA = {"family": "augmentation", "description": "a data root with a corrupt image"}


class TimedLines:
    """A process's output, read as it comes, each line with the time it arrived."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append((time.monotonic(), line))

    def text(self) -> str:
        self.thread.join(30)
        return "".join(line for _, line in self.lines)

    def first(self, needle: str) -> float:
        """When the first line containing ``needle`` arrived (inf: never)."""
        return next((t for t, line in self.lines if needle in line), float("inf"))


@dataclass
class Run:
    returncode: int
    log: str


@dataclass
class Study:
    workdir: Path
    references: Path  # baseline and tanh trained locally, in this process: <ablation>/
    first: Run  # held, then one job cancelled
    rerun: Run
    cancelled_job: str
    noticed_s: float  # from scancel until Snakemake reported the job as failed
    held: list[tuple[int, int, int, int]]
    after_cancel: tuple[list[str], int | None]  # the cell's files and checkpoint epoch

    def cell(self, ablation: str) -> Path:
        return self.workdir / "results" / "tiny" / ablation / "seed0"


@pytest.fixture(scope="module")
def study(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Study:
    """One tiny study (seed 0) through the profile, run twice.

    baseline trains; tanh is held 2 steps into its last epoch by the fault injector inside its
    SLURM job, then cancelled with scancel; gpus2 asks for 2 GPUs; bad_data reads a data root
    with a corrupt image. The first run ends non-zero once the cancellation is noticed, after
    the other cells (--keep-going); the rerun resumes tanh and builds the report. Throughout,
    the test holds the shared lock files of GPUs 0-3, as jobs on other nodes whose GPUs carry
    the same numbers would."""
    tmp = tmp_path_factory.mktemp("slurm-study")
    root = image_dir(tmp / "bad-data", classes=3, per_class=6, corrupt=True)
    bad = {
        **BAD_DATA,
        "overrides": {"data": {"source": "imagefolder", "root": str(root), "on_bad_image": "fail"}},
    }
    workdir = study_dir(tmp, ablations=list(CELLS), ablation_defs={"bad_data": bad})
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    for ablation in ("baseline", CANCELLED):
        run_training(resolve_run(config, "tiny", ablation, 0), tmp / "reference" / ablation)
    # The CPU peak probe is measured here, as the peak_flops rule would (1 and 2 threads):
    # one SLURM job less, about 30 s of the suite's time at the plugin's polling rate.
    write_cpu_peaks(workdir / "results" / "tiny" / "peak_flops.json", [1, 2])

    progress = tmp / "progress"
    held_env = {
        **with_faults(cluster.env, progress, hold_at=(2, 3)),
        "FAULT_HOLD_ARGV": f"tiny/{CANCELLED}/seed0",
        "FAULT_HOLD_TIMEOUT_S": "300",
    }
    other_nodes = acquire_gpus(GPUS, workdir / ".gpu-locks", [str(d) for d in range(GPUS)])
    try:
        proc = subprocess.Popen(
            slurm_snakemake(workdir),
            env=held_env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        lines = TimedLines(proc)
        try:
            wait_for_hold(progress, proc=proc, timeout=300)
            [(_, job)] = calls_for(cluster, workdir, f"rule_train_wildcards_tiny_{CANCELLED}_0")
            cancelled_at = time.monotonic()
            scancel = cluster.run("scancel", job)
            assert scancel.returncode == 0, scancel.stderr
            proc.wait(300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        out = lines.text()
        noticed_s = lines.first(f"SLURM-job '{job}' failed") - cancelled_at
        first = Run(proc.returncode, out)
        (tmp / "first.log").write_text(out)
        cell = workdir / "results" / "tiny" / CANCELLED / "seed0"
        checkpoint = cell / "checkpoint.pt"
        after_cancel = (
            sorted(p.name for p in cell.iterdir()),
            checkpoint_epoch(checkpoint) if checkpoint.exists() else None,
        )
        rerun = subprocess.run(
            slurm_snakemake(workdir), env=cluster.env, capture_output=True, text=True, timeout=300
        )
        second = Run(rerun.returncode, rerun.stdout + rerun.stderr)
        (tmp / "rerun.log").write_text(second.log)
    finally:
        other_nodes.release()
    return Study(
        workdir,
        tmp / "reference",
        first,
        second,
        job,
        noticed_s,
        held_lines(progress),
        after_cancel,
    )


def test_each_cell_is_one_slurm_job_and_equals_the_local_run(
    cluster: Cluster, study: Study, tmp_path: Path
) -> None:
    """One SLURM job per cell (the cancelled one twice: cancelled, then its rerun), plus the
    report, all COMPLETED; the curves and errors equal the same cells trained
    locally (same seeds, bit for bit), in the metrics and in the report built inside SLURM."""
    assert study.rerun.returncode == 0, study.rerun.log[-5000:]
    finished = cluster.completed_jobs()
    for ablation in CELLS:
        calls = calls_for(cluster, study.workdir, f"rule_train_wildcards_tiny_{ablation}_0")
        assert len(calls) == (2 if ablation == CANCELLED else 1), (ablation, calls)
        assert finished[calls[-1][1]]["JobState"] == "COMPLETED", finished.get(calls[-1][1])
    [(_, job)] = calls_for(cluster, study.workdir, "rule_report")
    assert finished[job]["JobState"] == "COMPLETED"
    assert calls_for(cluster, study.workdir, "rule_peak_flops_wildcards_tiny") == []  # measured

    local_results = tmp_path / "results" / "tiny"
    for ablation in ("baseline", CANCELLED):
        cell, reference = study.cell(ablation), study.references / ablation
        metrics, local = metrics_of(cell), metrics_of(reference)
        assert metrics["status"] == "completed" and metrics["epochs_completed"] == 2
        job = calls_for(cluster, study.workdir, f"rule_train_wildcards_tiny_{ablation}_0")[-1][1]
        assert metrics["environment"]["env"]["SLURM_JOB_ID"] == job  # trained inside that job
        assert metric_rows(cell) == metric_rows(reference), ablation  # the curves
        assert metrics["final"] == local["final"] and metrics["best"] == local["best"]
        shutil.copytree(reference, local_results / ablation / "seed0")

    # the report built inside SLURM shows the errors of a report built from the local runs
    build_report(local_results, tmp_path / "reports")
    slurm_rows = runs_table(study.workdir / "reports")
    local_rows = runs_table(tmp_path / "reports")
    for ablation in ("baseline", CANCELLED):
        assert {c: slurm_rows[ablation][c] for c in ERROR_COLUMNS} == {
            c: local_rows[ablation][c] for c in ERROR_COLUMNS
        }


def test_a_cell_failing_inside_its_job_is_recorded_with_its_reason_and_reported(
    study: Study,
) -> None:
    """The bad data root passes the workflow's structural check, so the cell fails inside its
    SLURM job: recorded as failed with the corrupt file named (failed_runs: record, so the job
    ends 0 and the study goes on), the other cells complete, the report lists the failure."""
    assert study.rerun.returncode == 0, study.rerun.log[-5000:]
    failed = metrics_of(study.cell("bad_data"))
    assert failed["status"] == "failed", failed
    assert "broken.jpg" in failed["reason"] and "on_bad_image: skip" in failed["reason"]
    assert metrics_of(study.cell("baseline"))["status"] == "completed"
    row = runs_table(study.workdir / "reports")["bad_data"]
    assert row["status"] == "failed" and "broken.jpg" in row["reason"]
    summary = (study.workdir / "reports" / "summary.md").read_text()
    problems = summary.split("## Collapsed, failed, skipped, diverged", 1)[1].split("\n## ")[0]
    assert "bad_data" in problems and "broken.jpg" in problems


def test_resources_reach_sbatch_and_the_job_leases_the_gpus_slurm_gave_it(
    cluster: Cluster, study: Study
) -> None:
    """gpu=N becomes --gpus=N; the overlay's time limit, memory and CPUs reach sbatch and
    SLURM's record of the job. Inside the job CUDA_VISIBLE_DEVICES is SLURM's allocation: the
    lease takes exactly those devices, locked under .gpu-locks/slurm-job-<id>/, so the shared
    locks the test holds on every GPU number (other nodes' jobs) never block it; with no CUDA
    device behind them the 2-GPU cell is recorded as skipped, as on a machine without GPUs."""
    assert study.rerun.returncode == 0, study.rerun.log[-5000:]
    finished = cluster.completed_jobs()
    for ablation in CELLS:
        gpus = 2 if ablation == "gpus2" else 1
        for args, job in calls_for(
            cluster, study.workdir, f"rule_train_wildcards_tiny_{ablation}_0"
        ):
            assert option(args, "--gpus") == str(gpus)
            assert (option(args, "-t"), option(args, "--mem")) == ("10", "800")
            assert option(args, "--cpus-per-task") == "1" and option(args, "-p") == "debug"
            assert finished[job]["TimeLimit"] == "10" and "mem=800M" in finished[job]["Tres"]
            locks = study.workdir / ".gpu-locks" / f"slurm-job-{job}"
            assert len(list(locks.glob("gpu-*.lock"))) == gpus, (ablation, job)
    [(args, _)] = calls_for(cluster, study.workdir, "rule_report")
    assert "--gpus" not in " ".join(args) and option(args, "-t") == "5"

    skipped = metrics_of(study.cell("gpus2"))
    assert skipped["status"] == "skipped"
    assert skipped["reason"] == CPU_STANDIN_SKIPPED.format(gpus=2)
    job_log = (study.workdir / "logs" / "train" / "tiny" / "gpus2" / "seed0.log").read_text()
    [(_, job)] = calls_for(cluster, study.workdir, "rule_train_wildcards_tiny_gpus2_0")
    assert re.search(rf"locked GPU\(s\) \d,\d .* in \.gpu-locks/slurm-job-{job}\n", job_log)
    baseline = metrics_of(study.cell("baseline"))
    assert baseline["environment"]["env"]["CUDA_VISIBLE_DEVICES"] in {str(d) for d in range(GPUS)}
    assert baseline["device"]["type"] == "cpu"  # a placeholder GPU: CUDA sees none


def test_scancel_mid_training_is_noticed_and_the_rerun_resumes_to_the_uninterrupted_result(
    cluster: Cluster, study: Study
) -> None:
    """The tanh job, held 2 steps into epoch 2 inside its SLURM job, is cancelled with scancel:
    it gets SIGTERM and stops with its epoch-1 checkpoint, the plugin sees CANCELLED, the other
    cells complete (--keep-going) and Snakemake exits non-zero naming the job, within the
    plugin's polling interval. The rerun submits tanh alone, which resumes from epoch 1 and
    ends bitwise like an uninterrupted run (test_each_cell_is_one_slurm_job... compares)."""
    log = study.first.log
    assert study.first.returncode != 0, log[-5000:]
    job = study.cancelled_job
    assert f"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'" in log, log[-5000:]
    assert cluster.completed_jobs()[job]["JobState"] == "CANCELLED"
    # noticed at the plugin's next squeue poll; its interval grows by 10 s per poll without news
    # and is capped at 180 s, so this bound holds on any machine, and no run can hang
    assert study.noticed_s < 200, study.noticed_s
    assert [(r, e, s) for _, r, e, s in study.held] == [(0, 2, 3)]
    job_log = study.workdir / ".snakemake" / "slurm_logs" / "rule_train" / f"tiny_{CANCELLED}_0"
    assert (job_log / f"{job}.log").exists()  # kept: a failed job's SLURM log stays
    # after the cancellation: no outputs Snakemake could take as complete, epoch 1's checkpoint
    assert study.after_cancel == (["checkpoint.pt", "checkpoint.pt.sha256"], 1)
    metrics = metrics_of(study.cell(CANCELLED))
    assert metrics["status"] == "completed" and metrics["resumed_from_epoch"] == 1
    assert [r["epoch"] for r in read_history(study.cell(CANCELLED))] == ["1", "2"]
    train_log = study.workdir / "logs" / "train" / "tiny" / CANCELLED / "seed0.log"
    assert "resumed from checkpoint at epoch 1" in train_log.read_text()


def test_the_shipped_profile_asks_sbatch_for_its_limits_and_a_refusal_ends_the_run(
    cluster: Cluster, study: Study, tmp_path: Path
) -> None:
    """workflow/profiles/slurm alone (partition gpu, 720 min, 32000 MB, 8 CPUs): the 2-GPU cell
    asks sbatch for exactly that. This cluster has no partition 'gpu', so sbatch refuses, and
    Snakemake ends at once with sbatch's message instead of waiting for a job that never was.
    (Only the plugin's first status interval is shortened, so that its shutdown is quick.)"""
    workdir = study_dir(tmp_path, ablations=["gpus2"])
    (workdir / "results" / "tiny").mkdir(parents=True)
    shutil.copy(
        study.workdir / "results" / "tiny" / "peak_flops.json",
        workdir / "results" / "tiny" / "peak_flops.json",
    )  # (no probe job)
    target = "results/tiny/gpus2/seed0/metrics.json"
    cmd = slurm_snakemake(
        workdir, target, "--slurm-init-seconds-before-status-checks", "1", overlay=False
    )
    result = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-4000:]
    [(args, answer)] = calls_for(cluster, workdir, "rule_train_wildcards_tiny_gpus2_0")
    assert answer == ""  # refused: no job id
    assert option(args, "--gpus") == "2" and option(args, "-p") == "gpu"
    assert (option(args, "-t"), option(args, "--mem")) == ("720", "32000")
    assert option(args, "--cpus-per-task") == "8"
    assert "SLURM sbatch failed" in log and "invalid partition" in log.lower(), log[-4000:]


def test_stop_cancels_the_jobs_and_waits_for_their_processes(
    tmp_path: Path, proc_env: dict[str, str]
) -> None:
    """`local_slurm.sh stop` with a job running: the job's processes (slurmstepd and what it
    started) are gone when it returns, not left running after the cluster."""
    reason = _slurm_missing()
    if reason:
        pytest.skip(reason)
    state = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp")) / "c"  # socket paths: < 108
    env = {**proc_env, "LOCAL_SLURM_DIR": str(state), "LOCAL_SLURM_GPUS": "0"}
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        for line in started.stdout.splitlines():
            if line.startswith("export "):
                key, value = line.removeprefix("export ").split("=", 1)
                env[key] = value.replace("$PATH", env["PATH"])
        fifo = tmp_path / "job-started"
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        wrap = f"echo $$ > {fifo}; exec sleep 600"
        submitted = subprocess.run(
            ["sbatch", "-o", str(tmp_path / "job.out"), "--wrap", wrap],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert submitted.returncode == 0, submitted.stderr
        ready, _, _ = select.select([reader], [], [], 120)  # the job writes its PID when it runs
        assert ready, f"the job never ran: {(state / 'log' / 'slurmd.log').read_text()[-2000:]}"
        job_pid = int(os.read(reader, 64))
        os.close(reader)
        assert Path(f"/proc/{job_pid}").exists()
    finally:
        stopped = subprocess.run(
            ["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120
        )
    assert stopped.returncode == 0, stopped.stderr
    assert not Path(f"/proc/{job_pid}").exists(), "the job's process outlived the cluster"
    assert not state.exists()
