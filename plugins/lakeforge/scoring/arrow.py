"""The scoring job's LightGBM step over Arrow record batches (``DataFrame.mapInArrow``).

The champion of the ``lightgbm`` family is a Spark ``PipelineModel``: StringIndexers (the JVM runs
them) and ``SparkLGBMClassifierModel``, whose own ``transform`` is a pandas UDF over a struct of
the features cast to float. Batch scoring runs the same booster on the same float32 values, without
pandas: each Arrow batch's feature columns are cast to float32 by Arrow (nulls become NaN, as the
UDF's ``to_numpy(float32, na_value=nan)``; the same IEEE round-to-nearest as Spark's cast, so the
probabilities are identical, which ``bench/score_cost.py`` checks row by row), written into one
float32 matrix and given to ``Booster.predict``; the batch that goes back holds only the key, the
day and the probability (Spark adds the constant columns). Measured on 1.04M rows (local[2]): see
docs/scoring.md.

Per Python worker (Spark reuses them between tasks): ``import lightgbm`` once, the booster parsed
once per model text. ``lightgbm``'s import pulls scikit-learn and pandas (optional integrations of
its sklearn/Dask/pandas APIs, several seconds per worker here) that ``Booster.predict`` on a numpy
matrix never uses: a worker that has not imported them yet imports lightgbm with them hidden.

Plain module: numpy, pyarrow and lightgbm are imported inside the functions (a worker imports this
module by name when it unpickles ``score_batches``).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Iterable, Iterator, Sequence

_LOCK = threading.Lock()
_BOOSTERS: dict[str, Any] = {}  # model text -> Booster, per Python worker (one model at a time)
# lightgbm's optional integrations, never used to predict from a numpy matrix.
_UNUSED_BY_PREDICT = ("sklearn", "dask", "datatable", "pandas")


def import_lightgbm():
    """``lightgbm``, imported without its optional integrations unless the process already has them."""
    if "lightgbm" in sys.modules:
        return sys.modules["lightgbm"]
    with _LOCK:
        hidden = [m for m in _UNUSED_BY_PREDICT if m not in sys.modules]
        for m in hidden:
            sys.modules[m] = None  # type: ignore[assignment]  # ``import m`` raises ImportError
        try:
            import lightgbm
        finally:
            for m in hidden:
                if sys.modules.get(m) is None:
                    del sys.modules[m]
    return lightgbm


def booster(text: str):
    """The booster of a model text, parsed once per process."""
    found = _BOOSTERS.get(text)
    if found is None:
        lgb = import_lightgbm()
        with _LOCK:
            _BOOSTERS.clear()
            found = _BOOSTERS[text] = lgb.Booster(model_str=text)
    return found


def feature_matrix(batch, first: int, count: int):
    """Columns ``first .. first + count - 1`` of an Arrow record batch as one C-ordered float32
    matrix (nulls as NaN)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    x = np.empty((batch.num_rows, count), dtype=np.float32)
    for j in range(count):
        col = batch.column(first + j)
        if col.type != pa.float32():
            col = pc.cast(col, pa.float32(), safe=False)
        x[:, j] = col.to_numpy(zero_copy_only=False)
    return x


def score_batches(batches: Iterable, text: str, keys: Sequence[str], features: int, output: str,
                  threads: int) -> Iterator:
    """``mapInArrow`` function: batches of ``keys`` + ``features`` feature columns (in the model's
    order) -> batches of ``keys`` + ``output`` (P(label = 1), float64)."""
    import pyarrow as pa

    model = booster(text)
    first = len(keys)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        p = model.predict(feature_matrix(batch, first, features), num_threads=threads)
        yield pa.RecordBatch.from_arrays([*[batch.column(i) for i in range(first)], pa.array(p, pa.float64())],
                                         names=[*keys, output])


def warm_up_batches(batches: Iterable) -> Iterator:
    """``mapInArrow`` function that imports lightgbm in the worker (the job runs it while the
    driver loads the model, so the scoring tasks find warm workers)."""
    import pyarrow as pa

    import_lightgbm()
    for batch in batches:
        yield pa.RecordBatch.from_arrays([batch.column(0)], names=[batch.schema.names[0]])
