"""Airflow Assets for lake tables, so downstream DAGs schedule on data, not on clocks.

One asset per source, layer and table. Its URI is a logical name (``lakeforge://nycflights/raw/
flights``), not the physical location: the lake root is a setting (file:// on a laptop, hdfs://
on a cluster) and may differ between the DAG processor and a test or a worker, while an asset's
identity must not. Each asset event carries the physical partition URI in its ``extra``.
"""

from __future__ import annotations

from airflow.sdk import Asset


def lake_asset(source_name: str, layer: str, table: str) -> Asset:
    return Asset(
        name=f"{source_name}.{layer}.{table}",
        uri=f"lakeforge://{source_name}/{layer}/{table}",
        group="lakeforge",
    )


def raw_asset(source_name: str, table: str) -> Asset:
    return lake_asset(source_name, "raw", table)


def retrain_asset(source_name: str) -> Asset:
    """"Retrain the champion": emitted by batch scoring when the retraining policy fires (the
    reason in the event's extra); ``train_delay_model`` is scheduled on it."""
    return lake_asset(source_name, "monitoring", "retrain_requested")


def model_asset(model_name: str) -> Asset:
    """The registered model's champion: emitted when a training run's version became champion;
    batch scoring is scheduled on it (a first or new champion scores the days never scored)."""
    return Asset(name=f"models.{model_name}", uri=f"lakeforge://models/{model_name}", group="lakeforge")


def landing_asset(source_name: str) -> Asset:
    """A source's landing area: its events come from the delivery watcher on the triggerer
    (``lakeforge.orchestration.triggers``) when files land; the source's ingest DAG is scheduled
    on it."""
    from airflow.sdk import AssetWatcher

    from lakeforge.orchestration.triggers import LandingDeliveryTrigger
    from lakeforge.settings import get_settings

    watcher = AssetWatcher(
        name=f"{source_name}_deliveries",
        trigger=LandingDeliveryTrigger(source_name=source_name, poll_seconds=get_settings().delivery_poll_seconds),
    )
    return Asset(name=f"{source_name}.landing", uri=f"lakeforge://{source_name}/landing", group="lakeforge",
                 watchers=[watcher])
