"""Drift's bucket counts, taken in Spark's Python workers (numpy and pyarrow; no Spark import here).

``drift.drift_days`` gives each task the rows of the days to count and gets back one row per
(day, feature, bucket) the task saw with its row count; Spark sums the tasks' rows by key. Two
ways in:

- ``count_files``: the JVM sends only where each row kept by the spec's ``row_filter`` lies
  (``_metadata.file_path``, ``_metadata.row_index``, ``ds``); the worker reads those files' feature
  columns itself with pyarrow through the lake's file system and takes the rows. The JVM never
  decodes ~130 feature columns nor converts them to Arrow;
- ``count_batches``: the rows' columns come from the JVM (``ds``, the numeric ones as doubles, the
  categorical ones as strings): any frame, e.g. one not read from files.

The buckets are the reference profile's:

- numeric: the number of edges below x (bins ``(e[i-1], e[i]]``: ``searchsorted(..., "left")``),
  ``NULL_CODE`` for a null or NaN;
- categorical: the index of the value among the kept categories, ``NULL_CODE``, ``OTHER_CODE``
  (a rare category of the reference), ``UNSEEN_CODE`` (never seen in training).

Why not Spark SQL: the same buckets as ~130 CASE expressions (a binary search of comparisons
each) made a generated-code stage that a fresh JVM compiled and warmed for 6-8 s on a day of
~19,000 rows (the scoring job's JVM is always fresh); ``searchsorted`` over the columns takes
milliseconds in the workers the scoring stage already started.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Iterator, Sequence

NULL_CODE, OTHER_CODE, UNSEEN_CODE = -1, -2, -3
_SHIFT = 3  # codes + _SHIFT >= 0: bincount's bins
OUTPUT = "ds string, f int, b int, n long"  # the schema both functions return


def numeric_codes(values, edges: Sequence[float]):
    """The bucket code of each value (an Arrow array of numbers, cast to double as Spark's CAST
    does) against sorted ``edges``."""
    import numpy as np
    import pyarrow as pa

    x = values.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)  # nulls become NaN
    codes = np.searchsorted(np.asarray(edges, dtype=np.float64), x, side="left")
    return np.where(np.isnan(x), NULL_CODE, codes)


def categorical_codes(values, kept: Sequence[str], other: Sequence[str]):
    """The bucket code of each value (an Arrow string array): its index in ``kept``, else
    ``OTHER_CODE`` if in ``other``, ``NULL_CODE`` for a null, ``UNSEEN_CODE`` otherwise."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    values = values.cast(pa.string())
    index = pc.index_in(values, value_set=pa.array(list(kept), pa.string())).fill_null(-1).to_numpy(
        zero_copy_only=False).astype(np.int64)
    rest = (np.where(pc.is_in(values, value_set=pa.array(list(other), pa.string())).to_numpy(zero_copy_only=False),
                     OTHER_CODE, UNSEEN_CODE) if other else np.full(len(values), UNSEEN_CODE))
    nulls = values.is_null().to_numpy(zero_copy_only=False)
    return np.where(nulls, NULL_CODE, np.where(index >= 0, index, rest))


