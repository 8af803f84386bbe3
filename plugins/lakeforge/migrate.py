"""One-time move of a lake written before sources were namespaced into its source's namespace.

Before, the reference pipeline wrote ``<root>/raw/flights/...``, ``<root>/clean/...``,
``<root>/quality/...``, ``<root>/_reports/...`` and ``<root>/registry/...``; now every source
owns ``<root>/<source>/`` (``lakeforge.lake.source_lake``). This command moves each of those
top-level folders below ``<root>/<source>/``: one rename per folder (metadata only, on HDFS
too), so a year of partitions moves in a moment and no file is copied or rewritten. Where the
source's namespace already holds a folder of the same name (new runs wrote there before the
migration), the old folder's tables are moved one by one; a table present on both sides is left
in place and reported, never overwritten.

    python -m lakeforge.migrate --source nycflights [--root URI] [--dry-run]

Pause the source's DAGs first (nothing may write the lake while it moves). Running it again
moves nothing.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

from lakeforge.lake import Lake, source_lake
from lakeforge.sources import RESERVED_NAMES, get_source

log = logging.getLogger(__name__)

# What the pre-namespace layout put at the lake's root.
LEGACY_FOLDERS = tuple(sorted(RESERVED_NAMES)) + ("_reports",)


@dataclass
class Migration:
    root: str
    target: str
    moved: list[str] = field(default_factory=list)  # paths relative to the root, as they were
    conflicts: list[str] = field(default_factory=list)  # present at both places: left alone


def migrate(source_name: str, root_uri: str | None = None, dry_run: bool = False) -> Migration:
    get_source(source_name)  # a source that exists, with a valid name
    target = source_lake(source_name, root_uri)
    root = Lake(root_uri)
    result = Migration(root.root_uri, target.root_uri)

    def move(rel: str) -> None:
        result.moved.append(rel)
        if not dry_run:
            root.move(rel, f"{source_name}/{rel}")

    for folder in LEGACY_FOLDERS:
        if not root.exists(folder):
            continue
        if not target.exists(folder):
            move(folder)
            continue
        for child in root.listdir(folder):
            rel = f"{folder}/{child}"
            if target.exists(rel):
                result.conflicts.append(rel)
            else:
                move(rel)
        if not dry_run and not root.listdir(folder):
            root.delete(folder)  # emptied: every table moved
    return result


def main(argv: list[str] | None = None) -> Migration:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="the source whose data the old layout holds (e.g. nycflights)")
    parser.add_argument("--root", help="lake root URI (default: LAKEFORGE_LAKE_ROOT)")
    parser.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
    args = parser.parse_args(argv)
    result = migrate(args.source, args.root, args.dry_run)
    verb = "would move" if args.dry_run else "moved"
    for rel in result.moved:
        print(f"{verb} {result.root}/{rel} -> {result.target}/{rel}")
    if not result.moved:
        print(f"nothing to move: {result.root} has no folder of the old layout")
    for rel in result.conflicts:
        print(f"left alone (present in both): {result.root}/{rel} and {result.target}/{rel}")
    if result.conflicts:
        raise SystemExit(2)
    return result


if __name__ == "__main__":
    main()
