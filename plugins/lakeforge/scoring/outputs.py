"""A Spark model's output turned into the prediction columns of its task (``ModelSpec.outputs``).

One definition for batch scoring and for monitoring's reference profile (which scores the
training window with the same model): Spark SQL over the model's ``prediction`` / ``probability``
columns, no Python UDF.

- binary: ``probability`` = P(label = 1) (the decision needs the version's threshold: the job adds it);
- multiclass: ``prediction`` (class index, int), ``predicted_class`` (its name from the spec's
  ``classes``), ``probability`` (of the predicted class), ``probabilities`` (array<double>, in
  label index order);
- regression: ``prediction`` (double).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

    from lakeforge.training.spec import ModelSpec


def output_columns(spec: "ModelSpec") -> list["Column"]:
    """The task's prediction columns over a model's ``transform`` output (binary: without ``decision``)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    if spec.task == "binary":
        return [vector_to_array(F.col("probability"))[1].cast("double").alias("probability")]
    if spec.task == "regression":
        return [F.col("prediction").cast("double").alias("prediction")]
    index = F.col("prediction").cast("int")
    probabilities = vector_to_array(F.col("probability")).cast("array<double>")
    return [index.alias("prediction"),
            F.element_at(F.array(*[F.lit(c) for c in spec.classes]), index + 1).alias("predicted_class"),
            F.element_at(probabilities, index + 1).alias("probability"),
            probabilities.alias("probabilities")]


def model_outputs(spec: "ModelSpec", model, features: "DataFrame", keep: Sequence[str]) -> "DataFrame":
    """``keep`` columns of ``features`` + the task's prediction columns, scored by ``model``'s ``transform``."""
    return model.transform(features).select(*keep, *output_columns(spec))
