"""``make bench``'s modules: each imports, and the code the cached feature lakes are keyed by
exists (the features moved to the pipeline folder and ``score_cost`` / ``train_bench`` failed at
their first step, with no test to notice)."""

import importlib
import pkgutil

import bench


def test_every_bench_module_imports():
    names = [m.name for m in pkgutil.iter_modules(bench.__path__)]
    assert "score_cost" in names and "e2e_year" in names
    for name in names:
        importlib.import_module(f"bench.{name}")


def test_the_feature_lakes_are_keyed_by_the_pipelines_feature_code(tmp_path, monkeypatch):
    from bench import train_bench

    key = train_bench.features_code()
    assert len(key) == 64
    # The key follows the code: a changed features.py is a different key.
    pipeline = tmp_path / "plugins" / "lakeforge" / "pipelines" / "nycflights"
    pipeline.mkdir(parents=True)
    source = train_bench.REPO / "plugins" / "lakeforge" / "pipelines" / "nycflights"
    for f in ("clean.py", "features.py"):
        (pipeline / f).write_bytes((source / f).read_bytes())
    monkeypatch.setattr(train_bench, "REPO", tmp_path)
    assert train_bench.features_code() == key
    (pipeline / "features.py").write_bytes(b"# changed\n" + (source / "features.py").read_bytes())
    assert train_bench.features_code() != key
