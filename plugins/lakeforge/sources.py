"""Declarative description of an upstream source: what it delivers, where, and how often.

A pipeline folder (``lakeforge.pipelines.<name>``) declares one ``Source``; the ingestion DAG
factory, its delivery watcher and the ingestion code are generic over it. A second dataset is a second
``Source``, not a fork of the code.

A source's name is its namespace in the lake (``<lake root>/<name>/``, see
``lakeforge.lake.source_lake``) and in the landing area, so names must be unique: the source
declared by folder ``pipelines/<name>/`` must be called ``<name>``, and a folder name found in
two pipeline folders (``LAKEFORGE_PIPELINES_PATH``) is refused, naming both, before anything is
built or written.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Cadence = Literal["daily", "snapshot"]


@dataclass(frozen=True)
class Table:
    """One delivered table.

    ``daily`` tables arrive once per partition (a day, or a month's first day for a monthly
    source) and every partition needs them; ``snapshot``
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
    # Or one column holding the row's date as text (declare at most one of the two), read with
    # ``date_format`` (``strptime``, e.g. "%Y/%m/%d" for 2013/01/05); without a format, ISO 8601
    # (a date, or a date-time whose date part counts).
    date_column: str | None = None
    date_format: str | None = None
    # The exporter's trailer: a regular expression that the file's last line matches in full,
    # its one group the number of data rows (e.g. r"#rows=(\d+)"). Declared, it catches a file cut
    # exactly at a line end (see ``lakeforge.delivery``); the trailer line is not published.
    row_count_trailer: str | None = None

    def __post_init__(self) -> None:
        where = f"table {self.name!r}"
        if len(set(self.columns)) != len(self.columns):
            dups = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise ValueError(f"{where}: columns declared twice: {', '.join(dups)}")
        if self.date_columns is not None and self.date_column is not None:
            raise ValueError(f"{where}: declare the row's date as date_columns (year, month, day) or as one "
                             "date_column (with date_format), not both")
        if self.date_columns is not None and (len(self.date_columns) != 3 or len(set(self.date_columns)) != 3):
            raise ValueError(f"{where}: date_columns must be three distinct columns (year, month, day), "
                             f"not {self.date_columns!r}")
        if self.date_format is not None and self.date_column is None:
            raise ValueError(f"{where}: date_format {self.date_format!r} without a date_column")
        if self.date_format is not None:
            _check_date_format(where, self.date_format)
        named = [*(self.date_columns or ()), *([self.date_column] if self.date_column else [])]
        unknown = [c for c in named if self.columns and c not in self.columns]
        if unknown:
            raise ValueError(f"{where}: date column(s) {', '.join(unknown)} not among its columns")
        if self.row_count_trailer is not None:
            try:
                groups = re.compile(self.row_count_trailer).groups
            except re.error as exc:
                raise ValueError(f"{where}: row_count_trailer {self.row_count_trailer!r} is not a "
                                 f"regular expression: {exc}") from None
            if groups != 1:
                raise ValueError(f"{where}: row_count_trailer {self.row_count_trailer!r} needs exactly one "
                                 f"group (the row count), has {groups}")

    @property
    def folder(self) -> str:
        return self.landing_folder or self.name

    def glob(self, ds: str) -> str:
        return f"{self.folder}/{self.filename.format(ds=ds)}"

    def matches(self, filename: str, ds: str) -> bool:
        return fnmatch.fnmatchcase(filename, self.filename.format(ds=ds))

    def date_of(self, filename: str) -> str | None:
        """The date (YYYY-MM-DD) a landing file name delivers, None for a name that is no delivery
        of this table (a temporary name, another table's file)."""
        from datetime import date

        found = self._date_pattern().fullmatch(filename)
        ds = found.group("ds") if found else None
        if not ds or not self.matches(filename, ds):
            return None
        try:
            return date.fromisoformat(ds).isoformat()
        except ValueError:  # 2013-13-05
            return None

    def _date_pattern(self) -> re.Pattern[str]:
        before, _, after = self.filename.partition("{ds}")
        # Whatever the wildcards match is checked again by ``matches``: they only have to cover it.
        wild = [re.escape(part).replace(r"\*", ".*").replace(r"\?", ".") for part in (before, after)]
        return re.compile(wild[0] + r"(?P<ds>\d{4}-\d{2}-\d{2})" + wild[1], re.S)


