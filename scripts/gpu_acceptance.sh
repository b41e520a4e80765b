#!/usr/bin/env bash
# GPU acceptance: validate and measure everything GPU-specific in one command, within 9 minutes
# on one H100. Run it on a machine with 1 or 2 NVIDIA GPUs, then commit the folder it writes.
#
#   bash scripts/gpu_acceptance.sh            # run every step (refuses on a machine without a GPU)
#   bash scripts/gpu_acceptance.sh --plan     # list the steps and their time budgets, run nothing
#   bash scripts/gpu_acceptance.sh --help
#
# See usage() below for the environment it needs and what it writes.
set -uo pipefail # not -e: a failing step is recorded and the next one still runs

REPO=$(cd "$(dirname "$0")/.." && pwd)
TOTAL_LIMIT_S=540 # 9 minutes: the sum of the budgets below stays under it, with slack for kills
KILL_GRACE_S=5    # SIGTERM at the budget, SIGKILL this much later

STEPS=(environment gpu_tests train_step real_data telemetry_overhead study check)
declare -A BUDGET=([environment]=15 [gpu_tests]=65 [train_step]=135 [real_data]=45
                   [telemetry_overhead]=60 [study]=195 [check]=15)
declare -A WHAT=(
  [environment]="nvidia-smi -q, nvidia-smi -L, python/torch/CUDA/driver/git environment, pip freeze"
  [gpu_tests]="pytest -m gpu: real NVML sampler, CUDA-event timer, peak FLOP/s, two-tower split on 1 and 2 GPUs, bf16 vs fp32 step (JUnit XML)"
  [train_step]="benchmarks/train_step.py --device cuda --size 224 --batch-sizes 256 --warmup 20 --steps 50 --suite-batches 4: reference loop vs suite step (bf16, compile) vs 100% MFU, input pipeline"
  [real_data]="benchmarks/input_pipeline.py --mode device --device cuda: a 2048-JPEG ImageNet-like tree, its prepared-data cache (raw, jpeg90) built on every core, the cached loaders vs the streaming loader feeding 224-px augmented batches to the GPU, nvjpeg decoding"
  [telemetry_overhead]="benchmarks/telemetry_overhead.py --device cuda --image-size 224 --width 1 --batch-size 256 --repeats 30: real NVML sampler + step timer on vs off"
  [study]="snakemake, scripts/gpu_acceptance_study.yaml over config.yaml: shapes10 at 224 px, GPU fast path, seeds 0 1 x baseline tanh (+ gpus2 gpus2_model: run on 2 GPUs, recorded as skipped on 1), report"
  [check]="scripts/gpu_acceptance_check.py: PASS/FAIL table of every assertion (acceptance.md/.json), exit 1 on any FAIL"
)

usage() {
  cat <<'EOF'
usage: bash scripts/gpu_acceptance.sh [--plan] [--out DIR] [--budget STEP=SECONDS ...]

Runs, in order and each under its own time budget (killed when it runs over, recorded as a
failure; the later steps still run): the environment capture, the gpu-marked tests, the
training-step benchmark at 224 px, the real-data input pipeline (a generated JPEG tree, its
prepared-data cache, the loaders feeding the GPU), the telemetry overhead benchmark, a short real study through
Snakemake on the GPU(s), and the assertions. Writes everything into one folder,
gpu-acceptance/<host>-<UTC date and time>/ (or --out DIR): steps.tsv, logs/<step>.log,
environment.json, pip-freeze.txt, env.txt, nvidia-smi.txt, gpu_tests.xml,
train_step_cuda.json/.csv, input_pipeline_cuda.json/.csv, telemetry_overhead_cuda.json/.csv, study/ (config.yaml, results/,
reports/, logs/) and acceptance.md/.json (the PASS/FAIL table). Exit status: 0 when every
assertion passes, 1 when one fails, 2 when this machine has no usable GPU (one-line refusal).
--budget STEP=SECONDS changes one step's budget (e.g. on a slower GPU: --budget study=400);
the 9-minute total is then no longer guaranteed.

Python: the first of
  $PYTHON                         an interpreter you name, e.g. PYTHON=/opt/conda/bin/python
  <repo>/.venv/bin/python         the project's uv environment (create it first, outside the
                                  budget: uv sync --locked)
  python3 on PATH                 an existing torch + torchvision install with this package
                                  added: pip install -e . --no-deps (plus, if missing there:
                                  snakemake pandas matplotlib seaborn jsonschema pyyaml psutil
                                  nvidia-ml-py pytest pytest-timeout)
is used for every step; Snakemake runs as "$PYTHON -m snakemake", and its jobs call
alexnet-bench through a shim that runs "$PYTHON -m alexnet_bench.cli", with this checkout first
on PYTHONPATH, so the code measured is always this checkout's.

