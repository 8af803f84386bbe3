"""LightGBM trained across Spark executors: data-parallel, in one barrier stage.

``SparkLGBMClassifier`` is a Spark ML estimator. Its fit runs one barrier stage of ``num_workers``
tasks (all scheduled at once, like xgboost.spark): each task takes its partition as Arrow record
batches (``mapInArrow``: no per-row Python objects, no pandas), builds a LightGBM Dataset from it,
and the tasks train one model together over LightGBM's own socket network
(``tree_learner="data"``: every worker builds histograms of its rows, the workers reduce them and
agree on each split; the same protocol ``lightgbm.dask`` uses). Task 0 returns the model text;
no training row reaches the driver. With one worker it is a plain single-process LightGBM fit.

``SparkLGBMClassifierModel`` scores with a pandas UDF (the booster is parsed once per Python
worker) and adds ``probability`` (a vector, like every Spark ML classifier) and ``prediction``.
It persists with Spark ML's default params writer: the model text is one of its params, so a
``PipelineModel`` holding it saves, loads and logs to MLflow like any other (loading needs
lakeforge importable, as in lakeforge's own scoring jobs).

Why LightGBM's network and not Spark's collectives: a split needs the histograms of every worker,
thousands of times per fit; LightGBM exchanges them between the workers directly, while a Spark
round trip per split would cost a stage each.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd  # module level: the scoring UDF's type hints are resolved against this module
import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from lakeforge.ports import free_port

# How long a worker waits for the others to connect (LightGBM's ``time_out``, minutes). The barrier
# stage starts every task at once, so they meet within seconds; this bounds a lost worker.
NETWORK_TIMEOUT_MIN = 2
MODEL_COLUMN = "model"
# What each barrier task returns: the model text (task 0 only), then what the worker did: its rows
# and seconds (from its start) to the first Arrow batch, to the end of its stream, to the ordered
# matrix ready to train (``load_s``), then in LightGBM (``train_s``).
WORKER_SCHEMA = pa.schema([(MODEL_COLUMN, pa.string()), ("rank", pa.int32()), ("rows", pa.int64()),
                           ("first_batch_s", pa.float64()), ("stream_s", pa.float64()),
                           ("load_s", pa.float64()), ("train_s", pa.float64())])
log = logging.getLogger(__name__)


class _LGBMParams(Params):
    featuresCols = Param(Params._dummy(), "featuresCols", "numeric feature columns, in model order",
                         typeConverter=TypeConverters.toListString)
    labelCol = Param(Params._dummy(), "labelCol", "label column (0/1)", typeConverter=TypeConverters.toString)
    probabilityCol = Param(Params._dummy(), "probabilityCol", "output: probability vector",
                           typeConverter=TypeConverters.toString)
    predictionCol = Param(Params._dummy(), "predictionCol", "output: predicted class",
                          typeConverter=TypeConverters.toString)

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(labelCol="label", probabilityCol="probability", predictionCol="prediction")


class SparkLGBMClassifier(Estimator, _LGBMParams):
    """Binary LightGBM classifier trained across ``numWorkers`` executor slots."""

    numWorkers = Param(Params._dummy(), "numWorkers", "barrier tasks training together (executor slots)",
                       typeConverter=TypeConverters.toInt)
    lgbParams = Param(Params._dummy(), "lgbParams", "LightGBM parameters as JSON (num_boost_round included)",
                      typeConverter=TypeConverters.toString)
    sortCols = Param(Params._dummy(), "sortCols",
                     "columns each worker's rows are ordered by before the Dataset is built",
                     typeConverter=TypeConverters.toListString)

    @keyword_only
    def __init__(self, *, featuresCols: list[str], labelCol: str = "label", numWorkers: int = 1,
                 lgbParams: str = "{}", sortCols: list[str] | None = None,
                 probabilityCol: str = "probability", predictionCol: str = "prediction") -> None:
        super().__init__()
        self._setDefault(numWorkers=1, lgbParams="{}", sortCols=[])
        kwargs = {k: v for k, v in self._input_kwargs.items() if v is not None}
        self._set(**kwargs)

    def _fit(self, dataset) -> SparkLGBMClassifierModel:
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        features = self.getOrDefault(self.featuresCols)
        label = self.getOrDefault(self.labelCol)
        workers = self.getOrDefault(self.numWorkers)
        if workers < 1:
            raise ValueError(f"numWorkers must be >= 1, got {workers}")
        params = json.loads(self.getOrDefault(self.lgbParams))
        rounds = int(params.pop("num_boost_round", params.pop("n_estimators", 100)))
        df = dataset.select(*[F.col(c).cast("float").alias(c) for c in features],
                            F.col(label).cast("float").alias(label))
        if df.rdd.getNumPartitions() != workers:
            df = df.repartition(workers)
        sort = [features.index(c) for c in self.getOrDefault(self.sortCols)]
        rendezvous = None
        if workers > 1:
            host = dataset.sparkSession.sparkContext.getConf().get("spark.driver.host", "127.0.0.1")
            rendezvous = _Rendezvous(socket.gethostbyname(host), workers)
        try:
            train = _barrier_trainer(features, label, workers, params, rounds, sort,
                                     rendezvous and (rendezvous.address, rendezvous.token))
            rows = df.mapInArrow(train, from_arrow_schema(WORKER_SCHEMA), barrier=True).collect()
        finally:
            if rendezvous:
                rendezvous.close()
        texts = [r[MODEL_COLUMN] for r in rows if r[MODEL_COLUMN] is not None]
        if len(texts) != 1:
            raise RuntimeError(f"expected one model from the barrier stage, got {len(texts)}")
        model = SparkLGBMClassifierModel(featuresCols=features, modelString=texts[0])
        model._set(probabilityCol=self.getOrDefault(self.probabilityCol),
                   predictionCol=self.getOrDefault(self.predictionCol), labelCol=label)
        # What each worker did (not persisted): ``WORKER_SCHEMA`` less the model text.
        model.worker_stats = sorted(({k: r[k] for k in WORKER_SCHEMA.names if k != MODEL_COLUMN} for r in rows),
                                    key=lambda w: w["rank"])
        log.info("LightGBM on %d workers: %s", workers, model.worker_stats)
        return model


class _Rendezvous:
    """Gives every barrier task the LightGBM addresses of all of them, in rank order.

    A small TCP server on the driver, one per fit, instead of ``BarrierTaskContext.allGather``:
    Spark's barrier calls wait in 1-second sleeps (``Thread.sleep(1000)`` until the RPC completes),
    so the first task to arrive lost ~1 s in every fit (measured: 1.00 s of a 3.6 s fit of the
    year). Tasks present a per-fit token. A task of a retried stage attempt replaces its rank's
    earlier registration; a registration whose task died (its connection closed, as when Spark
    kills a failed attempt) is dropped before the list goes out, so it never completes a group."""

    def __init__(self, host: str, workers: int) -> None:
        import secrets
        import threading

        self.workers = workers
        self.token = secrets.token_hex(16)
        self._server = socket.create_server((host, 0))
        self.address = (host, self._server.getsockname()[1])
        self._pending: dict[int, tuple[str, socket.socket]] = {}  # rank -> (address, connection)
        self._thread = threading.Thread(target=self._serve, name="lightgbm-rendezvous", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:  # closed: the fit is over
                return
            try:
                conn.settimeout(30)
                token, rank, address = conn.makefile().readline().split()
            except (OSError, ValueError):
                conn.close()
                continue
            if token != self.token:
                conn.close()
                continue
            earlier = self._pending.pop(int(rank), None)
            if earlier:
                earlier[1].close()
            conn.setblocking(False)  # _alive() peeks without waiting
            self._pending[int(rank)] = (address, conn)
            for r, (_, c) in list(self._pending.items()):
                if not _alive(c):
                    c.close()
                    del self._pending[r]
            if len(self._pending) == self.workers:
                reply = ("\n".join(self._pending[r][0] for r in sorted(self._pending)) + "\n").encode()
                for _, c in self._pending.values():
                    with c:
                        try:
                            c.settimeout(5)
                            c.sendall(reply)
                        except OSError:  # died just now: its task fails, and Spark retries the stage
                            log.warning("a LightGBM worker left the rendezvous before its reply")
                self._pending.clear()

    def close(self) -> None:
        try:  # wakes the blocked accept() (a bare close() does not, on Linux)
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # never connected to: nothing to wake
        self._server.close()
        for _, c in self._pending.values():
            c.close()
        self._thread.join(timeout=5)


def _alive(conn: socket.socket) -> bool:
    """Whether the peer of a registered (non-blocking) connection is still there: it sends nothing
    after registering, so a readable end-of-stream means it closed."""
    try:
        return conn.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _exchange(rendezvous: tuple[str, int], token: str, rank: int, address: str) -> list[str]:
    """Register with the driver's rendezvous; returns every worker's address, in rank order."""
    with socket.create_connection(rendezvous, timeout=NETWORK_TIMEOUT_MIN * 60) as s:
        s.sendall(f"{token} {rank} {address}\n".encode())
        return s.makefile().read().split()


def _barrier_trainer(features: list[str], label: str, workers: int, params: dict[str, Any], rounds: int,
                     sort: list[int], rendezvous: tuple[tuple[str, int], str] | None):
    """The function each barrier task runs on its partition's Arrow batches."""

    def train(batches: Iterator) -> Iterator:
        import lightgbm as lgb
        import numpy as np
        from pyspark import BarrierTaskContext

        ctx = BarrierTaskContext.get()
        started = time.perf_counter()
        first = None
        received = []
        for b in batches:
            first = first if first is not None else time.perf_counter() - started
            received.append(b)
        streamed = time.perf_counter() - started
        batches = received
        if not sum(b.num_rows for b in batches):
            raise ValueError(f"LightGBM worker {ctx.partitionId()} got no rows: fewer training rows than workers?")
        table = pa.Table.from_batches(batches)
        del batches
        # One C-contiguous float32 matrix (LightGBM's fastest input); Arrow nulls become NaN = missing.
        x = np.empty((table.num_rows, len(features)), dtype=np.float32)
        for j, name in enumerate(features):
            x[:, j] = table.column(name).to_numpy(zero_copy_only=False)
        y = table.column(label).to_numpy(zero_copy_only=False)
        del table
        if sort:
            # Rows close in time sit close in memory, so LightGBM's histogram passes hit the cache
            # (plain LightGBM on the year's rows: 1.4x faster in time order than shuffled). Sorted
            # here, in each worker: a sortWithinPartitions in the JVM cost ~1 s more on local[2].
            order = np.lexsort([x[:, j] for j in reversed(sort)])
            x, y = x[order], y[order]
        run = {"objective": "binary", "verbose": -1, "num_threads": 1, **params}
        if workers > 1:
            host = socket.gethostbyname(ctx.getTaskInfos()[ctx.partitionId()].address.rsplit(":", 1)[0])
            # LightGBM binds the port itself: the gap before it does is the one lightgbm.dask
            # accepts too (a lost race fails the fit, and Spark retries the stage).
            port = free_port(host)
            (server, token) = rendezvous
            machines = _exchange(server, token, ctx.partitionId(), f"{host}:{port}")
            run.update(tree_learner="data", num_machines=workers, machines=",".join(machines),
                       local_listen_port=port, time_out=NETWORK_TIMEOUT_MIN, pre_partition=True)
        loaded = time.perf_counter()
        booster = lgb.train(run, lgb.Dataset(x, y, feature_name=features, free_raw_data=True),
                            num_boost_round=rounds)
        try:
            text = booster.model_to_string() if ctx.partitionId() == 0 else None
        finally:
            if workers > 1:
                booster.free_network()  # the network is process-global: a reused worker starts clean
        yield pa.RecordBatch.from_pydict(
            {MODEL_COLUMN: [text], "rank": [ctx.partitionId()], "rows": [len(y)], "first_batch_s": [first],
             "stream_s": [streamed], "load_s": [loaded - started], "train_s": [time.perf_counter() - loaded]},
            schema=WORKER_SCHEMA)

    return train


