"""A registered version's artifact digest is recorded at registration and checked before a model is
loaded: one byte changed in the artifact store, a file added or a version without a digest fails
closed, naming the version and the files. Embedded mode (SQLite registry, file artifact store);
the same checks through a real authenticated server are in test_mlflow_auth."""

from pathlib import Path

import pytest

from lakeforge.training import artifact_digest, registry, tracking
from lakeforge.training.artifact_digest import ArtifactTampered
from tests.helpers import environ

NAME = "digest_model"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """This module's own registry and artifact folder (process-wide MLflow URIs are reset after
    each module by conftest)."""
    root = tmp_path_factory.mktemp("digest")
    with environ({"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
                  "LAKEFORGE_MLFLOW_ARTIFACT_ROOT": f"file://{root}/mlartifacts",
                  "LAKEFORGE_MLFLOW_EXPERIMENT": "digest"}):
        tracking.setup()
        yield root


def register_sklearn(run_key: str) -> str:
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    return registry.register(NAME, info.model_uri, run.info.run_id, run_key, {})


def stored(version: str) -> Path:
    """The version's folder in the artifact store (a logged model's, or a run's for the Spark
    flavor's ``runs:/`` models)."""
    c = registry.client()
    uri = c.get_model_version_download_uri(NAME, version)
    if uri.startswith("runs:/"):
        run_id, path = uri.removeprefix("runs:/").split("/", 1)
        uri = f"{c.get_run(run_id).info.artifact_uri}/{path}"
    return Path(uri.removeprefix("file://"))


@pytest.fixture(scope="module")
def v1(store) -> str:
    return register_sklearn("test/digest-1")


def test_digest_is_over_sorted_paths_and_file_hashes(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.bin").write_bytes(b"\x00\x01")
    (tmp_path / "a.txt").write_text("a")
    files = artifact_digest.manifest(tmp_path)
    assert list(files) == ["a.txt", "b/x.bin"]
    assert artifact_digest.artifact_digest(tmp_path) == artifact_digest.digest_of(dict(reversed(files.items())))
    (tmp_path / "a.txt").write_text("b")
    assert artifact_digest.artifact_digest(tmp_path) != artifact_digest.digest_of(files)


def test_registration_records_the_digest_and_a_verified_load_works(v1):
    import numpy as np

    c = registry.client()
    v = c.get_model_version(NAME, v1)
    assert v.tags[artifact_digest.DIGEST_TAG] == artifact_digest.artifact_digest(stored(v1))
    assert artifact_digest.verify_model(c, NAME, v1) == v.tags[artifact_digest.DIGEST_TAG]
    model = artifact_digest.load_verified_model(f"models:/{NAME}@challenger")
    assert list(model.predict(np.array([[0.0], [3.0]]))) == [0, 1]


def test_one_changed_byte_fails_closed_naming_the_version_and_the_file(v1):
    target = next(stored(v1).glob("model.*"))  # model.skops (or model.pkl): what loading deserializes
    original = target.read_bytes()
    target.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    try:
        with pytest.raises(ArtifactTampered, match=rf"model {NAME} v{v1}: .*changed: {target.name}\. Refusing"):
            artifact_digest.load_verified_model(f"models:/{NAME}/{v1}")
        with pytest.raises(ArtifactTampered, match=target.name):
            artifact_digest.verify_model(registry.client(), NAME, v1)
    finally:
        target.write_bytes(original)
    artifact_digest.verify_model(registry.client(), NAME, v1)


def test_an_added_file_or_a_missing_digest_is_refused(v1):
    extra = stored(v1) / "sitecustomize.py"
    extra.write_text("import os\n")
    try:
        with pytest.raises(ArtifactTampered, match="added: sitecustomize.py"):
            artifact_digest.load_verified_model(f"models:/{NAME}/{v1}")
    finally:
        extra.unlink()
    c = registry.client()
    v2 = register_sklearn("test/digest-2")
    c.delete_model_version_tag(NAME, v2, artifact_digest.DIGEST_TAG)
    with pytest.raises(ArtifactTampered, match=rf"v{v2} has no recorded artifact digest.*record {NAME} {v2}"):
        artifact_digest.load_verified_model(f"models:/{NAME}/{v2}")
    artifact_digest.record_digest(c, NAME, v2)  # what an operator does for a trusted old version
    artifact_digest.load_verified_model(f"models:/{NAME}/{v2}")


def test_spark_model_is_verified_before_loading(spark, store):
    """The training job's flavor: a Spark pipeline registered through registry.register, loaded
    only after its check (the loaded model still scores after the verified copy is gone)."""
    import mlflow
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from spark_jobs.train_delay_model import checksummed_local_fs

    df = spark.createDataFrame([(float(x), int(x > 1)) for x in range(6)], ["x", "label"])
    model = Pipeline(stages=[VectorAssembler(inputCols=["x"], outputCol="features"),
                             LogisticRegression(maxIter=5)]).fit(df)
    with tracking.scratch_space(), checksummed_local_fs(spark):
        with mlflow.start_run() as run:
            info = mlflow.spark.log_model(model, "model", pip_requirements=["pyspark"])
        version = registry.register(NAME, info.model_uri, run.info.run_id, "test/digest-spark", {})
        loaded = artifact_digest.load_verified_model(f"models:/{NAME}/{version}", mlflow.spark.load_model)
        assert loaded.transform(df).count() == 6
        metadata = next(p for p in stored(version).rglob("part-*") if p.is_file())
        original = metadata.read_bytes()
        metadata.write_bytes(original + b" ")
        try:
            with pytest.raises(ArtifactTampered, match=f"changed: .*{metadata.name}"):
                artifact_digest.load_verified_model(f"models:/{NAME}/{version}", mlflow.spark.load_model)
        finally:
            metadata.write_bytes(original)
