"""nycflights' model, as the generic training job reads it (``lakeforge.training.spec``).

Binary: will the flight arrive more than 15 minutes late (cancelled and diverted flights count as
late), predicted at the cutoff before its scheduled departure (``lakeforge.pipelines.nycflights.features``). Its name,
experiment, family, window and promotion metric come from the ``LAKEFORGE_*`` settings.
"""

from lakeforge.training.spec import ModelSpec


def feature_columns():
    from lakeforge.pipelines.nycflights.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    return NUMERIC_FEATURES, CATEGORICAL_FEATURES


MODEL = ModelSpec(
    source="nycflights",
    features="features/flights",
    label="label",
    task="binary",
    columns=feature_columns,
    key=("flight_key",),
    job="train_delay_model",
    # Flights with no tail number are left out of training and of every metric: in the 2013 data
    # they are all cancelled, so "no aircraft" is the label in disguise (lakeforge.pipelines.nycflights.features).
    row_filter="tailnum IS NOT NULL",
    one_hot_numeric=("sched_dep_hour", "day_of_week"),  # not linear in the delay risk
    time_order=("sched_dep_hour", "sched_dep_minute"),
    description="label = arr_delay > 15 min (cancelled and diverted count as delayed); flights with a tail number",
)