def _check_date_format(where: str, fmt: str) -> None:
    """A date format must name one day: a date written with it reads back as that date."""
    from datetime import date, datetime

    probe = date(2013, 11, 28)
    try:
        back = datetime.strptime(probe.strftime(fmt), fmt).date()
    except ValueError as exc:
        raise ValueError(f"{where}: date_format {fmt!r} does not read back what it writes: {exc}") from None
    if back != probe:
        raise ValueError(f"{where}: date_format {fmt!r} does not identify a day (year, month and day): "
                         f"{probe} reads back as {back}")


@dataclass(frozen=True)
class Source:
    """An upstream system and the tables it delivers."""

    name: str
    tables: tuple[Table, ...]
    description: str = ""

    def __post_init__(self) -> None:
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            dups = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"source {self.name!r}: tables declared twice: {', '.join(dups)}")

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


class SourceConflict(ValueError):
    """Two pipelines would share a lake namespace (the same source name)."""


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Top-level folders of the lake layout before sources were namespaced (``lakeforge.migrate``):
# a source of one of these names would mix with a not yet migrated lake.
RESERVED_NAMES = frozenset({"raw", "clean", "features", "quarantine", "quality", "registry",
                            "predictions", "monitoring"})


def check_source_name(name: str) -> None:
    if not _NAME.match(name) or name in RESERVED_NAMES:
        raise ValueError(
            f"source name {name!r} must be a lower-case identifier ([a-z][a-z0-9_]*) and not one of "
            f"{', '.join(sorted(RESERVED_NAMES))}: it names the source's folder in the lake"
        )


def pipeline_dirs() -> list[Path]:
    """Folders holding pipeline packages: lakeforge's own ``pipelines/``, then the folders of
    ``LAKEFORGE_PIPELINES_PATH`` (pipelines kept outside the checkout)."""
    import lakeforge.pipelines
    from lakeforge.settings import get_settings

    extra = [Path(p).expanduser().resolve() for p in get_settings().pipelines_path.split(os.pathsep) if p]
    own = Path(lakeforge.pipelines.__file__).resolve().parent
    dirs = list(dict.fromkeys([own, *extra]))
    # The extra folders become importable as ``lakeforge.pipelines.<name>`` (as the setting is now).
    lakeforge.pipelines.__path__[:] = [str(d) for d in dirs]
    return dirs


def pipeline_folders() -> dict[str, Path]:
    """Every pipeline folder by name; a name found in two pipeline dirs raises ``SourceConflict``."""
    found: dict[str, Path] = {}
    for d in pipeline_dirs():
        for folder in sorted(d.iterdir()) if d.is_dir() else []:
            if not (folder / "__init__.py").is_file():
                continue
            if folder.name in found:
                raise SourceConflict(
                    f"two pipelines declare source {folder.name!r}: {found[folder.name]} and {folder}; "
                    f"they would write the same lake paths ({folder.name}/raw/...). Rename one."
                )
            found[folder.name] = folder
    return found


def get_source(name: str) -> Source:
    """The ``SOURCE`` declared by pipeline folder ``lakeforge.pipelines.<name>``."""
    check_source_name(name)
    folders = pipeline_folders()
    module = importlib.import_module(f"lakeforge.pipelines.{name}")
    source = getattr(module, "SOURCE", None)
    if not isinstance(source, Source):
        raise LookupError(f"lakeforge.pipelines.{name} declares no SOURCE")
    if source.name != name:
        owner = f" (the source of pipeline {folders[source.name]})" if source.name in folders else ""
        raise SourceConflict(
            f"pipeline {module.__file__} declares source {source.name!r}{owner}; a pipeline's source must "
            f"be named after its folder ({name!r}), which is its namespace in the lake"
        )
    return source


def pipeline_declaration(pipeline: str, module: str, name: str, kind: type):
    """``name`` in ``lakeforge.pipelines.<pipeline>.<module>`` (e.g. ``TRANSFORM`` in
    ``transform``), checked: an instance of ``kind`` declared for this pipeline's source, which is
    checked first (declared, named after its folder, claimed by no other pipeline)."""
    get_source(pipeline)
    found = importlib.import_module(f"lakeforge.pipelines.{pipeline}.{module}")
    value = getattr(found, name, None)
    if not isinstance(value, kind):
        raise LookupError(f"{found.__name__} declares no {name} (a {kind.__module__}.{kind.__name__})")
    if value.source != pipeline:
        raise ValueError(f"{found.__file__}: {name}.source is {value.source!r}, expected {pipeline!r}")
    return value