After a run: git add gpu-acceptance/<folder> and commit it.
EOF
}

plan() {
  local total=0 i=1 name
  echo "GPU acceptance plan: each step is killed at its budget (SIGTERM, SIGKILL ${KILL_GRACE_S} s later)"
  for name in "${STEPS[@]}"; do
    printf '  %d. %-19s %4d s  %s\n' "$i" "$name" "${BUDGET[$name]}" "${WHAT[$name]}"
    total=$((total + BUDGET[$name]))
    i=$((i + 1))
  done
  printf 'total budget: %d s (limit %d s = 9 min on one H100%s)\n' "$total" "$TOTAL_LIMIT_S" \
    "$([ "$total" -gt "$TOTAL_LIMIT_S" ] && echo '; EXCEEDED by --budget' || true)"
  echo "output: gpu-acceptance/<host>-<UTC date and time>/ (one folder to commit)"
}

OUT="" PLAN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --plan) PLAN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --budget)
      step=${2%%=*} seconds=${2#*=}
      if [ -z "${BUDGET[$step]+set}" ] || ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
        echo "gpu_acceptance: --budget wants STEP=SECONDS with STEP one of: ${STEPS[*]}" >&2
        exit 2
      fi
      BUDGET[$step]=$seconds
      shift 2 ;;
    *) echo "gpu_acceptance: unknown option '$1'; see --help" >&2; exit 2 ;;
  esac
done

SUM_S=0
for name in "${STEPS[@]}"; do SUM_S=$((SUM_S + BUDGET[$name])); done
if [ "$PLAN" = 1 ]; then plan; exit 0; fi

refuse() {
  echo "gpu_acceptance: refused: $1; run it on a machine with 1 or 2 NVIDIA GPUs (--plan lists the steps)" >&2
  exit 2
}

if ! command -v nvidia-smi >/dev/null 2>&1; then
  refuse "no NVIDIA GPU here (nvidia-smi not found)"
fi
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  refuse "no NVIDIA GPU here (nvidia-smi -L lists none)"
fi

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then
  PY="$REPO/.venv/bin/python"
else
  PY=$(command -v python3 || command -v python || true)
fi
[ -n "$PY" ] || refuse "no python found (set PYTHON=/path/to/python)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null)
case "$NGPU" in '' | *[!0-9]*) NGPU=0 ;; esac
if [ "$NGPU" -lt 1 ]; then
  refuse "$PY has no torch that sees a CUDA device (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset})"
