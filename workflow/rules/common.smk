# Helpers shared by the rules. Study logic lives in the alexnet_bench package (study.py);
# this file validates the config and exposes small functions for inputs/params/resources.
import hashlib
import json
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version, validate

from alexnet_bench.config import RunConfig, effective_stored_size, split_identity
from alexnet_bench.imagefolder import (
    STORE_VERSION,
    decoder_versions,
    store_candidates,
)
from alexnet_bench.errors import BenchError
from alexnet_bench.figure1.results import final_dir, init_dir, sweep_dir
from alexnet_bench.figure1.settings import ACTIVATIONS, INIT_RULES, Figure1Settings
from alexnet_bench.gpu_lock import physical_gpu_count
from alexnet_bench.reports import output_captions
from alexnet_bench.identity import store_identity
from alexnet_bench.versus.pairing import results_fingerprint
from alexnet_bench.study import (
    calibration_cells,
    cells,
    check_study,
    family_ablations,
    planned_data_identity,
    prepared_tree,
    resolve_calibration_run,
    resolve_run,
    study_identity,
)

# 9.2: params derived from input are not rerun triggers, so locations stay provenance.
min_version("9.2")


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


def _json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# A cell's identity is what it computes (alexnet_bench/identity.py): the run config's result
# keys and the content of its data. Both are params, which Snakemake tracks: a change reruns the
# cell. Its provenance (data.root, data.cache, the progress interval, the lock directory) reaches
# the job untracked, twice over: through params functions that take `input` (Snakemake counts
# them as derived from the input files and does not track them) returning an Untracked value
# (not a plain value, so Snakemake could not record it even if it tracked it). Moving the data
# or the cache therefore never reruns a cell; tests/test_identity.py checks it end to end.
class Untracked:
    """A params value Snakemake formats into the command but cannot record as a rerun trigger."""

    def __init__(self, text):
        self.text = str(text)

    def __str__(self):
        return self.text


def untracked(function):
    """A params function whose value reaches the job but never reruns it."""
    return lambda wildcards, input: Untracked(function(wildcards))


def run_config(wildcards):
    """The result keys of one cell's validated run config, as JSON for the CLI (tracked)."""
    return _json(split_identity(cell_config(wildcards).to_dict())[0])


def _provenance(wildcards):
    return _json(split_identity(cell_config(wildcards).to_dict())[1])


#: the provenance keys of one cell's run config, as JSON for the CLI (not tracked)
run_provenance = untracked(_provenance)


def run_data(wildcards):
    """The content identity of the data the cell reads, as JSON (tracked): the prepared stores'
    digests, else the source's identity as it is now. A store's digest comes from its token
    when the token was written for the tree state planned now; otherwise its prepare_data
    checkpoint must run first, and Snakemake asks again once it has (a rebuild that finds the
    same pixels reruns nothing)."""
    cfg = cell_config(wildcards)
    stores = [] if "candidate" in wildcards.keys() else cell_stores(cfg)
    if not stores:
        return _json(planned_data_identity(cfg))
    digests = {}
    for key, split, stored, suffix in stores:
        path = Path(token_path(key, split, stored, suffix))
        token = _read_token(path)
        stale = token is None or token.get("state") != prepare_state_of(key)
        if (
            stale and not workflow.remote_exec
        ):  # a cluster job reads what its planner wrote
            checkpoints.prepare_data.get(
                key=key, split=split, stored=stored, fmt=suffix
            )
            token = _read_token(path)
            if token is None or token.get("state") != prepare_state_of(key):
                raise WorkflowError(
                    f"the prepared-data token {path} was written for another state of the "
                    "tree, and no prepare_data job is planned to renew it (its Snakemake "
                    "metadata was removed?); rerun with --forcerun prepare_data"
                )
        if token is None:
            raise WorkflowError(
                f"no prepared-data token {path}; run the workflow's prepare"
            )
        digests[split] = token["digest"]
    return _json(store_identity(digests))


def rebuild_missing(wildcards):
    """A cell reading the study's own stores rebuilds one that is missing (the cache was
    emptied or re-pointed without it) instead of failing; a store the run names itself
    (its own data.cache) is the user's to build."""
    return "--rebuild-missing-data" if cell_stores(cell_config(wildcards)) else ""


