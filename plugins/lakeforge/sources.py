"""Declarative description of an upstream source: what it delivers, where, and how often.

A pipeline folder (``lakeforge.pipelines.<name>``) declares one ``Source``; the ingestion DAG
factory, the sensors and the ingestion code are generic over it. A second dataset is a second
``Source``, not a fork of the code.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass
from typing import Literal

Cadence = Literal["daily", "snapshot"]


@dataclass(frozen=True)
class Table:
    """One delivered table.

    ``daily`` tables arrive once per data interval and the DAG waits for them; ``snapshot``
    tables (reference data) arrive now and then and are ingested when present, as dated
    snapshots, skipping a delivery identical to the previous snapshot.
    """

    name: str
    cadence: Cadence
    # Landing file names for a date, in the table's landing folder. ``{ds}`` is the date
    # (YYYY-MM-DD); anything after it (``.part-2``, ``.resend``) is still that day's delivery.
    # Exporters write under another name and rename when complete, so a match is a whole file.
    filename: str = "{ds}*.csv"
    # Folder under the source's landing area; the table name unless set.
    landing_folder: str = ""
    # Columns the exporter promises: recorded, and checked by the quality gates downstream.
    columns: tuple[str, ...] = ()
    # Columns that hold the row's own date (year, month, day): a delivery with no row of its
    # date is a misrouted file and is rejected.
    date_columns: tuple[str, str, str] | None = None
    description: str = ""

    @property
    def folder(self) -> str:
        return self.landing_folder or self.name

    def glob(self, ds: str) -> str:
        return f"{self.folder}/{self.filename.format(ds=ds)}"

    def matches(self, filename: str, ds: str) -> bool:
        return fnmatch.fnmatchcase(filename, self.filename.format(ds=ds))


@dataclass(frozen=True)
class Source:
    """An upstream system and the tables it delivers."""

    name: str
    tables: tuple[Table, ...]
    description: str = ""

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"source {self.name!r} has no table {name!r}")

    def raw_path(self, table: str) -> str:
        return f"raw/{table}"

    @property
    def daily_tables(self) -> tuple[Table, ...]:
        return tuple(t for t in self.tables if t.cadence == "daily")

    @property
    def snapshot_tables(self) -> tuple[Table, ...]:
        return tuple(t for t in self.tables if t.cadence == "snapshot")


def get_source(name: str) -> Source:
    """The ``SOURCE`` declared by pipeline folder ``lakeforge.pipelines.<name>``."""
    module = importlib.import_module(f"lakeforge.pipelines.{name}")
    source = getattr(module, "SOURCE", None)
    if not isinstance(source, Source):
        raise LookupError(f"lakeforge.pipelines.{name} declares no SOURCE")
    return source