fi
missing=$("$PY" -c '
import importlib.util
names = ["alexnet_bench", "torchvision", "snakemake", "pytest", "pynvml", "pandas"]
print(" ".join(n for n in names if importlib.util.find_spec(n) is None))')
if [ -n "$missing" ]; then
  echo "gpu_acceptance: warning: $PY cannot import: $missing (the steps that need it will fail)" >&2
fi

STAMP=$(date -u +%Y-%m-%dT%H%MZ)
HOST=$(hostname -s 2>/dev/null || uname -n)
OUT=${OUT:-"$REPO/gpu-acceptance/$HOST-$STAMP"}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
: >"$OUT/steps.tsv"
SHIM=$(mktemp -d)
trap 'rm -rf "$SHIM"' EXIT
printf '#!/bin/sh\nexec "%s" -m alexnet_bench.cli "$@"\n' "$PY" >"$SHIM/alexnet-bench"
chmod +x "$SHIM/alexnet-bench"
export PATH="$SHIM:$PATH" PYTHONUNBUFFERED=1
export PY OUT REPO NGPU
# SECONDS counts from the start of this script; raised budgets (--budget) raise the deadline
DEADLINE=$((SUM_S + 25 > TOTAL_LIMIT_S ? SUM_S + 25 : TOTAL_LIMIT_S))

echo "gpu_acceptance: $NGPU GPU(s), python $PY, writing $OUT"
plan

# run_step NAME CMD...: run CMD under the step's budget (never past the overall deadline, less
# the check's budget), its output in logs/NAME.log and on the terminal, a row in steps.tsv.
run_step() {
  local name=$1 budget=${BUDGET[$1]} start rc left
  shift
  if [ "$name" != check ]; then
    left=$((DEADLINE - SECONDS - BUDGET[check] - KILL_GRACE_S))
    [ "$left" -lt "$budget" ] && budget=$((left > 1 ? left : 1))
  fi
  echo "== [$(date -u +%H:%M:%S)] $name (budget ${budget} s)"
  start=$SECONDS
  # In the background so that Ctrl-C reaches this script, which then stops the step (timeout
  # runs it in a process group of its own and forwards SIGTERM to all of it).
  timeout --kill-after="$KILL_GRACE_S" "$budget" "$@" > >(tee "$OUT/logs/$name.log") 2>&1 &
  STEP_PID=$!
  wait "$STEP_PID"
  rc=$?
  STEP_PID=""
  printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$((SECONDS - start))" "$rc" >>"$OUT/steps.tsv"
  echo "== $name: exit $rc after $((SECONDS - start)) s"
  return "$rc"
}

capture_environment() {
  nvidia-smi -q >"$OUT/nvidia-smi.txt" 2>&1
  nvidia-smi -L >"$OUT/nvidia-smi-L.txt" 2>&1
  env | grep -E '^(CUDA|NVIDIA|NCCL|TORCH|PYTORCH|OMP|MKL|SLURM|PYTHON)' | sort >"$OUT/env.txt"
  "$PY" -m pip freeze >"$OUT/pip-freeze.txt" 2>/dev/null ||
    uv pip freeze --python "$PY" >"$OUT/pip-freeze.txt" 2>/dev/null || true
  "$PY" - <<'EOF'
import json, os, torch
from alexnet_bench.telemetry.environment import collect_environment
env = collect_environment(torch.device("cuda", 0))
env["python_executable"] = os.environ["PY"]
with open(os.path.join(os.environ["OUT"], "environment.json"), "w") as fh:
    json.dump(env, fh, indent=2, default=str)
print(f"torch {env.get('torch')}, CUDA {env.get('torch_cuda')}, driver {env.get('driver_version')}, "
      f"{env.get('cuda_device_count')} GPU(s): {[g.get('name') for g in env.get('cuda_gpus') or []]}")
EOF
}

run_study() {
  local study="$OUT/study"
  mkdir -p "$study"
  cp "$REPO/config.yaml" "$study/config.yaml"
  cp "$REPO/scripts/gpu_acceptance_study.yaml" "$study/gpu_acceptance_study.yaml"
  (cd "$study" && "$PY" -m snakemake --snakefile "$REPO/workflow/Snakefile" \
    --configfile config.yaml gpu_acceptance_study.yaml --cores all --resources "gpu=$NGPU")
}

STEP_PID=""
interrupted() {
  [ -n "$STEP_PID" ] && kill -TERM "$STEP_PID" 2>/dev/null && wait "$STEP_PID"
  echo "gpu_acceptance: interrupted; the steps so far are in $OUT" >&2
  exit 130
}
trap interrupted INT TERM

export -f capture_environment run_study
cd "$REPO" || exit 2
run_step environment bash -c capture_environment
# Only the files holding gpu tests (collecting all would need the dev-only test dependencies);
# addopts without --benchmark-disable, which needs pytest-benchmark; junit_family xunit1 keeps
# the values tests record (record_property) without a warning.
mapfile -t GPU_TEST_FILES < <(grep -l 'pytest.mark.gpu' tests/test_*.py)
run_step gpu_tests "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts="-ra --strict-markers" \
  -o junit_family=xunit1 --junitxml="$OUT/gpu_tests.xml" "${GPU_TEST_FILES[@]}"
run_step train_step "$PY" benchmarks/train_step.py --device cuda --size 224 --batch-sizes 256 \
  --warmup 20 --steps 50 --suite-batches 4 --out "$OUT/train_step_cuda.json"
rm -rf "$OUT/.train_step_cuda_scratch"
run_step real_data "$PY" benchmarks/input_pipeline.py --mode device --device cuda \
  --make-tree "$OUT/.real_data/tree" --tree-images 2048 --cache-dir "$OUT/.real_data/cache" \
  --out "$OUT/input_pipeline_cuda.json"
rm -rf "$OUT/.real_data"
run_step telemetry_overhead "$PY" benchmarks/telemetry_overhead.py --device cuda --image-size 224 \
  --width 1 --batch-size 256 --repeats 30 --out "$OUT/telemetry_overhead_cuda.json"
run_step study bash -c run_study
if [ -d "$OUT/study/.snakemake/log" ]; then cp "$OUT"/study/.snakemake/log/*.log "$OUT/logs/" 2>/dev/null; fi
rm -rf "$OUT/study/.snakemake" "$OUT/study/.gpu-locks"
run_step check "$PY" "$REPO/scripts/gpu_acceptance_check.py" "$OUT" --gpus "$NGPU"
status=$?
echo "gpu_acceptance: $([ $status -eq 0 ] && echo PASS || echo FAIL) after $SECONDS s; table: $OUT/acceptance.md; commit the folder: git add ${OUT#"$REPO"/}"
exit "$status"
