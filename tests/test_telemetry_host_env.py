"""HostStats and collect_environment on a machine without a GPU."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet_bench.telemetry import HostStats, collect_environment

HOST_KEYS = {
    "process_cpu_s",
    "process_lifetime_cpu_s",
    "self_cpu_s",
    "children_cpu_s",
    "wall_s",
    "cpu_util_pct",
    "peak_rss_mib",
    "rss_mib",
    "threads",
    "interop_threads",
    "cpu_model",
    "logical_cpus",
    "usable_cpus",
}


def test_host_stats_counts_self_and_children() -> None:
    # Burn CPU for a fixed CPU time, not a fixed amount of work: psutil reads /proc's clock
    # ticks (10 ms), so a few ms of work (a fast machine's 300k squares) can count as 0.
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass"
    with HostStats() as host:
        exec(burn)
        subprocess.run([sys.executable, "-c", burn], check=True)
    s = host.summary()
    assert set(s) == HOST_KEYS
    assert s["self_cpu_s"] >= 0.15 and s["children_cpu_s"] >= 0.15
    assert s["process_cpu_s"] == pytest.approx(s["self_cpu_s"] + s["children_cpu_s"], abs=1e-3)
    assert s["wall_s"] > 0 and s["cpu_util_pct"] > 0
    assert s["peak_rss_mib"] >= s["rss_mib"] > 10
    assert s["threads"] == torch.get_num_threads()
    assert s["logical_cpus"] >= 1
    host.stop()  # idempotent: the first stop wins
    assert host.summary()["wall_s"] == s["wall_s"]


ENV_KEYS = {
    "timestamp_utc",
    "python",
    "platform",
    "hostname",
    "cpu_model",
    "cpu_flags",
    "cpu_capability",
    "torch",
    "torchvision",
    "numpy",
    "torch_cuda",
    "cudnn",
    "cuda_available",
    "cuda_device_count",
    "cuda_gpus",
    "driver_version",
    "nvml_gpus",
    "cuda_visible_devices",
    "git_commit",
    "git_dirty",
}


def test_collect_environment_keys(tmp_path: Path) -> None:
    env = collect_environment(torch.device("cpu"))
    assert set(env) >= ENV_KEYS
    json.dumps(env)  # serialisable as is
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", env["timestamp_utc"])
    if not torch.cuda.is_available():
        assert env["cuda_available"] is False and env["cuda_gpus"] == []
    if shutil.which("git") and (Path(__file__).resolve().parents[1] / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])
        assert isinstance(env["git_dirty"], bool)


def test_environment_without_git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = collect_environment(repo_dir=tmp_path)
    assert env["git_commit"] is None and env["git_dirty"] is None
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    env = collect_environment()
    assert env["git_commit"] is None and env["device"] is None