class Counts:
    """A task's running bucket counts: {(day, feature index): counts by shifted code}."""

    def __init__(self, numeric: Sequence[Sequence[float]], categorical: Sequence[tuple[Sequence[str], Sequence[str]]],
                 first: int = 0):
        self.numeric, self.categorical, self.first = numeric, categorical, first
        self.totals: dict[tuple[str, int], Any] = {}

    def add(self, days: Sequence[str], day_index, columns: Sequence) -> None:
        """Count rows: ``columns`` the numeric ones then the categorical ones (Arrow arrays, in the
        constructor's order), ``day_index`` each row's index into ``days``."""
        import numpy as np

        coded = [(numeric_codes(col, edges), len(edges) + 1) for col, edges in zip(columns, self.numeric)]
        coded += [(categorical_codes(col, kept, other), len(kept))
                  for col, (kept, other) in zip(columns[len(self.numeric):], self.categorical)]
        for f, (codes, buckets) in enumerate(coded):
            width = buckets + _SHIFT
            counts = np.bincount(day_index * width + codes + _SHIFT, minlength=len(days) * width)
            for d, day in enumerate(days):
                key = (day, self.first + f)
                got = counts[d * width:(d + 1) * width]
                self.totals[key] = self.totals[key] + got if key in self.totals else got

    def batch(self):
        """The counts as one Arrow batch of ``OUTPUT``'s columns (no zero counts)."""
        import numpy as np
        import pyarrow as pa

        ds, f, b, n = [], [], [], []
        for (day, feature), counts in self.totals.items():
            for code in np.flatnonzero(counts):
                ds.append(day)
                f.append(feature)
                b.append(int(code) - _SHIFT)
                n.append(int(counts[code]))
        return pa.RecordBatch.from_arrays([pa.array(ds, pa.string()), pa.array(f, pa.int32()),
                                           pa.array(b, pa.int32()), pa.array(n, pa.int64())],
                                          names=["ds", "f", "b", "n"])


def _encoded(column):
    """(the distinct values, each row's index into them) of an Arrow string column (days, paths)."""
    import numpy as np

    encoded = column.dictionary_encode()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def count_batches(batches: Iterable, numeric: Sequence[Sequence[float]],
                  categorical: Sequence[tuple[Sequence[str], Sequence[str]]], first: int = 0) -> Iterator:
    """``mapInArrow``'s function over batches of (``ds``, the numeric columns in ``numeric``'s
    order, then the categorical ones): the task's counts (``OUTPUT``; ``f`` from ``first``)."""
    counts = Counts(numeric, categorical, first)
    for batch in batches:
        if batch.num_rows:
            days, index = _encoded(batch.column(0))
            counts.add(days, index, batch.columns[1:])
    yield counts.batch()


def count_files(batches: Iterable, numeric: Sequence[tuple[str, Sequence[float]]],
                categorical: Sequence[tuple[str, Sequence[str], Sequence[str]]], first: int = 0,
                batch_rows: int = 65536, predictions: dict[str, Any] | None = None) -> Iterator:
    """``mapInArrow``'s function over batches of (``path``: a Parquet file's URI as Spark writes it,
    ``i``: a row's index in that file, ``ds``): those rows of the files, their ``numeric``
    ((column, edges)) and ``categorical`` ((column, kept, other)) columns read here
    (``lakeforge.lake.resolve``: local or HDFS; ``batch_rows`` rows at a time) -> the task's
    counts (``OUTPUT``).

    ``predictions`` (``prediction_spec``): also count, as feature ``index``, the prediction
    ``column`` of the rows of the day's prediction ``files`` whose ``key`` is one of these rows'
    (those of ``version`` only, when given): a semi join in the worker, exact because a key
    identifies a row in a day (``ModelSpec.key``), so each prediction meets its row in one task."""
    from urllib.parse import unquote

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakeforge.lake import resolve

    rows: dict[tuple[str, str], list] = defaultdict(list)
    for batch in batches:
        paths, index, days = (batch.column(k) for k in range(3))
        for (path, day), positions in _by_file(paths, days, index.to_numpy(zero_copy_only=False)).items():
            rows[(path, day)].append(positions)
    counts = Counts([e for _, e in numeric], [(kept, other) for _, kept, other in categorical], first)
    columns = [c for c, _ in numeric] + [c for c, _, _ in categorical]
    keys = list(predictions["key"]) if predictions else []
    read = list(dict.fromkeys([*columns, *keys]))
    keys_by_day: dict[str, list] = defaultdict(list)
    for (path, day), parts in sorted(rows.items()):
        wanted = np.unique(np.concatenate(parts))  # sorted; a row once even if sent twice
        fs, local = resolve(unquote(path))  # Spark's file_path is URL-encoded (a space as %20)
        offset = 0
        with fs.open_input_file(local) as f:
            parquet = pq.ParquetFile(f)
            present = [c for c in read if c in parquet.schema_arrow.names]
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
                lo, hi = np.searchsorted(wanted, [offset, offset + batch.num_rows])
                if hi > lo:
                    taken = batch.take(wanted[lo:hi] - offset)
                    # A column the file lacks reads as nulls, as Spark reads it.
                    cols = [taken.column(c) if c in present else pa.nulls(taken.num_rows) for c in columns]
                    counts.add([day], np.zeros(taken.num_rows, dtype=np.int64), cols)
                    if keys:
                        keys_by_day[day].append(pa.Table.from_batches([taken]).select(keys))
                offset += batch.num_rows
    out = counts.batch()
    if predictions:
        out = pa.concat_batches([out, _count_predictions(predictions, keys_by_day)])
    yield out