_BOOSTERS: dict[str, Any] = {}  # model text -> parsed booster, per Python worker


def _booster(text: str):
    import lightgbm as lgb

    if text not in _BOOSTERS:
        _BOOSTERS.clear()  # one model at a time per worker
        _BOOSTERS[text] = lgb.Booster(model_str=text)
    return _BOOSTERS[text]


class SparkLGBMClassifierModel(Model, _LGBMParams, DefaultParamsReadable, DefaultParamsWritable):
    """A fitted LightGBM booster that scores Spark DataFrames."""

    modelString = Param(Params._dummy(), "modelString", "the LightGBM model as text",
                        typeConverter=TypeConverters.toString)

    @keyword_only
    def __init__(self, *, featuresCols: list[str] | None = None, modelString: str | None = None) -> None:
        super().__init__()
        kwargs = {k: v for k, v in self._input_kwargs.items() if v is not None}
        self._set(**kwargs)

    def get_booster(self):
        return _booster(self.getOrDefault(self.modelString))

    def _transform(self, dataset):
        import numpy as np
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F
        from pyspark.sql.functions import pandas_udf

        text = self.getOrDefault(self.modelString)
        features = self.getOrDefault(self.featuresCols)

        @pandas_udf("double")
        def positive(rows: pd.DataFrame) -> pd.Series:
            return pd.Series(_booster(text).predict(rows.to_numpy(dtype=np.float32, na_value=np.nan)))

        p = positive(F.struct(*[F.col(c).cast("float").alias(c) for c in features]))
        tmp = "_lgbm_p"
        scored = dataset.withColumn(tmp, p)
        return scored.withColumns({
            self.getOrDefault(self.probabilityCol): array_to_vector(F.array(1 - F.col(tmp), F.col(tmp))),
            self.getOrDefault(self.predictionCol): (F.col(tmp) > 0.5).cast("double"),
        }).drop(tmp)
