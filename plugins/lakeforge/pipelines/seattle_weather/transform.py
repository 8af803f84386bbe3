"""seattle_weather's transform, as the generic job reads it (``lakeforge.transform``)."""

from lakeforge.pipelines.seattle_weather.clean import clean_weather
from lakeforge.pipelines.seattle_weather.features import build_features
from lakeforge.transform import Clean, Features, Transform

TRANSFORM = Transform(
    source="seattle_weather",
    every="month",  # one raw partition per month, ds = its first day
    clean=(Clean("weather", clean_weather),),
    features=(
        # history_days=31: a month's first week reads the previous month's published clean rows.
        Features("weather", build_features, inputs=("weather",), history_days=31, upstream="weather"),
    ),
)
