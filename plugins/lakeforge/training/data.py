"""The features partitions a training can use, read from their manifests (no Spark).

Each partition carries its lake URI, ``content_sha256``, row count and quality status (from the
quality gate's ``quality`` manifest key: ``passed`` / ``warned``; ``unknown`` where the gate has
not written one). Partitions whose gate ``failed`` are never trained or evaluated on.
"""

from __future__ import annotations

from typing import Any

from lakeforge.lake import Lake
from lakeforge.publish import list_partitions, read_manifest

USABLE_QUALITY = ("passed", "warned", "unknown")


def feature_partitions(lake: Lake, table: str) -> list[dict[str, Any]]:
    """Published partitions of a features ``table``, oldest first, with what the run records about each."""
    out = []
    for part in list_partitions(lake, table):
        manifest = read_manifest(lake, table, part)
        if manifest is None or not part.startswith("ds="):
            continue
        quality = manifest.get("quality") or {}
        out.append({
            "ds": part.split("=", 1)[1],
            "uri": lake.uri(table, part),
            "content_sha256": manifest["content_sha256"],
            "rows": manifest.get("rows", 0),
            "quality": quality.get("status", "unknown"),
            "quality_evidence": quality.get("evidence"),
        })
    return out


def usable(partitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in partitions if p["quality"] in USABLE_QUALITY and p["rows"] > 0]


def quality_summary(partitions: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for p in partitions:
        counts[p["quality"]] = counts.get(p["quality"], 0) + 1
    return ",".join(f"{k}={v}" for k, v in sorted(counts.items()))


def data_sha256(partitions: list[dict[str, Any]]) -> str:
    """One hash of the exact input partitions: sha256 over their sorted ``<ds>\\t<content_sha256>``
    lines. Two versions with the same value saw the same data (train and holdout alike)."""
    import hashlib

    lines = sorted(f"{p['ds']}\t{p['content_sha256']}\n" for p in partitions)
    return hashlib.sha256("".join(lines).encode()).hexdigest()
