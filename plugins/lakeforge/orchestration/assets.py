"""Airflow Assets for lake tables, so downstream DAGs schedule on data, not on clocks.

One asset per table and layer; its URI is the table's real location in the lake (file:// or
hdfs://), its name is stable across environments (``nycflights.raw.flights``), which is what
downstream DAGs refer to.
"""

from __future__ import annotations

from airflow.sdk import Asset

from lakeforge.settings import get_settings
from lakeforge.uris import join_uri


def lake_asset(source_name: str, layer: str, table: str) -> Asset:
    return Asset(
        name=f"{source_name}.{layer}.{table}",
        uri=join_uri(get_settings().lake_root, layer, table),
        group="lakeforge",
    )


def raw_asset(source_name: str, table: str) -> Asset:
    return lake_asset(source_name, "raw", table)
