"""``python -m lakeforge.monitoring [--pipeline NAME] [--days N] [--lake URI]``: the last N monitored
days of a pipeline's model, one line per (day, model version): rows scored and evaluated, the task's
metrics (binary: ROC AUC, calibration error, mean prediction vs observed rate; multiclass: log loss,
accuracy, F1; regression: RMSE, MAE, R², mean prediction vs observed mean), the largest PSI above its
usual value on a training day and the top drifting features (by that excess), then where the reports
are. Reads only the small monitoring tables of the lake (no Spark, no MLflow)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from lakeforge.lake import Lake
from lakeforge.monitoring import drift, evaluate, store

if TYPE_CHECKING:
    from lakeforge.training.spec import ModelSpec

# (header, record field) of each task's metric columns
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "binary": (("ROC AUC", "roc_auc"), ("ECE", "calibration_error"), ("predicted", "mean_prediction"),
               ("observed", "positive_rate")),
    "multiclass": (("log loss", "log_loss"), ("accuracy", "accuracy"), ("F1", "f1")),
    "regression": (("RMSE", "rmse"), ("MAE", "mae"), ("R2", "r2"), ("predicted", "mean_prediction"),
                   ("observed", "mean_label")),
}


def _f(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def rows(lake: Lake, days: int, task: str | None = None) -> list[dict[str, Any]]:
    """The lines of the newest ``days`` monitored days; ``task``'s metric columns (None: the task
    the records were evaluated for)."""
    records = evaluate.read_performance(lake)
    task = task or (evaluate.task_of(records[-1]) if records else "binary")
    perf = {(r["ds"], r["model_version"]): r for r in records}
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
                "metrics": {head: p.get(field) for head, field in COLUMNS[task]},
                "max_excess": None if same is None else same["max_excess"],
                "drift": "" if same is None else ("DRIFT" if same["drift"] else "ok"),
                "top": ", ".join(f"{e['feature']} {e['excess']:+.2f}" for e in top[:3]),
                "report": lake.uri(store.DRIFT, f"ds={ds}", drift.REPORT_HTML) if same else "",
            })
    return out


def table(lines: list[dict[str, Any]]) -> str:
    metrics = list(lines[0]["metrics"]) if lines else []
    head = ["day", "version", "scored", "evaluated", *metrics, "PSI > usual", "drift", "top drifting features"]
    body = [[r["ds"], r["version"], str(r["scored"] if r["scored"] is not None else "-"),
             str(r["evaluated"] if r["evaluated"] is not None else "-"), *[_f(r["metrics"].get(m)) for m in metrics],
             _f(r["max_excess"]), r["drift"], r["top"]] for r in lines]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)])


def default_spec() -> "ModelSpec":
    """The model of the pipeline whose model is ``LAKEFORGE_MODEL_NAME``, or the only one declared."""
    from lakeforge.settings import get_settings
    from lakeforge.training.spec import model_specs

    specs = model_specs()
    named = [spec for spec in specs if spec.name == get_settings().model_name]
    if named or len(specs) == 1:
        return (named or specs)[0]
    raise SystemExit(f"name the pipeline: --pipeline {{{','.join(sorted(spec.source for spec in specs))}}}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lakeforge.monitoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", help="the pipeline whose model is shown (default: the one whose model is "
                                      "LAKEFORGE_MODEL_NAME)")
    p.add_argument("--days", type=int, default=14, help="how many of the newest monitored days (default 14)")
    p.add_argument("--lake", help="the source's lake URI (default: the pipeline source's namespace of "
                                  "LAKEFORGE_LAKE_ROOT)")
    args = p.parse_args(argv)
    from lakeforge.training.spec import load_model_spec

    spec = load_model_spec(args.pipeline) if args.pipeline else None
    if args.lake:
        lake = Lake(args.lake)
    else:
        spec = spec or default_spec()
        lake = store.lake_of(spec)
    lines = rows(lake, args.days, spec.task if spec else None)
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
