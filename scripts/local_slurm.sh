#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, to try workflow/profiles/slurm on.
#
#   scripts/local_slurm.sh start    # munged, slurmctld and slurmd, ready in seconds
#   eval "$(scripts/local_slurm.sh env)"   # SLURM_CONF and PATH for sbatch, squeue, snakemake
#   scripts/local_slurm.sh status   # the daemons' PIDs, sinfo and squeue
#   scripts/local_slurm.sh stop     # cancels its jobs, waits for their processes, stops the
#                                   # daemons this script started (by PID), deletes DIR
#
# Needs the Debian/Ubuntu packages slurmctld, slurmd, slurm-client and munge
# (apt-get install --no-install-recommends slurmctld slurmd slurm-client munge); run as root
# (slurmd starts jobs as their user). Nothing under /etc is read or written and no system
# service is touched: the config, the munge key, state, spool, logs and PID files all live in
# DIR (default ${TMPDIR:-/tmp}/alexnet-bench-slurm-<uid>; set LOCAL_SLURM_DIR to change it),
# the daemons listen on free ports of 127.0.0.1, and `stop` signals only the PIDs that `start`
# recorded (after checking that each is still the daemon it started).
#
# The cluster: one node `localhost` (127.0.0.1) with this machine's CPUs, RealMemory
# LOCAL_SLURM_MEM_MB (default 2048) and LOCAL_SLURM_GPUS (default 2) placeholder GPUs: GRES
# entries backed by device files with the null device's numbers, so SLURM schedules --gpus=N
# and sets CUDA_VISIBLE_DEVICES in the job, but there is no GPU behind them (CUDA sees none).
# One partition `debug`; no accounting daemon, so sacct does not work: follow jobs with squeue,
# which lists finished jobs for MinJobAge = 300 s, or read DIR/log/jobcomp.txt (every finished
# job, JobCompType=jobcomp/filetxt). proctrack/linuxproc, task/none, select/cons_tres.
#
# Inside jobs, the `env` line's PATH puts DIR/bin first: an srun that finds this cluster's
# config (see write_config). Use the workflow through workflow/profiles/local-slurm (docs/cluster.md).
set -euo pipefail

DIR=${LOCAL_SLURM_DIR:-${TMPDIR:-/tmp}/alexnet-bench-slurm-$(id -u)}
MEM_MB=${LOCAL_SLURM_MEM_MB:-2048}
GPUS=${LOCAL_SLURM_GPUS:-2}
START_TIMEOUT_S=${LOCAL_SLURM_START_TIMEOUT_S:-60}
CONF=$DIR/etc/slurm.conf
DAEMONS=(munged slurmctld slurmd)

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

die() {
    echo "local_slurm: $*" >&2
    exit 1
}

# The command line of a PID (empty if it is gone).
cmdline_of() {
    tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true
}

