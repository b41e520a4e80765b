"""Fast-path switches: recorded in metrics.json and no accuracy regression (CPU-feasible parts).

On CPU the feasible fast-path parts are channels_last and bf16 autocast (torch.compile is
covered by its fallback test; fused SGD and CUDA graphs are CUDA-only). Two levels of check:

* one step, deterministic: the fast step's loss and gradients equal the fp32 step's within the
  precision of its arithmetic. Measured against a float64 reference with He init: fp32 and
  channels_last gradients are within 1.5e-6, bf16 autocast within 0.10-0.16 (relative norm,
  per tensor, through 8 layers). Under the paper's N(0, 0.01) init the problem is
  ill-conditioned (near-uniform outputs; even fp32 is 1e-2 off float64 at conv1), so He init;
* whole short runs: training at this scale is chaotic (a 1e-6 change in epoch 1 becomes a
  0.1 change in validation error by epoch 3, for channels_last alone too), so the curves are
  compared as means over seeds, with a tolerance near the seed-to-seed spread.
"""

from __future__ import annotations

import csv
import itertools
import statistics
from pathlib import Path

import pytest
import torch

from alexnet_bench.config import RunConfig
from alexnet_bench.train import Trainer, run_training

from .conftest import tiny_run

FAST = {"channels_last": True, "amp": "bf16"}
# Measured on seeds 0-3: this setting lowers the train loss by 0.81-1.38 in 8 epochs (~6 s/run).
# At 5 epochs some runs were still on the initial plateau on another CPU (a drop of 0.08 in CI),
# too close to the "learns" bar: the plateau's length is chaotic, so the runs go past it.
CURVE_RUN = {
    "model": {"width": 0.125, "init": "kaiming", "dropout": 0.0},
    "augment": {"crop_flip": False, "pca_lighting": False},
    "data": {"num_train": 960, "num_val": 200},
    "train": {"epochs": 8, "lr": 0.02},
}


def curve(out: Path, key: str) -> list[float]:
    with open(out / "history.csv") as fh:
        return [float(r[key]) for r in csv.DictReader(fh)]


def one_step(tmp_path: Path, **runtime: object) -> tuple[float, list[torch.Tensor]]:
    """Loss and gradients of the first training step of a fixed-seed tiny run."""
    model = {"width": 0.125, "init": "kaiming", "dropout": 0.0}  # dropout masks vary by dtype
    cfg = RunConfig(tiny_run(model=model, runtime={"device": "cpu", "threads": 1, **runtime}))
    trainer = Trainer(cfg, tmp_path / ("_".join(map(str, runtime.values())) or "plain"))
    images, target = next(iter(trainer.data.train))
    gen = torch.Generator(device=trainer.device).manual_seed(0)
    loss, logits = trainer.train_step(images, target, gen)
    assert logits.shape == (target.shape[0], trainer.data.num_classes)
    return float(loss), [p.grad.detach().float().clone() for p in trainer.model.parameters()]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize(
    ("runtime", "loss_tol", "grad_tol"),
    [({"channels_last": True}, 1e-5, 1e-4), (FAST, 1e-2, 0.3)],
    ids=["channels_last", "channels_last+bf16"],
)
def test_fast_step_computes_the_fp32_step(
    tmp_path: Path, runtime: dict, loss_tol: float, grad_tol: float
) -> None:
    plain_loss, plain_grads = one_step(tmp_path)
    fast_loss, fast_grads = one_step(tmp_path, **runtime)
    assert fast_loss == pytest.approx(plain_loss, rel=loss_tol)
    errors = [relative_error(f, p) for f, p in zip(fast_grads, plain_grads, strict=True)]
    assert max(errors) < grad_tol, errors
    # The check can fail: the same gradient with its filters shuffled is nowhere near.
    assert relative_error(plain_grads[0].roll(1, 0), plain_grads[0]) > 3 * grad_tol


