"""Epoch checkpoints: atomic, checksummed, with one previous generation kept for fallback.

A checkpoint is used only if it matches its ``.sha256`` sidecar (when present), loads with
``torch.load(weights_only=True)`` (no arbitrary unpickling) and holds every field a resume
needs; otherwise it is skipped with a note naming its path, and the previous generation (or a
clean start) is used instead, so a damaged file can never make a job fail on every rerun.

Once a run has completed (its ``metrics.json`` is written) the resume checkpoints have done
their job: :func:`retire_checkpoints` deletes them and :func:`save_final_weights` keeps the
final weights alone, as ``train.keep_checkpoint`` says.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import torch

from .io import atomic_path, write_text

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
FINAL_WEIGHTS = "model_final.pt"
#: fields a resumable checkpoint must hold, with their types
REQUIRED = {
    "config_hash": str,
    "epoch": int,
    "elapsed_s": (int, float),
    "history": list,
    "model": dict,
    "optimizer": dict,
    "scheduler": dict,
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensor storages in a (nested) state: about what ``torch.save`` writes."""
    storages: dict[tuple[str, int], int] = {}

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[(str(value.device), storage.data_ptr())] = storage.nbytes()
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
        elif isinstance(value, list | tuple):
            for v in value:
                visit(v)

    visit(obj)
    return sum(storages.values())