# PID recorded for a daemon, if that process is still the daemon started from $DIR.
running_pid() {
    local name=$1 file=$DIR/run/$1.pid pid
    [[ -s $file ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [[ -n $pid ]] || return 1
    case "$(cmdline_of "$pid")" in
        *"$name"*"$DIR"*) echo "$pid" ;;
        *) return 1 ;;
    esac
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

need() {
    local missing=() cmd
    for cmd in munged mungekey slurmctld slurmd sbatch squeue scontrol sinfo; do
        command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$cmd" >/dev/null 2>&1 \
            || missing+=("$cmd")
    done
    if ((${#missing[@]})); then
        die "not installed: ${missing[*]}; apt-get install --no-install-recommends slurmctld slurmd slurm-client munge"
    fi
    [[ $(id -u) == 0 ]] || die "run as root: slurmd must start jobs as their user"
}

write_config() {
    local cpus ctld_port slurmd_port gres="" real_srun
    # the real srun: PATH without this cluster's bin/ (where its shim goes)
    real_srun=$(PATH=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$DIR/bin" | paste -sd:) command -v srun)
    cpus=$(nproc)
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    while [[ $slurmd_port == "$ctld_port" ]]; do slurmd_port=$(free_port); done
    if ((GPUS > 0)); then
        gres="Gres=gpu:$GPUS"
        for ((i = 0; i < GPUS; i++)); do
            # a placeholder "device": the null device's numbers (SLURM wants a character
            # device to set CUDA_VISIBLE_DEVICES), or an empty file where mknod is not allowed
            mknod "$DIR/dev/gpu$i" c 1 3 2>/dev/null || : >"$DIR/dev/gpu$i"
        done
        echo "NodeName=localhost Name=gpu File=$DIR/dev/gpu[0-$((GPUS - 1))]" >"$DIR/etc/gres.conf"
    fi
    # The executor plugin's job step (snakemake-executor-plugin-slurm-jobstep) drops every
    # SLURM_* variable but the job's identity before its nested `srun`, SLURM_CONF included, so
    # inside a job srun would not find this cluster's config: jobs get PATH with this shim first.
    cat >"$DIR/bin/srun" <<EOF
#!/bin/sh
# Written by scripts/local_slurm.sh: srun with this cluster's config.
SLURM_CONF=$CONF exec $real_srun "\$@"
EOF
    chmod 0755 "$DIR/bin/srun"
    cat >"$CONF" <<EOF
# Written by scripts/local_slurm.sh: a single-node test cluster (see that script).
ClusterName=localtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/run/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MpiDefault=none
ReturnToService=2
# finished jobs stay visible to squeue (the executor plugin's status source without sacct)
MinJobAge=300
# scancel: SIGTERM, then SIGKILL after KillWait seconds
KillWait=10
InactiveLimit=0
GresTypes=gpu
DefMemPerCPU=$((MEM_MB / cpus))
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$MEM_MB $gres State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=60 State=UP
EOF
}

# Whether DIR may be deleted: absent, empty, or a cluster directory this script wrote.
ours() {
    [[ ! -e $DIR ]] || [[ -z $(ls -A "$DIR" 2>/dev/null) ]] \
        || grep -qs '^# Written by scripts/local_slurm.sh' "$CONF"
}

start() {
    need
    if running_pid slurmctld >/dev/null || running_pid slurmd >/dev/null \
        || running_pid munged >/dev/null; then
        die "already running from $DIR (scripts/local_slurm.sh stop first)"
    fi
    ours || die "$DIR exists and is not a cluster directory of this script; set LOCAL_SLURM_DIR"
    rm -rf "$DIR"
    mkdir -p "$DIR"/{bin,etc,run,log,state,spool,dev,munge}
    chmod 0700 "$DIR" "$DIR/munge"
    chmod 0755 "$DIR/run"
    write_config

    # munge: a fresh key, its own socket (clients find it through AuthInfo=socket=...)
    mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null \
        || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$DIR/munge/munge.key"
    PATH=$PATH:/usr/sbin munged --force --key-file="$DIR/munge/munge.key" \
        --socket="$DIR/run/munge.socket" --pid-file="$DIR/run/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start: $(tail -n 5 "$DIR/log/munged.log" 2>/dev/null)"

    # -c: a cold start (no state from an earlier cluster); -i: ignore unreadable state
    PATH=$PATH:/usr/sbin slurmctld -c -i -f "$CONF" \
        || die "slurmctld did not start: $(tail -n 5 "$DIR/log/slurmctld.log" 2>/dev/null)"
    PATH=$PATH:/usr/sbin slurmd -N localhost -f "$CONF" \
        || die "slurmd did not start: $(tail -n 5 "$DIR/log/slurmd.log" 2>/dev/null)"

    # Ready when the node is idle in sinfo (the daemons have registered with each other).
    local deadline=$((SECONDS + START_TIMEOUT_S)) state=""
    while ((SECONDS < deadline)); do
        state=$(SLURM_CONF=$CONF sinfo -h -n localhost -o %T 2>/dev/null || true)
        if [[ $state == idle ]]; then
            echo "local SLURM cluster ready: 1 node, $(nproc) CPUs, ${MEM_MB} MB, $GPUS placeholder GPU(s); partition debug"
            env_lines
            return 0
        fi
        sleep 0.5
    done
    echo "local_slurm: the node is not idle after ${START_TIMEOUT_S}s (state '${state:-none}'); logs:" >&2
    tail -n 20 "$DIR"/log/*.log >&2 || true
    stop_daemons
    exit 1
}

# What a shell needs to use this cluster (sbatch, squeue, snakemake --profile ...).
env_lines() {
    echo "export SLURM_CONF=$CONF"
    echo "export PATH=$DIR/bin:\$PATH"
}

stop_daemons() {
    local name pid stopped=()
    for name in slurmd slurmctld munged; do
        pid=$(running_pid "$name") || continue
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do
            [[ -d /proc/$pid ]] || break
            sleep 0.1
        done
        if [[ -d /proc/$pid ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        stopped+=("$name ($pid)")
    done
    if ((${#stopped[@]})); then
        echo "stopped: ${stopped[*]}"
    else
        echo "nothing of $DIR was running"
    fi
}

# PIDs of this cluster's job steps (slurmstepd with its working directory or a file in DIR)
# and of every process they started.
job_pids() {
    local pid link steps=() queue=() all=() child
    for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
        for link in /proc/$pid/cwd /proc/$pid/fd/*; do
            if [[ $(readlink "$link" 2>/dev/null) == "$DIR"/* ]]; then
                steps+=("$pid")
                break
            fi
        done
    done
    queue=("${steps[@]}")
    while ((${#queue[@]})); do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        all+=("$pid")
        for child in $(pgrep -P "$pid" 2>/dev/null || true); do queue+=("$child"); done
    done
    echo "${all[@]}"
}

# Cancel every job of this cluster and wait until no process of any job is left: slurmstepd
# and the job's processes do not stop with slurmd, so stopping the daemons alone would leave
# them running (and writing) after the cluster is gone.
stop_jobs() {
    local ids pids deadline
    if running_pid slurmctld >/dev/null; then
        ids=$(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null || true)
        if [[ -n $ids ]]; then
            # shellcheck disable=SC2086
            SLURM_CONF=$CONF scancel $ids 2>/dev/null || true
        fi
    fi
    # scancel sends SIGTERM and SIGKILL after KillWait (10 s); give that its time, then kill
    deadline=$((SECONDS + 30))
    while pids=$(job_pids) && [[ -n $pids ]] && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        deadline=$((SECONDS + 10))
        while pids=$(job_pids) && [[ -n $pids ]] && ((SECONDS < deadline)); do sleep 0.1; done
        [[ -z $pids ]] || echo "local_slurm: job processes $pids did not stop" >&2
    fi
}

stop() {
    stop_jobs
    stop_daemons
    if [[ ${1:-} != --keep ]] && ours; then
        rm -rf "$DIR"
    fi
}

status() {
    local name pid any=1
    for name in "${DAEMONS[@]}"; do
        if pid=$(running_pid "$name"); then
            echo "$name: running (PID $pid)"
            any=0
        else
            echo "$name: not running"
        fi
    done
    if ((any == 0)) && [[ -f $CONF ]]; then
        env_lines
        SLURM_CONF=$CONF sinfo || true
        SLURM_CONF=$CONF squeue --states=all || true
    fi
    return $any
}

case ${1:-} in
    start) start ;;
    stop) stop "${2:-}" ;;
    status) status ;;
    env)
        [[ -f $CONF ]] || die "no cluster in $DIR (scripts/local_slurm.sh start)"
        env_lines
        ;;
    *) usage ;;
esac