def _read_token(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


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
PREPARED_TOKENS = "results/.prepared"


def _prepared_trees():
    """tree key -> the tree as it is now and what its prepare_data jobs need (bad-file rule:
    fail if any cell reading it fails on a bad file)."""
    trees = {}
    for ablation, seed in cells(config):
        cfg = resolve_run(config, PRESET, ablation, seed)
        tree = prepared_tree(config, cfg)
        if tree is None:
            continue
        entry = trees.setdefault(tree.key, {"tree": tree, "on_bad_image": "skip"})
        if entry["tree"].fingerprint != tree.fingerprint:
            raise WorkflowError(
                f"data.root '{entry['tree'].root}' and '{tree.root}' hold the same files (names "
                "and sizes) in another state (times); give the cells one copy, or change one"
            )
        if cfg.data.on_bad_image == "fail":
            entry["on_bad_image"] = "fail"
    return trees


PREPARED_TREES = _prepared_trees()


def cell_stores(cfg):
    """(tree key, split, stored size, format suffix) of every prepared store a run reads."""
    tree = prepared_tree(config, cfg)
    if tree is None:
        return []
    stored = effective_stored_size(cfg.data.image_size, cfg.data.stored_size)
    fmt = cfg.raw["data"].get("cache_format") or "raw"
    suffix = "" if fmt == "raw" else f"-{fmt}"
    return [(tree.key, split, stored, suffix) for split in ("train", "val")]


def store_format(suffix):
    """data.cache_format of a store's name suffix: "" -> raw, "-jpeg90" -> jpeg90."""
    return suffix.removeprefix("-") or "raw"


def token_path(key, split, stored, suffix):
    return f"{PREPARED_TOKENS}/{key}/{split}-{stored}px{suffix}.json"


PREPARED_STORES = sorted(
    {
        store
        for a, s in cells(config)
        for store in cell_stores(resolve_run(config, PRESET, a, s))
    }
)
_CHECKED_TOKENS = set()


def renew_tokens_of_missing_stores(stores):
    """A token says that a store of its digest lies in the study's cache. When none is there
    now (data_cache_dir re-pointed or emptied, the store deleted), the token is
    removed so that its prepare_data job runs again, on the cores given to it and before the
    cells, instead of every cell reading it rebuilding the store inside its training job while
    holding its GPU; a rebuild that finds the same pixels retrains nothing. Only a run that
    executes jobs removes it (a dry run says so; --touch, --summary, --dag... leave it alone).
    Each token is judged once, when first seen. Called for `prepare` and for each cell without
    results yet."""
    for key, split, stored, suffix in stores:
        token = Path(token_path(key, split, stored, suffix))
        if token in _CHECKED_TOKENS or not workflow.is_main_process:
            continue
        _CHECKED_TOKENS.add(token)
        recorded = _read_token(token)
        if recorded is None or recorded.get("state") != prepare_state_of(key):
            continue  # absent or stale: its prepare_data job runs anyway
        tree = prepared_entry(key)["tree"].tree_dir
        if store_candidates(
            tree, split, stored, store_format(suffix), recorded.get("digest")
        ):
            continue  # a store of its digest, whichever environment made it: cells read it
        where = f"{tree}/{split}-{stored}px{suffix}"
        if workflow.dryrun:
            logger.warning(
                f"prepared data {where} is not in data_cache_dir: the run rebuilds it in a "
                "prepare_data job first (this dry run does not list it); a rebuild that reads "
                "the same pixels retrains no cell"
            )
        elif _executes_jobs():
            logger.info(
                f"prepared data {where} is not in data_cache_dir: rebuilding it"
            )
            token.unlink(missing_ok=True)


def _executes_jobs():
    """Whether this Snakemake run executes jobs (not a dry run, --touch, --summary, --dag, ...,
    nor one trusting a dry run's cached view of the files)."""
    return (
        workflow.executor_plugin is not None
        and not workflow.dryrun
        and not workflow.touch
        and not workflow.dag_settings.trust_io_cache
    )


def prepared_token_files(wildcards):
    """Every store's token (`prepare`), those of stores missing from the cache renewed."""
    renew_tokens_of_missing_stores(PREPARED_STORES)
    return [token_path(*store) for store in PREPARED_STORES]


def prepared_entry(key):
    try:
        return PREPARED_TREES[key]
    except KeyError:
        raise WorkflowError(
            f"no cell of this study reads the prepared data '{key}'; "
            "ask for a training cell or `prepare`"
        ) from None


def prepared_inputs(wildcards):
    """The cell's tokens, ancient: a token rewritten by a rebuild (or a prepare job that found
    the store in place) reruns no cell; only a changed digest does (run_data). The tokens of
    stores missing from the cache are renewed first."""
    stores = cell_stores(cell_config(wildcards))
    w = wildcards
    if not Path(
        metrics_path(w.ablation, w.seed, w.preset)
    ).exists():  # completed: no store
        renew_tokens_of_missing_stores(stores)
    return [ancient(token_path(*store)) for store in stores]


def prepare_state_of(key):
    """What decides whether a tree's stores must be (re)built (tracked, location-free): the
    tree's state (fingerprint: relative paths, sizes and mtimes; the split rule), how bad
    files are treated, the store format and the decoders. Its token records it."""
    entry = prepared_entry(key)
    return _json(
        {
            "fingerprint": entry["tree"].fingerprint,
            "val_fraction": entry["tree"].val_fraction,
            "on_bad_image": on_bad_image_of(key),
            "store_version": STORE_VERSION,
            "decoders": decoder_versions(),
        }
    )


def prepare_state(wildcards):
    return prepare_state_of(wildcards.key)


def on_bad_image_of(key):
    """How the prepare job treats a corrupt image. With failed_runs: record it skips and lists
    it in the manifest, and each cell reading the store applies its own data.on_bad_image (a
    cell with 'fail' is then recorded as failed, naming the file); with failed_runs: fail the
    build itself fails on it, naming the file."""
    if config["failed_runs"] == "record":
        return "skip"
    return prepared_entry(key)["on_bad_image"]


def prepare_on_bad_image(wildcards):
    return on_bad_image_of(wildcards.key)


#: where the tree lies now (provenance: not tracked)
prepare_root = untracked(lambda wildcards: prepared_entry(wildcards.key)["tree"].root)
#: where the cache lies now (provenance: not tracked)
prepare_cache_dir = untracked(lambda wildcards: DATA_CACHE)


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
# what decides the figure1 study's results: its settings without the CIFAR-10 copy's location
FIG1_IDENTITY = _json(
    {
        **{
            k: v
            for k, v in config["figure1"].items()
            if k not in ("cifar10_root", "run")
        },
        "run": split_identity(config["figure1"].get("run") or {})[0],
    }
)


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


def figure1_run_config(stage, part):
    """Params function: one part (0 = result keys, tracked; 1 = provenance keys, untracked;
    "data" = the data identity, tracked) of the run config (JSON, without seed) of one sweep
    point or final arm."""

    def config_part(wildcards):
        try:
            lr = (
                FIG1.lr_for(wildcards.init, wildcards.activation, wildcards.lr)
                if stage == "sweep"
                else None  # a final run reads its rate from the selection
            )
            cfg = FIG1.run_config(wildcards.init, wildcards.activation, lr)
            if part == "data":
                return _json(planned_data_identity(RunConfig(cfg)))
        except BenchError as exc:
            raise WorkflowError(str(exc)) from None
        return _json(split_identity(cfg)[part])

    return untracked(config_part) if part == 1 else config_part


FIG1_TRAIN_FLAGS = f"--gpu-lock-dir {config['gpu_lock_dir']}" + (
    " --record-failures" if config["failed_runs"] == "record" else ""
)


# -- the comparison of two results directories (rules/compare.smk) ---------------------------
COMPARE = config["compare"]


def compare_side(role):
    """Params function: the configured base or new directory (base has no default)."""

    def side(wildcards):
        path = COMPARE.get(role)
        if not path:
            raise WorkflowError(
                f"config.yaml: compare.{role} is not set; pass --config "
                f"'compare={{{role}: results-v1/default}}' (a results directory or one cell)"
            )
        return path

    return side


def compare_fingerprint(wildcards):
    """Not inputs (results compared need not come from this workflow and are never retrained):
    their fingerprint reruns the comparison when either side's results change."""
    sides = [COMPARE.get(r) for r in ("base", "new")]
    return results_fingerprint(*[Path(s) for s in sides if s and Path(s).exists()])


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