def save_checkpoint(out_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``out_dir/checkpoint.pt`` atomically; the old one becomes ``.prev``.

    On a full disk: :class:`~.errors.DiskFullError` naming the file and its size; the
    checkpoints already written are left as they were.
    """
    path = out_dir / CHECKPOINT
    with atomic_path(path.with_suffix(".pt.new"), tensor_bytes(state), shown_as=path) as tmp:
        torch.save(state, tmp)
    new = path.with_suffix(".pt.new")
    checksum = _sha256(new)
    if path.exists():
        # Sidecar first: a crash between the two renames leaves checkpoint.pt without a sidecar
        # (still loadable), never checkpoint.prev.pt beside the sidecar of another file.
        sidecar = out_dir / (CHECKPOINT + ".sha256")
        if sidecar.exists():
            sidecar.replace(out_dir / (PREVIOUS + ".sha256"))
        else:
            (out_dir / (PREVIOUS + ".sha256")).unlink(missing_ok=True)
        path.replace(out_dir / PREVIOUS)
    write_text(out_dir / (CHECKPOINT + ".sha256"), checksum + "\n")
    new.replace(path)
    return path


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _load_verified(path: Path) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint at ``path``, or ``None`` and why it is unusable."""
    sidecar = _sidecar(path)
    try:
        if sidecar.exists() and sidecar.read_text().strip() != _sha256(path):
            return None, "fails its sha256 checksum (truncated or corrupt)"
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any I/O, zip or (refused) unpickling error: an unusable file
        return None, f"cannot be loaded safely ({type(exc).__name__}; truncated or corrupt)"
    if not isinstance(state, dict):
        return None, f"holds a {type(state).__name__}, not a checkpoint (corrupt)"
    for key, kind in REQUIRED.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            return None, f"lacks a valid '{key}' (corrupt or not written by alexnet-bench)"
    return state, ""


def _quarantine(path: Path) -> Path:
    """Rename an unusable checkpoint (and its sidecar) to ``<name>.corrupt``; return the new path."""
    target = path.with_name(path.name + ".corrupt")
    for src, dst in ((path, target), (_sidecar(path), _sidecar(target))):
        with contextlib.suppress(FileNotFoundError):  # no sidecar, or another rank moved it
            src.replace(dst)
    return target


def _shape_mismatch(state: dict[str, Any], model: dict[str, Any]) -> str | None:
    """Why ``state['model']`` cannot be loaded into a model with ``model`` (a state dict)."""
    saved = state["model"]
    if set(saved) != set(model):
        missing, extra = sorted(set(model) - set(saved)), sorted(set(saved) - set(model))
        return f"has different model parameters (missing {missing[:3]}, unexpected {extra[:3]})"
    for key, tensor in model.items():
        if getattr(saved[key], "shape", None) != getattr(tensor, "shape", None):
            return (
                f"has parameter {key} of shape {tuple(saved[key].shape)}, not {tuple(tensor.shape)}"
            )
    return None


def load_latest(
    out_dir: Path, identity_hash: str, model: dict[str, Any] | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The newest loadable checkpoint of the run ``identity_hash`` (its config hash and data
    identity, :func:`alexnet_bench.identity.run_identity`), and notes on any skipped file.

    Falls back from ``checkpoint.pt`` to ``checkpoint.prev.pt``; a checkpoint written under a
    different configuration or data (or, given the current ``model`` state dict, for parameters of other
    names or shapes) is not resumed: training restarts cleanly. An unusable file is renamed to
    ``*.corrupt`` (for inspection), so that the next save never rotates it into
    ``checkpoint.prev.pt`` and no later resume tries it again.
    """
    notes: list[str] = []
    for name in (CHECKPOINT, PREVIOUS):
        path = out_dir / name
        if not path.exists():
            continue
        state, problem = _load_verified(path)
        if state is None:
            kept = _quarantine(path)
            notes.append(f"unusable checkpoint {path} skipped: it {problem}; kept as {kept}")
            continue
        if state.get("identity_hash") != identity_hash:
            notes.append(f"checkpoint {path} is from a different config or data; starting fresh")
            return None, notes
        mismatch = _shape_mismatch(state, model) if model is not None else None
        if mismatch is not None:
            notes.append(f"checkpoint {path} {mismatch} (another code version?); starting fresh")
            return None, notes
        return state, notes
    return None, notes


def save_final_weights(
    out_dir: Path,
    model: dict[str, Any],
    config: dict[str, Any],
    identity: dict[str, Any],
    epoch: int,
) -> Path:
    """Write the final weights (CPU tensors, no optimiser state) to ``model_final.pt`` atomically.

    Loadable with ``torch.load(path, weights_only=True)``; ``config`` (the run config) says how
    to rebuild the model (:func:`alexnet_bench.model.build_model`); ``identity`` (metrics.json's)
    which run made them.
    """
    path = out_dir / FINAL_WEIGHTS
    state = {
        "config_hash": identity["config_hash"],
        "identity_hash": identity["hash"],
        "epoch": epoch,
        "config": config,
        "model": {k: v.detach().cpu() for k, v in model.items()},
    }
    with atomic_path(path, tensor_bytes(state)) as tmp:
        torch.save(state, tmp)
    return path


def retire_checkpoints(out_dir: Path, keep_final: bool = True) -> list[Path]:
    """Delete a completed run's resume checkpoints; return what was removed.

    The previous generation goes first and ``checkpoint.pt`` last, in one ``unlink``: a crash
    at any point leaves either the final epoch's checkpoint or no resume point, never an older
    one to fall back to. ``keep_final=False`` also removes ``model_final.pt``.
    """
    names = [
        PREVIOUS + ".sha256",
        PREVIOUS,
        CHECKPOINT + ".new",
        CHECKPOINT,
        CHECKPOINT + ".sha256",
    ]
    stale = sorted(out_dir.glob(f".{CHECKPOINT}*.tmp"))  # left by a crash inside a save
    if not keep_final:
        names.append(FINAL_WEIGHTS)
    removed: list[Path] = []
    for path in [*stale, *(out_dir / n for n in names)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def resumable_epoch(out_dir: Path, identity_hash: str) -> int:
    """The epoch a rerun of the run ``identity_hash`` (:func:`~alexnet_bench.identity.
    run_identity`) in ``out_dir`` would resume after (0: a fresh start).

    Read-only and the same choice as :func:`load_latest`: ``checkpoint.pt``, else (unusable)
    ``checkpoint.prev.pt``; the first usable one counts only if it was written by that run. Nothing is renamed; the tensors are memory-mapped, not read. (A checkpoint
    whose parameter shapes differ from this code's model would still restart: not checked.)
    """
    for name in (CHECKPOINT, PREVIOUS):
        path = Path(out_dir) / name
        if not path.is_file():
            continue
        try:
            sidecar = _sidecar(path)
            if sidecar.exists() and sidecar.read_text().strip() != _sha256(path):
                continue
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # unusable, as load_latest would find it: try the older one
            continue
        if not isinstance(state, dict) or any(
            not isinstance(state.get(k), kind) or isinstance(state.get(k), bool)
            for k, kind in REQUIRED.items()
        ):
            continue
        return int(state["epoch"]) if state.get("identity_hash") == identity_hash else 0
    return 0
