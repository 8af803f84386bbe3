"""``python -m lakeforge.monitoring [--days N] [--lake URI]``: the last N monitored days, one line per
(day, model version): rows scored and evaluated, ROC AUC, calibration error, mean prediction vs
observed delay rate, the largest PSI above its usual value on a training day and the top
drifting features (by that excess), then where the reports are.
Reads only the small monitoring tables of the lake (no Spark, no MLflow)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lakeforge.lake import Lake, source_lake
from lakeforge.monitoring import drift, evaluate, store


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def rows(lake: Lake, days: int) -> list[dict[str, Any]]:
    perf = {(r["ds"], r["model_version"]): r for r in evaluate.read_performance(lake)}
    drift_days = store.published_days(lake, store.DRIFT)
    wanted = sorted({ds for ds, _ in perf} | set(drift_days))[-days:]
    out = []
    for ds in wanted:
        report = drift.read_report(lake, ds) if ds in drift_days else None
        versions = sorted({v for d, v in perf if d == ds} | ({str(report["model_version"])} if report else set()),
                          key=lambda v: int(v) if v.isdigit() else 0)
        for v in versions:
            p = perf.get((ds, v), {})
            same = report if report and str(report["model_version"]) == v else None
            top = [] if same is None else [e for e in ([same["prediction"]] if same.get("prediction") else [])
                                           + same["features"] if e["excess"] is not None]
            top.sort(key=lambda e: -e["excess"])
            out.append({
                "ds": ds, "version": v, "scored": p.get("rows_scored"), "evaluated": p.get("rows_evaluated"),
                "roc_auc": p.get("roc_auc"), "ece": p.get("calibration_error"),
                "predicted": p.get("mean_prediction"), "observed": p.get("positive_rate"),
                "max_excess": None if same is None else same["max_excess"],
                "drift": "" if same is None else ("DRIFT" if same["drift"] else "ok"),
                "top": ", ".join(f"{e['feature']} {e['excess']:+.2f}" for e in top[:3]),
                "report": lake.uri(store.DRIFT, f"ds={ds}", drift.REPORT_HTML) if same else "",
            })
    return out


def table(lines: list[dict[str, Any]]) -> str:
    head = ["day", "version", "scored", "evaluated", "ROC AUC", "ECE", "predicted", "observed", "PSI > usual", "drift",
            "top drifting features"]
    body = [[r["ds"], r["version"], str(r["scored"] if r["scored"] is not None else "-"),
             str(r["evaluated"] if r["evaluated"] is not None else "-"), _f(r["roc_auc"]), _f(r["ece"]),
             _f(r["predicted"]), _f(r["observed"]), _f(r["max_excess"]), r["drift"], r["top"]] for r in lines]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lakeforge.monitoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=14, help="how many of the newest monitored days (default 14)")
    p.add_argument("--lake", help=f"the source's lake URI (default: {store.SOURCE}'s namespace of LAKEFORGE_LAKE_ROOT)")
    args = p.parse_args(argv)
    lake = Lake(args.lake) if args.lake else source_lake(store.SOURCE)
    lines = rows(lake, args.days)
    if not lines:
        print(f"nothing monitored yet in {lake.uri(store.PERFORMANCE)} or {lake.uri(store.DRIFT)}")
        return 0
    print(table(lines))
    print("\nperformance:", lake.uri(store.PERFORMANCE))
    reports = [f"  {r['ds']}  {r['report']}" for r in lines if r["report"]]
    print("drift reports:", *(reports or ["  none in these days"]), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