def prediction_spec(files: dict[str, Sequence[str]], key: Sequence[str], column: str, version: str | None,
                    index: int, edges: Sequence[float] | None = None,
                    categories: tuple[Sequence[str], Sequence[str]] | None = None) -> dict[str, Any]:
    """``count_files``' ``predictions``: the day's prediction files (lake URIs), the key, the
    prediction column bucketed by ``edges`` (numeric) or ``categories`` ((kept, other)), the
    version whose rows count, the feature index its counts carry."""
    return {"files": {ds: list(uris) for ds, uris in files.items()}, "key": list(key), "column": column,
            "version": version, "index": index, "edges": None if edges is None else list(edges),
            "categories": None if categories is None else (list(categories[0]), list(categories[1]))}


def _count_predictions(spec: dict[str, Any], keys_by_day: dict[str, list]):
    """The prediction's counts (one Arrow batch of ``OUTPUT``) over the predictions of
    ``spec["files"]`` whose key is among ``keys_by_day``'s (each day's tables of row keys)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lakeforge.lake import resolve

    edges, categories = spec["edges"], spec["categories"]
    counts = Counts([] if edges is None else [edges], [] if categories is None else [tuple(categories)], spec["index"])
    wanted = list(dict.fromkeys([*spec["key"], spec["column"], "model_version"]))
    for day, parts in sorted(keys_by_day.items()):
        tables = []
        for uri in spec["files"].get(day, []):
            fs, path = resolve(uri)  # a lake URI from a manifest: not encoded
            with fs.open_input_file(path) as f:
                tables.append(pq.read_table(f, columns=wanted))
        if not tables:
            continue
        predicted = pa.concat_tables(tables)
        if spec["version"] is not None:
            predicted = predicted.filter(pc.equal(predicted["model_version"].cast(pa.string()), str(spec["version"])))
        kept = pa.concat_tables(parts)
        kept = kept.cast(pa.schema([(k, predicted.schema.field(k).type) for k in spec["key"]]))  # equal key types
        matched = predicted.join(kept, keys=spec["key"], join_type="left semi")  # null keys never match
        if matched.num_rows:
            counts.add([day], np.zeros(matched.num_rows, dtype=np.int64), [matched[spec["column"]].combine_chunks()])
    return counts.batch()


def _by_file(paths, days, index) -> dict[tuple[str, str], Any]:
    """{(path, day): the row indices of a batch}: grouped by the pair, in numpy."""
    import numpy as np

    path_names, path_index = _encoded(paths)
    day_names, day_index = _encoded(days)
    pair = path_index * len(day_names) + day_index
    order = np.argsort(pair, kind="stable")
    cuts = np.flatnonzero(np.diff(pair[order])) + 1
    out = {}
    for group in np.split(order, cuts):
        if len(group):
            p = pair[group[0]]
            out[(path_names[p // len(day_names)], day_names[p % len(day_names)])] = index[group]
    return out
