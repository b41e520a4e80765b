"""Scaling of a multi-device run against its one-device reference run (metrics.json ``parallel``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Settings that may differ between a multi-device run and its reference.
_EXPECTED_DIFFERENCES = {("runtime", "gpus"), ("runtime", "parallel")}


def _differences(config: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    keys = []
    for section in sorted(set(config) | set(reference)):
        a, b = config.get(section) or {}, reference.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if (section, key) not in _EXPECTED_DIFFERENCES and a.get(key) != b.get(key):
                keys.append(f"{section}.{key}")
    return keys


def _unavailable(reason: str, path: Path | None) -> dict[str, Any]:
    return {"available": False, "reason": reason, "reference": str(path) if path else None}


def scaling_efficiency(metrics: dict[str, Any], reference_path: Path | None) -> dict[str, Any]:
    """Speed-up and efficiency of this run's throughput against ``reference_path``'s.

    ``speedup = images/s / reference images/s``; ``efficiency = speedup / (devices /
    reference devices)`` (1.0 = perfect linear scaling). Global images/s (median over timed
    steps) on both sides. Unavailable, with the reason, when the reference is missing, did not
    complete or has no throughput; other config differences than the device count are listed.
    """
    if reference_path is None:
        return _unavailable("no one-device reference run given", None)
    try:
        reference = json.loads(Path(reference_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return _unavailable(
            f"reference {reference_path} unreadable ({type(exc).__name__})", reference_path
        )
    if reference.get("status") != "completed":
        return _unavailable(
            f"reference run status is {reference.get('status')!r}, not 'completed'", reference_path
        )
    ref_ips = (reference.get("throughput") or {}).get("images_per_s_median")
    ips = (metrics.get("throughput") or {}).get("images_per_s_median")
    if not ref_ips or not ips:
        return _unavailable("throughput not measured on one side", reference_path)
    devices = int((metrics.get("parallel") or {}).get("devices") or 1)
    ref_devices = int((reference.get("parallel") or {}).get("devices") or 1)
    speedup = ips / ref_ips
    device_type = (metrics.get("device") or {}).get("type")
    return {
        "available": True,
        "reference": str(reference_path),
        "devices": devices,
        "reference_devices": ref_devices,
        "images_per_s": ips,
        "reference_images_per_s": ref_ips,
        "speedup": round(speedup, 4),
        "efficiency": round(speedup / (devices / ref_devices), 4),
        "config_differences": _differences(
            metrics.get("config") or {}, reference.get("config") or {}
        ),
        "note": "CPU stand-in: devices share the same cores, no speed-up expected"
        if device_type == "cpu"
        else None,
    }
