"""``make bench``'s modules: each imports, every name they import (inside functions too) exists,
and the code the cached feature lakes are keyed by exists. The features moved to the pipeline folder
and ``lakeforge.scoring.PREDICTIONS`` went away: ``score_cost``, ``train_bench`` and
``transform_bench`` failed at their first or a later step, with no test to notice."""

import ast
import importlib
import pkgutil
from pathlib import Path

import bench


def test_every_bench_module_imports():
    names = [m.name for m in pkgutil.iter_modules(bench.__path__)]
    assert "score_cost" in names and "e2e_year" in names
    for name in names:
        importlib.import_module(f"bench.{name}")


def test_every_name_a_bench_module_imports_exists():
    missing = []
    for path in sorted(Path(bench.__path__[0]).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{path.name}: from {node.module} import {alias.name}")
    assert not missing, missing


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
