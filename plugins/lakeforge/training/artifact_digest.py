"""Model artifacts are code: loading a Spark or pyfunc model unpickles what the artifact store holds.
Each registered version records the digest of its artifacts at registration, and a model is loaded
for scoring only from a local copy whose digest matches; anything else fails closed.

The digest is sha256 over the sorted ``<relative path>\\t<sha256 of file>`` lines of the model's
artifact folder (tag ``lakeforge.artifact_sha256``); the per-file list itself is tag
``lakeforge.artifact_manifest`` (JSON), so a mismatch names the files that changed. Both tags live
in the registry database, not in the artifact store: whoever can write artifacts (and not the
registry) cannot make a tampered model pass. A version without a digest (registered before this
existed) is refused too; a trusted operator records one after checking it:

    python -m lakeforge.training.artifact_digest record NAME VERSION
    python -m lakeforge.training.artifact_digest verify NAME VERSION

    from lakeforge.training.artifact_digest import load_verified_model
    model = load_verified_model("models:/flight_delay@champion", mlflow.spark.load_model)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

DIGEST_TAG = "lakeforge.artifact_sha256"
MANIFEST_TAG = "lakeforge.artifact_manifest"


class ArtifactTampered(RuntimeError):
    """A model version's artifacts are not the ones recorded at registration (or none were)."""


def manifest(local_dir: Path | str) -> dict[str, str]:
    """{relative path: sha256} of every file under ``local_dir``."""
    root = Path(local_dir)
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out[path.relative_to(root).as_posix()] = h.hexdigest()
    return out


def digest_of(files: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{p}\t{files[p]}\n" for p in sorted(files)).encode()).hexdigest()


def _download(uri: str, dst: str, tracking_uri: str | None = None) -> str:
    import mlflow

    return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst, tracking_uri=tracking_uri)


def _download_version(client, name: str, version: str, dst: str) -> str:
    """The version's artifacts as its store holds them (through ``client``'s server)."""
    return _download(client.get_model_version_download_uri(name, str(version)), dst, client.tracking_uri)


def artifact_digest(model_uri_or_local_dir: str | Path) -> str:
    """The digest of a local model folder, or of a model URI's artifacts (downloaded aside)."""
    if os.path.isdir(model_uri_or_local_dir):
        return digest_of(manifest(model_uri_or_local_dir))
    with tempfile.TemporaryDirectory(prefix="lakeforge-digest-") as tmp:
        return digest_of(manifest(_download(str(model_uri_or_local_dir), tmp)))


def record_digest(client, name: str, version: str) -> str:
    """Hash the version's artifacts as the store holds them now and tag the version with it."""
    with tempfile.TemporaryDirectory(prefix="lakeforge-digest-") as tmp:
        files = manifest(_download_version(client, name, version, tmp))
    digest = digest_of(files)
    client.set_model_version_tag(name, str(version), MANIFEST_TAG, json.dumps(files, sort_keys=True))
    client.set_model_version_tag(name, str(version), DIGEST_TAG, digest)
    return digest


def check(version, local_dir: Path | str) -> str:
    """Raise ArtifactTampered unless ``local_dir`` holds exactly ``version``'s recorded artifacts."""
    label = f"model {version.name} v{version.version}"
    tags = version.tags or {}
    expected = tags.get(DIGEST_TAG)
    if not expected:
        raise ArtifactTampered(
            f"{label} has no recorded artifact digest (tag {DIGEST_TAG}): refusing to load it. If its "
            f"artifacts are trusted, record one: python -m lakeforge.training.artifact_digest record "
            f"{version.name} {version.version}")
    files = manifest(local_dir)
    actual = digest_of(files)
    if actual == expected:
        return actual
    try:
        recorded = json.loads(tags.get(MANIFEST_TAG) or "{}")
    except ValueError:
        recorded = {}
    if digest_of(recorded) != expected:
        detail = f"its recorded manifest (tag {MANIFEST_TAG}) does not match the digest either"
    else:
        changed = sorted(p for p in files.keys() & recorded.keys() if files[p] != recorded[p])
        added, removed = sorted(files.keys() - recorded.keys()), sorted(recorded.keys() - files.keys())
        detail = "; ".join(f"{what}: {', '.join(paths)}" for what, paths in
                           (("changed", changed), ("added", added), ("removed", removed)) if paths)
    raise ArtifactTampered(
        f"{label}: artifacts do not match the digest recorded at registration ({DIGEST_TAG} "
        f"{expected[:12]}..., found {actual[:12]}...): {detail}. Refusing to load it (loading "
        f"unpickles code); restore the artifacts or register a new version")


def _resolve(client, model_uri: str):
    from mlflow.store.artifact.utils.models import _parse_model_uri

    parsed = _parse_model_uri(model_uri)
    if parsed.name is None:
        raise ValueError(f"{model_uri}: only registered versions (models:/NAME/VERSION or @ALIAS) can "
                         f"be verified")
    if parsed.alias:
        return client.get_model_version_by_alias(parsed.name, parsed.alias)
    if not parsed.version:
        raise ValueError(f"{model_uri}: name a version or an alias (the latest is ambiguous)")
    return client.get_model_version(parsed.name, parsed.version)


def verify_model(client, name: str, version: str) -> str:
    """Download ``name`` v``version`` aside and check it; returns the digest."""
    v = client.get_model_version(name, str(version))
    with tempfile.TemporaryDirectory(prefix="lakeforge-digest-") as tmp:
        return check(v, _download_version(client, name, v.version, tmp))


def load_verified_model(model_uri: str, loader: Callable[[str], Any] | None = None, client=None) -> Any:
    """``loader`` (default ``mlflow.pyfunc.load_model``) on a local copy of the version that passed
    the check: the bytes verified are the bytes loaded (an alias is resolved once, first)."""
    import mlflow

    client = client or mlflow.MlflowClient()
    loader = loader or mlflow.pyfunc.load_model
    v = _resolve(client, model_uri)
    with tempfile.TemporaryDirectory(prefix="lakeforge-verified-model-") as tmp:
        local = _download_version(client, v.name, v.version, tmp)
        check(v, local)
        return loader(local)


def main(argv: list[str] | None = None) -> None:
    import mlflow

    from lakeforge.training import tracking

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["record", "verify"])
    p.add_argument("name")
    p.add_argument("version")
    args = p.parse_args(argv)
    tracking.setup()
    client = mlflow.MlflowClient()
    fn = record_digest if args.action == "record" else verify_model
    print(f"{args.name} v{args.version}: {fn(client, args.name, args.version)}")


if __name__ == "__main__":
    main()