BF16_LOSS_REL_TOL = 1e-2  # the bf16 tolerance of test_fast_step_computes_the_fp32_step


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_step_matches_fp32_on_cuda(tmp_path: Path, record_property) -> None:
    """On the GPU, the fast step (bf16 autocast + channels_last) computes the suite's fp32 step
    (TF32 matmuls, as every amp: off GPU run) within the tolerances tested on CPU. The values
    go into the JUnit XML (scripts/gpu_acceptance.sh reads them)."""
    plain_loss, plain_grads = one_step(tmp_path, device="cuda")
    fast_loss, fast_grads = one_step(tmp_path, device="cuda", channels_last=True, amp="bf16")
    loss_rel = abs(fast_loss - plain_loss) / abs(plain_loss)
    grad_rel = max(relative_error(f, p) for f, p in zip(fast_grads, plain_grads, strict=True))
    record_property("fp32_loss", plain_loss)
    record_property("bf16_loss", fast_loss)
    record_property("bf16_loss_rel_diff", loss_rel)
    record_property("bf16_loss_rel_tolerance", BF16_LOSS_REL_TOL)
    record_property("bf16_grad_max_rel_error", grad_rel)
    assert loss_rel < BF16_LOSS_REL_TOL and grad_rel < 0.3, (loss_rel, grad_rel)


def test_fast_steps_track_the_plain_steps_and_learn(tmp_path: Path) -> None:
    """30 steps on two fixed batches from one init (memorising 64 images: no plateau, so no
    chaos-length question). Measured on the 2-vCPU AMD EPYC VM: the fast (channels_last + bf16)
    losses stay within 0.02 of the fp32 ones for 15 steps, then the two drift apart as any
    rounding change makes them; both fall from 2.37 to at most 0.94 over the last 10 steps. A
    fast path that does not learn stays near ln 10 = 2.3, one that computes another step leaves
    the plain losses within a few steps."""
    plain, fast = (
        fixed_batch_losses(tmp_path / name, runtime)
        for name, runtime in (("plain", {}), ("fast", FAST))
    )
    assert fast[:15] == pytest.approx(plain[:15], abs=0.1), (plain, fast)
    for losses in (plain, fast):
        assert min(losses[-10:]) < losses[0] - 0.8, (plain, fast)


def fixed_batch_losses(out: Path, runtime: dict, steps: int = 30) -> list[float]:
    """The training losses of ``steps`` steps alternating two fixed batches of 32 images."""
    model = {"width": 0.125, "init": "kaiming", "dropout": 0.0}
    cfg = tiny_run(
        model=model,
        data={"num_train": 64, "num_val": 40},
        augment={"crop_flip": False, "pca_lighting": False},
        runtime={"device": "cpu", "threads": 1, **runtime},
    )
    trainer = Trainer(RunConfig(cfg), out)
    batches = list(itertools.islice(iter(trainer.data.train), 2))
    gen = torch.Generator(device=trainer.device).manual_seed(0)
    return [float(trainer.train_step(*batches[i % 2], gen)[0]) for i in range(steps)]


