"""MLflow behind its basic-auth app, on a real server (one per module, ~30 s): nobody without an
account reads or writes the registry, the scoring account reads and loads but cannot register or
move an alias, the training account registers and promotes, every password sits in a 0600 file,
and the historical default admin password opens nothing."""

import base64
import contextlib
import json
import os
import stat
import urllib.error
import urllib.request

import pytest

from lakeforge import mlflow_auth
from lakeforge.training import artifact_digest, registry
from tests.mlflow_server import mlflow_auth_server  # noqa: F401  (fixture)

NAME = "flight_delay"  # the settings' default model and experiment: init made both
CREDS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@contextlib.contextmanager
def account(server, name: str | None):
    """This process acts as ``name`` (None: no credentials at all) inside the block."""
    saved = {k: os.environ.pop(k, None) for k in CREDS}
    if name:
        os.environ.update(server.env(name))
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def client(server):
    from mlflow import MlflowClient

    return MlflowClient(server.uri, registry_uri=server.uri)


def status(server, path: str, user: tuple[str, str] | None = None, body: dict | None = None) -> int:
    """HTTP status of a raw REST call (GET, or POST with a JSON body)."""
    req = urllib.request.Request(f"{server.uri}{path}", data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(user).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def denied(fn, *args, **kwargs) -> int:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as info:
        fn(*args, **kwargs)
    return info.value.get_http_status_code()


@pytest.fixture(scope="module")
def server(mlflow_auth_server):
    return mlflow_auth_server


@pytest.fixture(scope="module")
def v1(server):
    """A small sklearn model logged and registered by the training account (registry.register:
    the same path as the training job, digest included), then made champion."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    with account(server, "training"):
        mlflow.set_tracking_uri(server.uri)
        mlflow.set_registry_uri(server.uri)
        mlflow.set_experiment(NAME)
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        version = registry.register(NAME, info.model_uri, run.info.run_id, "test/auth-1", {})
        client(server).set_registered_model_alias(NAME, "champion", version)
    return version


def test_secret_files_are_private_and_no_default_admin_password(server):
    names = sorted(p.name for p in server.auth_dir.iterdir() if not p.name.endswith(".db"))
    assert names == ["admin.password", "basic_auth.ini", "flask-secret-key", "scoring.password",
                     "training.password", "viewer.password"]
    for name in names:
        assert stat.S_IMODE((server.auth_dir / name).stat().st_mode) == 0o600, name
    ini = (server.auth_dir / "basic_auth.ini").read_text()
    assert "password1234" not in ini and "default_permission = NO_PERMISSIONS" in ini
    admin = (server.auth_dir / "admin.password").read_text()
    assert len(admin) >= 32
    who = f"/api/2.0/mlflow/users/get?username={mlflow_auth.ADMIN}"
    assert status(server, who, ("admin", "password1234")) == 401
    assert status(server, who, ("admin", admin + "x")) == 401
    assert status(server, who, ("admin", admin)) == 200
    # Accounts are not admins: none of them may read or make users.
    training = ("training", (server.auth_dir / "training.password").read_text())
    assert status(server, "/api/2.0/mlflow/users/create", training, {"username": "x", "password": "y" * 20}) == 403


def test_unauthenticated_client_reads_and_writes_nothing(server, v1):
    assert status(server, "/health") == 200  # the only open door
    assert status(server, f"/api/2.0/mlflow/registered-models/get?name={NAME}") == 401
    assert status(server, f"/api/2.0/mlflow/model-versions/get-download-uri?name={NAME}&version={v1}") == 401
    assert status(server, "/api/2.0/mlflow/registered-models/alias",
                  body={"name": NAME, "alias": "champion", "version": v1}) == 401
    assert status(server, "/api/2.0/mlflow/model-versions/create",
                  body={"name": NAME, "source": "file:///tmp/evil"}) == 401
    with account(server, None):
        assert denied(client(server).get_registered_model, NAME) == 401
        assert denied(client(server).set_registered_model_alias, NAME, "champion", v1) == 401


def test_scoring_reads_and_loads_but_cannot_register_or_move_an_alias(server, v1):
    import numpy as np

    c = client(server)
    with account(server, "scoring"):
        assert c.get_model_version_by_alias(NAME, "champion").version == v1
        model = artifact_digest.load_verified_model(f"models:/{NAME}@champion", client=c)
        assert list(model.predict(np.array([[0.0], [3.0]]))) == [0, 1]
        v = c.get_model_version(NAME, v1)
        source = v.source
        assert denied(c.set_registered_model_alias, NAME, "champion", v1) == 403
        assert denied(c.delete_registered_model_alias, NAME, "champion") == 403
        assert denied(c.create_model_version, NAME, source, run_id=v.run_id, model_id=source.split("/")[-1]) == 403
        assert denied(c.set_model_version_tag, NAME, v1, artifact_digest.DIGEST_TAG, "0" * 64) == 403
        assert denied(c.delete_model_version, NAME, v1) == 403
        experiment = c.get_experiment_by_name(NAME).experiment_id
        assert denied(c.create_run, experiment) == 403  # nor can it upload artifacts into the experiment
    with account(server, "viewer"):
        assert c.get_model_version_by_alias(NAME, "champion").version == v1
        assert denied(c.set_registered_model_alias, NAME, "challenger", v1) == 403


def test_training_registers_versions_and_moves_champion(server, v1):
    c = client(server)
    with account(server, "training"):
        v = c.get_model_version(NAME, v1)
        assert v.tags[artifact_digest.DIGEST_TAG] == artifact_digest.verify_model(c, NAME, v1)
        v2 = c.create_model_version(NAME, v.source, run_id=v.run_id, model_id=v.source.split("/")[-1]).version
        artifact_digest.record_digest(c, NAME, v2)
        c.set_registered_model_alias(NAME, "champion", v2)
        assert c.get_model_version_by_alias(NAME, "champion").version == v2
        c.set_registered_model_alias(NAME, "champion", v1)
        registry.remove_half_registered(NAME, "no-such-key")  # reads as training; deletes nothing
        c.delete_model_version(NAME, v2)  # its own half-registered versions: MANAGE


def test_a_tampered_artifact_is_refused_before_loading(server, v1):
    """One byte of the registered model changed in the server's artifact store: scoring refuses
    to load it and names the file."""
    c = client(server)
    with account(server, "scoring"):
        uri = c.get_model_version_download_uri(NAME, v1)  # mlflow-artifacts:/<experiment>/models/<id>/artifacts
    pickled = next((server.root / "artifacts" / uri.split(":/", 1)[1]).glob("model.*"))  # .skops or .pkl
    original = pickled.read_bytes()
    pickled.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        with account(server, "scoring"), pytest.raises(artifact_digest.ArtifactTampered,
                                                       match=rf"{NAME} v{v1}: .*changed: {pickled.name}"):
            artifact_digest.load_verified_model(f"models:/{NAME}/{v1}", client=c)
    finally:
        pickled.write_bytes(original)


def test_a_job_gets_its_own_account_from_a_password_file(server, tmp_path):
    env = {"MLFLOW_TRACKING_USERNAME": "scoring",
           mlflow_auth.PASSWORD_FILE_ENV: str(mlflow_auth.password_file(server.auth_dir, "scoring"))}
    assert mlflow_auth.apply_credentials(env) == "scoring"
    assert env["MLFLOW_TRACKING_PASSWORD"] == server.env("scoring")["MLFLOW_TRACKING_PASSWORD"]
    loose = tmp_path / "scoring.password"
    loose.write_text("x")
    loose.chmod(0o644)
    with pytest.raises(Exception, match="must be 0600"):
        mlflow_auth.apply_credentials({"MLFLOW_TRACKING_USERNAME": "scoring",
                                       mlflow_auth.PASSWORD_FILE_ENV: str(loose)})


def test_a_job_picks_its_own_account_in_a_runner_that_holds_several(server):
    """The scheduler holds training's and scoring's files; the scoring job acts as scoring only,
    and without its own file a job keeps the runner's one account."""
    training = str(mlflow_auth.password_file(server.auth_dir, "training"))
    runner = {"MLFLOW_TRACKING_USERNAME": "training", mlflow_auth.PASSWORD_FILE_ENV: training,
              "MLFLOW_TRACKING_PASSWORD": server.env("training")["MLFLOW_TRACKING_PASSWORD"],
              mlflow_auth.account_file_env("training"): training,
              mlflow_auth.account_file_env("scoring"): str(mlflow_auth.password_file(server.auth_dir, "scoring"))}
    job = dict(runner)
    assert mlflow_auth.use_account("scoring", job) == "scoring"
    assert job["MLFLOW_TRACKING_PASSWORD"] == server.env("scoring")["MLFLOW_TRACKING_PASSWORD"]
    path = f"/api/2.0/mlflow/registered-models/get?name={NAME}"
    assert status(server, path, ("scoring", job["MLFLOW_TRACKING_PASSWORD"])) == 200
    alone = {k: v for k, v in runner.items() if k != mlflow_auth.account_file_env("scoring")}
    assert mlflow_auth.use_account("scoring", alone) == "training"  # no file for it: unchanged
    assert alone["MLFLOW_TRACKING_PASSWORD"] == server.env("training")["MLFLOW_TRACKING_PASSWORD"]


def test_init_is_idempotent_and_rotation_locks_out_the_old_password(server):
    before = server.env("scoring")["MLFLOW_TRACKING_PASSWORD"]
    mlflow_auth.init(server.auth_dir, server.uri)  # second run: same accounts, same grants
    assert server.env("scoring")["MLFLOW_TRACKING_PASSWORD"] == before
    mlflow_auth.rotate(server.auth_dir, server.uri, "scoring")
    after = server.env("scoring")["MLFLOW_TRACKING_PASSWORD"]
    path = f"/api/2.0/mlflow/registered-models/get?name={NAME}"
    assert status(server, path, ("scoring", before)) == 401
    assert status(server, path, ("scoring", after)) == 200


def test_monitoring_experiment_exists_up_front_and_only_scoring_writes_there(server):
    """``<experiment>-monitoring`` is made by init (model-training view): scoring logs its monitoring
    runs there, training and people read them."""
    c = client(server)
    with account(server, "scoring"):
        exp = c.get_experiment_by_name(f"{NAME}-monitoring")
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
        run = c.create_run(exp.experiment_id)
        c.log_metric(run.info.run_id, "roc_auc", 0.7, step=1)
        c.set_terminated(run.info.run_id)
    for name in ("training", "viewer"):
        with account(server, name):
            assert c.get_run(run.info.run_id).data.metrics["roc_auc"] == 0.7
            assert denied(c.create_run, exp.experiment_id) == 403
            assert denied(c.log_metric, run.info.run_id, "roc_auc", 0.1) == 403
