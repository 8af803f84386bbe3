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

``score_files`` goes one step further where the StringIndexers' work can be done exactly in the
worker (string columns, ``handleInvalid=keep``): each task reads its days' feature files itself
with pyarrow and indexes the categoricals (``indexed_matrix``), so the 131 feature columns never
pass through the JVM (measured in docs/scoring.md: the scope's scoring step 37.7 s -> 18.2 s).
``write_file_scores`` goes further still for a binary model: the worker writes the day's
prediction files itself (zstd Parquet in the job's staging), so the probabilities never go back
to the JVM either (17.9 s -> 15.0 s).

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
from itertools import groupby
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


def float32_values(col):
    """An Arrow column as float32 numpy values, cast by Arrow (nulls as NaN; the same
    round-to-nearest as Spark's cast)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.type != pa.float32():
        col = pc.cast(col, pa.float32(), safe=False)
    return col.to_numpy(zero_copy_only=False)


def feature_matrix(batch, first: int, count: int):
    """Columns ``first .. first + count - 1`` of an Arrow record batch as one C-ordered float32
    matrix (nulls as NaN)."""
    import numpy as np

    x = np.empty((batch.num_rows, count), dtype=np.float32)
    for j in range(count):
        x[:, j] = float32_values(batch.column(first + j))
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


def indexed_matrix(batch, features: Sequence[str], indexers: dict[str, tuple[str, Any, int]]):
    """The booster's input matrix (float32, C order, nulls as NaN) from a batch of a features
    file: each of ``features`` in order, an indexed one (``indexers``: {its column: (the string
    column it indexes, the labels as an Arrow array, their count)}) as the StringIndexer with
    ``handleInvalid=keep`` makes it (the label's position; null or unseen: the count), any other
    cast to float32 by Arrow as ``feature_matrix`` does (``float32_values``)."""
    import numpy as np
    import pyarrow.compute as pc

    x = np.empty((batch.num_rows, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        if name in indexers:
            source, labels, count = indexers[name]
            col = batch.column(source)
            if col.type != labels.type:
                col = pc.cast(col, labels.type)
            x[:, j] = pc.fill_null(pc.index_in(col, value_set=labels), count).to_numpy().astype(np.float32)
        else:
            x[:, j] = float32_values(batch.column(name))
    return x


def _file_scores(batches: Iterable, groups: Sequence[Sequence[tuple[str, str]]], text: str, keys: Sequence[str],
                 features: Sequence[str], indexers: dict[str, tuple[str, list[str]]], threads: int,
                 batch_rows: int) -> Iterator:
    """(day, batch of the key columns, probabilities) of the files of the groups ``batches`` name
    (``score_files``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakeforge.lake import resolve

    model = booster(text)
    coded = {name: (source, pa.array(labels, pa.string()), len(labels)) for name, (source, labels) in indexers.items()}
    columns = list(dict.fromkeys([*keys, *(indexers[n][0] if n in indexers else n for n in features)]))
    for ids in batches:
        for uri, ds in (file for i in ids.column(0).to_pylist() for file in groups[i]):
            fs, path = resolve(uri)
            with fs.open_input_file(path) as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns):
                    if batch.num_rows == 0:
                        continue
                    p = model.predict(indexed_matrix(batch, features, coded), num_threads=threads)
                    yield ds, batch.select(list(keys)), p


def score_files(batches: Iterable, groups: Sequence[Sequence[tuple[str, str]]], text: str, keys: Sequence[str],
                features: Sequence[str], indexers: dict[str, tuple[str, list[str]]], output: str, threads: int,
                batch_rows: int) -> Iterator:
    """``mapInArrow`` function over ids into ``groups`` (each a task's files: (URI, day) pairs;
    ``file_groups``): each file read here with pyarrow through the lake's file system
    (``lakeforge.lake.resolve``: local or HDFS), ``batch_rows`` rows at a time, only the key and
    the model's input columns; the categoricals indexed as the model's StringIndexer does
    (``indexed_matrix``), the booster's probabilities -> batches of ``keys``, ``ds`` (the day)
    and ``output`` (float64). The JVM never decodes the feature columns: it only writes what
    comes back."""
    import pyarrow as pa

    for ds, key, p in _file_scores(batches, groups, text, keys, features, indexers, threads, batch_rows):
        yield pa.RecordBatch.from_arrays([*key.columns, pa.array([ds] * key.num_rows, pa.string()),
                                          pa.array(p, pa.float64())], names=[*keys, "ds", output])


def write_file_scores(batches: Iterable, groups: Sequence[Sequence[tuple[str, str]]], text: str, keys: Sequence[str],
                      features: Sequence[str], indexers: dict[str, tuple[str, list[str]]], threads: int,
                      batch_rows: int, schema_ipc: bytes, threshold: float, constants: dict[str, Any],
                      folder: str) -> Iterator:
    """``mapInArrow`` function: ``score_files``' probabilities written by the worker itself as
    binary prediction files, one per day of its group, under ``folder`` (a lake URI; Hive style
    ``ds=<day>/``), in the schema ``schema_ipc`` (an Arrow IPC schema: the keys, ``probability``,
    ``decision`` = probability >= ``threshold`` as Spark compares doubles, then ``constants``'
    columns, each the same value on every row), zstd like Spark's. Yields one row per file it
    wrote: ``ds``, ``file`` (its name in the day's folder), ``rows``. A file's name carries the
    task's partition and attempt and a random part, so a retried task never writes over its
    earlier attempt's file; the driver keeps only the files the successful attempts reported
    (``lakeforge.scoring.job.stage_in_workers``)."""
    import uuid

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark import TaskContext

    from lakeforge.lake import resolve

    schema = pa.ipc.read_schema(pa.py_buffer(schema_ipc))
    task = TaskContext.get()
    tag = f"{task.partitionId():05d}-{task.attemptNumber()}-{uuid.uuid4().hex[:12]}" if task else uuid.uuid4().hex
    name = f"part-{tag}.zstd.parquet"
    fs, root = resolve(folder)
    written: list[tuple[str, str, int]] = []
    # A day's batches come one after another (``file_groups``: each day whole, in day order).
    scored = _file_scores(batches, groups, text, keys, features, indexers, threads, batch_rows)
    for ds, day in groupby(scored, key=lambda item: item[0]):
        fs.create_dir(f"{root}/ds={ds}", recursive=True)
        rows = 0
        # A task failing mid-file closes it; the driver deletes what no attempt reported.
        with fs.open_output_stream(f"{root}/ds={ds}/{name}") as sink, \
                pq.ParquetWriter(sink, schema, compression="zstd") as writer:
            for _, key, p in day:
                n = key.num_rows
                # Spark's ``probability >= threshold``: NaN is larger than any number there.
                decision = np.greater_equal(p, threshold) | np.isnan(p)
                columns = [col if col.type == schema.field(i).type else col.cast(schema.field(i).type)
                           for i, col in enumerate(key.columns)]
                columns += [pa.array(p, pa.float64()), pa.array(decision, pa.bool_())]
                columns += [pa.repeat(pa.scalar(value, schema.field(c).type), n) for c, value in constants.items()]
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
                rows += n
        written.append((ds, name, rows))
    if written:
        yield pa.RecordBatch.from_pylist([{"ds": d, "file": f, "rows": r} for d, f, r in written],
                                         schema=pa.schema([("ds", pa.string()), ("file", pa.string()),
                                                           ("rows", pa.int64())]))


def file_groups(files: Sequence[tuple[str, str, int]], tasks: int) -> list[list[tuple[str, str]]]:
    """``files`` ((URI, day, rows)) as at most ``tasks`` groups of whole days with about the same
    rows (largest day first into the lightest group), each in day order: one task per group, so
    each task's per-task cost (its Python worker reads the function, the model text included) is
    paid once per core, not once per file, and each day is written as one file."""
    uris: dict[str, list[str]] = {}
    day_rows: dict[str, int] = {}
    for uri, ds, rows in files:
        uris.setdefault(ds, []).append(uri)
        day_rows[ds] = day_rows.get(ds, 0) + rows
    count = max(1, min(tasks, len(uris)))
    groups: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for ds in sorted(uris, key=lambda d: (-day_rows[d], d)):
        lightest = loads.index(min(loads))
        groups[lightest].append(ds)
        loads[lightest] += day_rows[ds]
    return [[(uri, ds) for ds in sorted(g) for uri in uris[ds]] for g in groups if g]


def warm_up_batches(batches: Iterable) -> Iterator:
    """``mapInArrow`` function that imports lightgbm in the worker (the job runs it while the
    driver loads the model, so the scoring tasks find warm workers)."""
    import pyarrow as pa
    import pyarrow.parquet  # noqa: F401 - the scoring tasks read their files with it

    from lakeforge.lake import resolve  # noqa: F401 - and open them through it

    import_lightgbm()
    for batch in batches:
        yield pa.RecordBatch.from_arrays([batch.column(0)], names=[batch.schema.names[0]])
