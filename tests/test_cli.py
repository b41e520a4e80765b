"""CLI run selection: study cells (--study/--preset/--ablation/--seed), defaults, scaling reference."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from alexnet_bench import cli, launch
from alexnet_bench.cli import build_parser, load_run_config, main
from alexnet_bench.errors import BenchError, ConfigError

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "config.yaml"


def parse(*argv: str) -> Any:
    return build_parser().parse_args(["train", "--out", "unused", *argv])


def test_study_cell_from_preset_ablation_and_seed() -> None:
    cfg, labels = load_run_config(
        parse("--study", str(STUDY), "--preset", "tiny", "--ablation", "tanh", "--seed", "3")
    )
    assert labels == {"preset": "tiny", "ablation": "tanh", "seed": 3}
    assert cfg.model.activation == "tanh" and cfg.model.width == 0.125
    assert cfg.train.seed == 3 and cfg.train.epochs == 2


def test_overrides_apply_over_the_study_cell() -> None:
    cfg, _ = load_run_config(
        parse(
            "--study",
            str(STUDY),
            "--preset",
            "tiny",
            "--set",
            "train.epochs=1",
            "--config-json",
            '{"model": {"dropout": 0.0}}',
        )
    )
    assert cfg.train.epochs == 1 and cfg.model.dropout == 0.0 and cfg.model.width == 0.125


def test_no_config_uses_the_studys_default_preset_in_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(STUDY, tmp_path / "config.yaml")
    monkeypatch.chdir(tmp_path)
    cfg, labels = load_run_config(parse())
    assert labels == {"preset": "default", "ablation": "baseline", "seed": 0}
    default = yaml.safe_load(STUDY.read_text())["presets"]["default"]["run"]
    assert cfg.data.source == "synthetic" and cfg.train.epochs == default["train"]["epochs"]
    assert cfg.model.width == default["model"]["width"] != 1.0  # not the schema's full scale
    # an explicit --config-json means "this run config", not the study's preset
    cfg, labels = load_run_config(parse("--config-json", '{"train": {"epochs": 7}}'))
    assert labels == {} and cfg.train.epochs == 7 and cfg.model.width == 1.0


def test_no_config_and_no_study_gives_the_paper_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg, labels = load_run_config(parse())
    assert labels == {} and cfg.train.epochs == 90 and cfg.train.batch_size == 128


def test_bad_study_selections_fail_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown ablation 'no_relu'"):
        load_run_config(parse("--study", str(STUDY), "--ablation", "no_relu"))
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_run_config(parse("--study", str(STUDY), "--preset", "huge"))
    with pytest.raises(BenchError, match="pass --study PATH"):
        load_run_config(parse("--study", str(tmp_path / "missing.yaml")))
    (tmp_path / "run.yaml").write_text("train: {epochs: 1}\n")
    with pytest.raises(BenchError, match="is not a study config"):
        load_run_config(parse("--study", str(tmp_path / "run.yaml")))


def test_cli_error_for_unknown_ablation_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["train", "--out", str(tmp_path / "o"), "--study", str(STUDY), "--ablation", "no_relu"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: unknown ablation 'no_relu'")
    assert not (tmp_path / "o").exists()


def test_cell_labels_reach_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run_training(cfg, out, labels, dist, peak_flops_file=None, data_options=None):
        seen.update(labels=labels, parallel=cfg.runtime.parallel)
        return {"status": "completed", "epochs_completed": 0, "final": {}}

    monkeypatch.setattr("alexnet_bench.train.run_training", fake_run_training)
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "o"),
            "--study",
            str(STUDY),
            "--preset",
            "tiny",
            "--ablation",
            "gpus2_model",
            "--seed",
            "1",
            "--label",
            "seed=9",
        ]
    )
    assert code == 0
    assert seen["parallel"] == "model"
    assert seen["labels"] == {"preset": "tiny", "ablation": "gpus2_model", "seed": 9}


def test_help_documents_the_study_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--study", "--preset", "--ablation", "--seed", "--peak-flops"):
        assert option in text
    assert cli.DEFAULT_STUDY.name in text


def test_ddp_relaunch_keeps_the_peak_flops_file(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["train", "--out", "o", "--peak-flops", "results/default/peak_flops.json"]
    monkeypatch.setattr("sys.argv", ["alexnet-bench", *argv])
    command = launch.torchrun_command(2)
    assert command[-len(argv) :] == argv and "--nproc_per_node=2" in command


def test_ddp_ranks_share_the_jobs_threads() -> None:
    snakemake_env = dict.fromkeys(launch.THREAD_ENV_VARS, "2")  # what Snakemake sets for threads: 2
    assert launch.rank_thread_env(snakemake_env, 2) == dict.fromkeys(launch.THREAD_ENV_VARS, "1")
    assert launch.rank_thread_env({"OMP_NUM_THREADS": "8"}, 2)["MKL_NUM_THREADS"] == "4"
    assert launch.rank_thread_env({"OMP_NUM_THREADS": "1"}, 2)["OMP_NUM_THREADS"] == "1"
    assert set(launch.rank_thread_env({}, 2).values()) == {str(max(1, (os.cpu_count() or 2) // 2))}


def test_multi_device_cell_is_skipped_on_a_cpu_host_when_asked(tmp_path: Path) -> None:
    """cpu_standins: skip (the workflow's default): a 2-device cell on a host without GPUs is
    recorded as skipped, with the reason and the switch that trains it anyway."""
    out = tmp_path / "o"
    code = main(
        [
            "train",
            "--out",
            str(out),
            "--study",
            str(STUDY),
            "--preset",
            "tiny",
            "--ablation",
            "gpus2",
            "--cpu-standins",
            "skip",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "skipped" and "cpu_standins: run" in metrics["reason"]
    assert (out / "history.csv").exists()
