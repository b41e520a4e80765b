"""The workflow's jobs packed onto ``--cores`` and the ``gpu`` resource, as Snakemake runs them.

A list scheduler: whenever a job ends, every waiting job whose inputs are done is started, in
the study's order, if its threads (capped at ``--cores``, as Snakemake caps them) and its
``gpu`` resource fit into what is free. A job that trains on GPUs then waits, holding its
threads, until its devices are free (the GPU lock files of ``launch.py``; with ``--resources
gpu`` at least the host's GPUs this never happens).

Jobs running side by side slow each other down: ``slowdown(n, threads)`` is how much longer
everything takes with ``n`` jobs holding ``threads`` threads in total (:func:`contention`),
and every job's remaining work shrinks at ``1 / slowdown`` (processor sharing). A job's
``work`` is in seconds alone on the machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Job:
    name: str
    work: float  # seconds with the machine to itself
    threads: int = 1
    gpu: int = 0  # Snakemake `gpu` resource
    devices: int = 0  # GPUs it locks once started (0: none)
    deps: tuple[str, ...] = ()


@dataclass(frozen=True)
class Placed:
    name: str
    start: float  # Snakemake starts it
    run: float  # it has its devices and runs
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def contention(factor: float, measured_at: int, cpus: int) -> Callable[[int, int], float]:
    """``slowdown(n, threads)``: 1 for one job, ``factor`` at ``measured_at`` jobs side by side
    (linear in between and beyond), times the oversubscription ``threads / cpus`` above 1."""
    factor = max(1.0, factor)

    def slowdown(n: int, threads: int) -> float:
        shared = 1.0
        if measured_at > 1 and n > 1:
            shared = 1.0 + (factor - 1.0) * (n - 1) / (measured_at - 1)
        return shared * max(1.0, threads / max(1, cpus))

    return slowdown


def simulate(
    jobs: Sequence[Job],
    cores: int,
    gpu_limit: int | None = None,
    host_gpus: int = 0,
    slowdown: Callable[[int, int], float] = lambda n, t: 1.0,
) -> dict[str, Placed]:
    """Start, run and end time of every job (seconds from the start of the workflow)."""
    names = {j.name for j in jobs}
    for j in jobs:
        if gpu_limit is not None and j.gpu > gpu_limit:
            raise ConfigError(
                f"job {j.name} needs gpu={j.gpu} but --resources gpu={gpu_limit}; raise it"
            )
        if host_gpus and j.devices > host_gpus:
            raise ConfigError(f"job {j.name} needs {j.devices} GPUs, the host has {host_gpus}")
        missing = [d for d in j.deps if d not in names]
        if missing:
            raise ValueError(f"job {j.name} depends on unknown jobs {missing}")
    t = 0.0
    free_cores, free_gpu = cores, (math.inf if gpu_limit is None else gpu_limit)
    free_devices = host_gpus
    pending = list(jobs)
    locking: list[tuple[Job, float]] = []  # started, waiting for their devices
    running: dict[str, tuple[Job, float, float, float]] = {}  # job, start, run, remaining
    done: set[str] = set()
    placed: dict[str, Placed] = {}
    while pending or locking or running:
        for job in list(pending):
            threads = min(job.threads, cores)
            if all(d in done for d in job.deps) and threads <= free_cores and job.gpu <= free_gpu:
                pending.remove(job)
                free_cores -= threads
                free_gpu -= job.gpu
                locking.append((job, t))
        for job, start in list(locking):
            if not host_gpus or job.devices <= free_devices:
                locking.remove((job, start))
                free_devices -= job.devices if host_gpus else 0
                running[job.name] = (job, start, t, job.work)
        if not running:
            stuck = ", ".join(j.name for j in pending[:3]) or ", ".join(j.name for j, _ in locking)
            raise ConfigError(f"jobs can never start ({stuck}); check --cores and --resources")
        threads = sum(min(job.threads, cores) for job, *_ in running.values())
        rate = 1.0 / slowdown(len(running), threads)
        step = min(rem for *_, rem in running.values()) / rate
        t += step
        for name, (job, start, run, rem) in list(running.items()):
            left = rem - step * rate
            if left > 1e-9:
                running[name] = (job, start, run, left)
                continue
            del running[name]
            done.add(name)
            placed[name] = Placed(name, start, run, t)
            free_cores += min(job.threads, cores)
            free_gpu += job.gpu
            free_devices += job.devices if host_gpus else 0
    return placed