NATIVE_BF16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@pytest.mark.slow
@pytest.mark.skipif(
    not NATIVE_BF16,
    reason="bf16 is emulated on this CPU (no AVX512-BF16/AMX): 6x slower than fp32 (45 vs 7 s "
    "per epoch measured), 20+ min for these 8 runs; the fixed-batch test above covers it",
)
@pytest.mark.timeout(1500)  # 6-9.5 min on a 2-vCPU VM with native bf16 shared with other work
def test_fast_path_training_curves_track_the_plain_curves(tmp_path: Path) -> None:
    # Single runs are chaotic (fp32 rounding alone moves a final loss by ~0.2); seed means are
    # steadier. Measured over seeds 0-3: the plain runs' final losses spread with sd 0.19 (the
    # standard error of a difference of two 4-seed means is ~0.14); the fast vs plain mean curves
    # differ by at most 0.08 per epoch, mean val errors by 0.01. A broken fast path (no
    # learning) would sit ~1.0 above the plain curve by epoch 8, far outside the 0.3 tolerance.
    # One run in four may stall on the plateau: on the 2-vCPU AMD EPYC test VM the plain run of
    # seed 2 ends at 2.23 (from 2.34; the other seven drop by 0.72-1.18), so "learns" is asked
    # of three runs in four per variant and of each variant's mean curve.
    seeds = (0, 1, 2, 3)
    losses: dict[str, list[list[float]]] = {"plain": [], "fast": []}
    val_errors: dict[str, list[float]] = {"plain": [], "fast": []}
    for seed in seeds:
        for name, runtime in (("plain", {}), ("fast", FAST)):
            run = tiny_run(**CURVE_RUN, runtime={"device": "cpu", "threads": 1, **runtime})
            run["train"]["seed"] = seed
            out = tmp_path / f"{name}{seed}"
            metrics = run_training(RunConfig(run), out)
            if name == "fast":
                rt = metrics["runtime"]
                assert (rt["amp"], rt["channels_last"], rt["compile"]) == ("bf16", True, "off")
                assert metrics["config"]["runtime"]["channels_last"] is True
            losses[name].append(curve(out, "train_loss"))
            val_errors[name].append(metrics["final"]["val_top1_error"])
    for name, curves in losses.items():
        learned = [c[-1] < c[0] - 0.4 for c in curves]
        assert sum(learned) >= 3, (name, curves)  # (nearly) every run learns
    mean_curve = {k: [statistics.mean(e) for e in zip(*v, strict=True)] for k, v in losses.items()}
    assert all(c[-1] < c[0] - 0.4 for c in mean_curve.values()), mean_curve
    assert mean_curve["fast"] == pytest.approx(mean_curve["plain"], abs=0.3)
    mean_val = {k: statistics.mean(v) for k, v in val_errors.items()}
    assert mean_val["fast"] == pytest.approx(mean_val["plain"], abs=0.1)
    assert mean_val["plain"] < 0.75  # well under chance (0.9): the comparison means something


def test_compile_failure_falls_back_to_eager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    trainer = Trainer(RunConfig(tiny_run(runtime={"device": "cpu", "compile": True})), tmp_path)
    assert trainer.compile_status.startswith("unavailable: RuntimeError")
    assert trainer.train_model is trainer.model


def test_compile_error_at_the_first_step_falls_back_and_redoes_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dynamo/inductor errors surface at the first call, not at torch.compile()."""
    calls = []

    class FailsWhenCalled(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape)
            raise RuntimeError("inductor: no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda model, mode=None: FailsWhenCalled())
    run = tiny_run(runtime={"device": "cpu", "threads": 1, "compile": True})
    metrics = run_training(RunConfig(run), tmp_path)
    assert len(calls) == 1  # tried once, then eager for the rest of the run
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 2
    assert metrics["runtime"]["compile"].startswith("failed at first step: RuntimeError")
    eager = run_training(RunConfig(tiny_run()), tmp_path / "eager")
    assert metrics["final"]["train_loss"] == pytest.approx(eager["final"]["train_loss"], rel=1e-6)


def test_switches_are_recorded_as_they_took_effect(tmp_path: Path) -> None:
    run = tiny_run(
        train={"epochs": 1},
        runtime={"device": "cpu", "threads": 1, "cuda_graphs": True, "fused_optimizer": True},
    )
    rt = run_training(RunConfig(run), tmp_path)["runtime"]
    assert rt["cuda_graphs"] == "n/a (needs CUDA)" and rt["compile"] == "off"
    assert rt["fused_optimizer"] is False and rt["cudnn_benchmark"] is None  # CUDA-only
    assert rt["data_on_device"] is True and rt["pinned_memory_copies"] is False
    assert rt["deterministic"] is True
