# Helpers shared by the rules. Study logic lives in the alexnet_bench package (study.py);
# this file validates the config and exposes small functions for inputs/params/resources.
import hashlib
import json
from pathlib import Path

from snakemake.utils import min_version, validate

from alexnet_bench.errors import BenchError
from alexnet_bench.figure1.results import final_dir, init_dir, sweep_dir
from alexnet_bench.figure1.settings import ACTIVATIONS, INIT_RULES, Figure1Settings
from alexnet_bench.gpu_lock import physical_gpu_count
from alexnet_bench.reports import output_captions
from alexnet_bench.study import (
    calibration_cells,
    cells,
    check_study,
    family_ablations,
    prepared_stores,
    resolve_calibration_run,
    resolve_run,
)

min_version("8.0")


validate(config, workflow.source_path("../schemas/config.schema.yaml"))

try:
    check_study(config, base_dir=Path.cwd())
except BenchError as exc:
    raise WorkflowError(f"config.yaml: {exc}") from None

PRESET = config["preset"]
FIG1_RESULTS = "results/figure1"
REPORTS = "reports"
REPORT_FILES = [f"{REPORTS}/index.html", f"{REPORTS}/summary.md"]
USE_GPU_RESOURCE = config["gpu_jobs"] == "yes" or (
    config["gpu_jobs"] == "auto" and physical_gpu_count() > 0
)


wildcard_constraints:
    fmt=r"(-jpeg[0-9]+)?",
    split=r"train|val",
    stored=r"\d+",
    preset=r"[A-Za-z0-9_\-]+",
    candidate=r"[A-Za-z0-9_\-]+",
    ablation=r"[A-Za-z0-9_\-]+",
    seed=r"\d+",


def cell_config(wildcards):
    """The validated run config of a study cell, or of a calibration cell ({candidate})."""
    seed = int(wildcards.seed)
    try:
        if "candidate" in wildcards.keys():
            return resolve_calibration_run(
                config, wildcards.candidate, wildcards.ablation, seed
            )
        return resolve_run(config, wildcards.preset, wildcards.ablation, seed)
    except BenchError as exc:
        raise WorkflowError(str(exc)) from None


def run_config(wildcards):
    """The validated run config of one cell, as a JSON string for the CLI."""
    cfg = cell_config(wildcards)
    return json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))


def run_gpus(wildcards):
    """Devices the cell uses (runtime.gpus)."""
    return cell_config(wildcards).runtime.gpus


def gpu_resource(wildcards):
    """Snakemake `gpu` resource of a cell: its device count on GPU hosts, else 0."""
    return run_gpus(wildcards) if USE_GPU_RESOURCE else 0


def peak_file(wildcards):
    """The results directory's once-measured CPU peak (ancient: re-measuring never retrains)."""
    results = wildcards.get("preset", "calibration")
    return ancient(f"results/{results}/peak_flops.json")


# -- prepared data (rules/prepare.smk) ------------------------------------------------------
DATA_CACHE = str(config["data_cache_dir"] or "data-cache").rstrip("/")


def _prepared_trees():
    """tree directory name -> what its prepare_data jobs need (root, split rule, bad-file
    rule: fail if any cell reading it fails on a bad file)."""
    trees = {}
    for ablation, seed in cells(config):
        data = resolve_run(config, PRESET, ablation, seed).raw["data"]
        if not data.get("cache"):
            continue
        tree = trees.setdefault(
            Path(data["cache"]).name,
            {
                "root": data["root"],
                "val_fraction": data["val_fraction"],
                "on_bad_image": "skip",
            },
        )
        if data["on_bad_image"] == "fail":
            tree["on_bad_image"] = "fail"
    return trees


PREPARED_TREES = _prepared_trees()
PREPARED_MANIFESTS = sorted(
    {
        f"{store}/manifest.json"
        for a, s in cells(config)
        for store in prepared_stores(resolve_run(config, PRESET, a, s))
    }
)


def prepared_tree(tree):
    try:
        return PREPARED_TREES[tree]
    except KeyError:
        raise WorkflowError(
            f"no cell of this study reads the prepared data '{tree}'; "
            "ask for a training cell or `prepare`"
        ) from None


def prepare_on_bad_image(wildcards):
    """How the prepare job treats a corrupt image. With failed_runs: record it skips and lists
    it in the manifest, and each cell reading the store applies its own data.on_bad_image (a
    cell with 'fail' is then recorded as failed, naming the file); with failed_runs: fail the
    build itself fails on it, naming the file."""
    if config["failed_runs"] == "record":
        return "skip"
    return prepared_tree(wildcards.tree)["on_bad_image"]


def prepared_inputs(wildcards):
    """The stores a cell reads (ancient: a rebuilt store of the same tree state is the same
    data, and never retrains a cell)."""
    stores = prepared_stores(cell_config(wildcards))
    return [ancient(f"{store}/manifest.json") for store in stores]


def cell_gpus(ablation, seed):
    return resolve_run(config, PRESET, ablation, int(seed)).runtime.gpus


# Thread counts one training process of this study can have: the CPU peaks to measure.
PEAK_THREADS = sorted(
    {
        config["threads_per_job"] * d
        for d in {1} | {cell_gpus(a, s) for a, s in cells(config)}
    }
)


CPU_STANDINS_SKIPPED = config["cpu_standins"] == "skip" and physical_gpu_count() == 0


def job_threads(wildcards):
    """CPU threads: threads_per_job for each process of the job (one process when a
    multi-device cell is only recorded as skipped on a host without GPUs)."""
    devices = 1 if CPU_STANDINS_SKIPPED else run_gpus(wildcards)
    return config["threads_per_job"] * devices


def figure1_fingerprint():
    """sha256 of results/figure1/summary.json ("none" without one): the report shows it."""
    path = Path(FIG1_RESULTS) / "summary.json"
    if not path.is_file():
        return "none"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def metrics_path(ablation, seed, preset=PRESET):
    return f"results/{preset}/{ablation}/seed{seed}/metrics.json"


def results_dir(metrics_files, depth=2):
    """results/<preset> from results/<preset>/<ablation>/seed<n>/metrics.json files (depth 3:
    results/calibration from results/calibration/<candidate>/<ablation>/seed<n>/...)."""
    return str(Path(metrics_files[0]).parents[depth])


def study_metrics():
    """metrics.json of every cell of the study."""
    return [metrics_path(a, s) for a, s in cells(config)]


#: the ablation families of config.yaml (one `ablation_<family>` target each)
ABLATION_FAMILIES = sorted(
    {d["family"] for d in config["ablation_defs"].values()} - {"baseline"}
)


def family_metrics(family):
    """metrics.json of the baseline and the study's ablations of one family."""
    return [
        metrics_path(a, s)
        for a in family_ablations(config, family)
        for s in config["seeds"]
    ]


CALIBRATION_RESULTS = "results/calibration"
CALIBRATION_REPORTS = f"{REPORTS}/calibration"


def calibration_metrics():
    """metrics.json of every cell of the calibration sweep."""
    return [
        f"{CALIBRATION_RESULTS}/{c}/{a}/seed{s}/metrics.json"
        for c, a, s in calibration_cells(config)
    ]


# -- the figure1 study (rules/figure1.smk) --------------------------------------------------
try:
    FIG1 = Figure1Settings.from_config(config["figure1"], base_dir=Path.cwd())
except BenchError as exc:
    raise WorkflowError(f"config.yaml: {exc}") from None

FIG1_REPORTS = "reports/figure1"
FIG1_SETTINGS = json.dumps(config["figure1"], sort_keys=True, separators=(",", ":"))


wildcard_constraints:
    activation="|".join(ACTIVATIONS),
    init="|".join(INIT_RULES),
    lr=r"[0-9][0-9.e+-]*",


def figure1_sweep_metrics(wildcards):
    """metrics.json of every sweep run of one init ({init})."""
    init = wildcards.init
    return [
        f"{sweep_dir(FIG1_RESULTS, init, act, lr)}/seed{seed}/metrics.json"
        for act in ACTIVATIONS
        for lr in FIG1.grids[init][act]
        for seed in FIG1.sweep_seeds
    ]


def figure1_final_metrics():
    """metrics.json of every final run (all inits)."""
    return [
        f"{final_dir(FIG1_RESULTS, init, act)}/seed{seed}/metrics.json"
        for init in FIG1.inits
        for act in ACTIVATIONS
        for seed in FIG1.final_seeds
    ]


def figure1_selections():
    return [f"{init_dir(FIG1_RESULTS, init)}/selection.json" for init in FIG1.inits]


def figure1_run_config(stage):
    """Params function: the run config (JSON, without seed) of one sweep point or final arm."""

    def params(wildcards):
        try:
            lr = (
                FIG1.lr_for(wildcards.init, wildcards.activation, wildcards.lr)
                if stage == "sweep"
                else None  # a final run reads its rate from the selection
            )
            cfg = FIG1.run_config(wildcards.init, wildcards.activation, lr)
        except BenchError as exc:
            raise WorkflowError(str(exc)) from None
        return json.dumps(cfg, sort_keys=True, separators=(",", ":"))

    return params


FIG1_TRAIN_FLAGS = f"--gpu-lock-dir {config['gpu_lock_dir']}" + (
    " --record-failures" if config["failed_runs"] == "record" else ""
)


# -- the plan (rules/plan.smk) ---------------------------------------------------------------
def plan_gpu_option():
    """`--gpu-resource N` when Snakemake was given --resources gpu=N."""
    limit = workflow.global_resources.get("gpu")
    limit = getattr(limit, "value", limit)
    return f"--gpu-resource {int(limit)}" if limit is not None else ""


def plan_state(wildcards):
    """A fingerprint of what the plan reads besides the config: this host's GPUs, the cells'
    records and checkpoints, the peak-FLOP/s file and the report (sizes and times)."""
    results = Path("results") / PRESET
    paths = [results / "peak_flops.json", *(Path(p) for p in REPORT_FILES)]
    paths += [
        results / a / f"seed{s}" / name
        for a, s in cells(config)
        for name in (
            "metrics.json",
            "history.csv",
            "checkpoint.pt",
            "checkpoint.prev.pt",
        )
    ]
    parts = [f"gpus:{physical_gpu_count()}"]
    for path in paths:
        st = path.stat() if path.exists() else None
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}" if st else f"{path}:-")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
