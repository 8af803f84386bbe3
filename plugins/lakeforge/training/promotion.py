"""The registry gate: when does a challenger become champion, and the promotion log.

Pure logic (no MLflow, no Spark): ``decide`` compares holdout metrics of the challenger with the
current champion's (both scored on the same holdout), or with a trivial baseline (a constant
prediction of the training positive rate) when there is no champion yet. The challenger is
promoted only if

- it beats the reference by MORE than ``margin`` on the primary metric (a tie within the margin
  is a rejection), and
- no guard fails, each judged against the same reference on the same holdout (absolute limits
  would reject every model in a month whose delay rate drifted, the trivial baseline included):
  ``calibration``: its expected calibration error exceeds the reference's by at most
  ``calibration_tolerance``; ``positive_rate``: its gap between mean predicted probability and
  observed positive rate exceeds the reference's by at most ``positive_rate_tolerance``.

A champion is never scored on days it has seen: ``comparison_days`` keeps only the challenger's
holdout days AFTER the champion's last training day (its search's validation days are the last
days of that window, so they are excluded with it). Days left out are named in the decision; if
none is left, or the champion's training window is unknown (a version registered before windows
were recorded, whose run has no ``train_end`` param either), there is no decision
(``no_decision``): the challenger is not promoted and the champion stays, with the reason.

Every decision is one JSON document in the lake (``promotion_log_dir``), one per training run key,
so a retried run rewrites its own entry instead of adding a second one. ``champion_on`` answers
"which model was champion at time X, and why" from those entries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from lakeforge.lake import Lake

from lakeforge.training.spec import HIGHER_IS_BETTER, METRIC_LABELS  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Policy:
    metric: str = "roc_auc"
    margin: float = 0.002
    calibration_tolerance: float = 0.02
    positive_rate_tolerance: float = 0.02

    def __post_init__(self) -> None:
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown promotion metric {self.metric!r}: one of {sorted(HIGHER_IS_BETTER)}")
        if self.margin < 0:
            raise ValueError("the promotion margin must be >= 0")

    @classmethod
    def from_settings(cls, settings=None, metric: str | None = None) -> "Policy":
        """The configured policy; ``metric``: a model spec's own promotion metric."""
        from lakeforge.settings import get_settings

        s = settings or get_settings()
        return cls(metric or s.promotion_metric, s.promotion_margin, s.guard_calibration_tolerance,
                   s.guard_positive_rate_tolerance)


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reasons: list[str]
    reference: str            # "champion" or "baseline"
    improvement: float | None  # signed: > 0 means the challenger is better; None: nothing was compared
    guards: dict[str, bool] = field(default_factory=dict)
    decided: bool = True      # False: no fair comparison was possible (``no_decision``)

    @property
    def outcome(self) -> str:
        if self.promoted:
            return "promoted"
        return "rejected" if self.decided else "no_decision"


@dataclass(frozen=True)
class TrainingWindow:
    """The days a registered model has seen: its training window, whose last days were the search's
    validation days. ``source`` says where it was read (version tags, or its run's params)."""
    train_start: str
    train_end: str
    validation_start: str | None = None
    validation_end: str | None = None
    source: str = ""

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """The days the gate scores champion and challenger on: the challenger's holdout minus every
    day on or before the champion's last training day."""
    holdout: tuple[str, ...]     # the challenger's holdout, as split
    days: tuple[str, ...]        # the days the decision is made on (empty: no comparison possible)
    excluded: tuple[str, ...]    # holdout days left out (on or before the champion's last training day)
    refusal: str | None = None   # why there is no comparison with the champion (then ``days`` is empty)
    note: str | None = None      # what was left out and why, when some days were (a line of the reasons)


def _span(days) -> str:
    return f"{days[0]}..{days[-1]}" if len(days) > 1 else days[0]


def comparison_days(holdout, champion_version: str | None, champion_window: TrainingWindow | None) -> Comparison:
    """Which holdout days the challenger and the champion may be compared on (pure).

    No champion: the whole holdout (the reference is the trivial baseline, which saw nothing).
    Otherwise only the days after the champion's last training day; none left, or no known
    window, is a refusal with the reason."""
    holdout = tuple(holdout)
    if champion_version is None:
        return Comparison(holdout, holdout, ())
    if champion_window is None:
        return Comparison(holdout, (), holdout, (
            f"no decision: champion v{champion_version} has no recorded training window (no "
            f"window tags on the version, no train_end param on its run), so the days it "
            f"trained on are unknown and it cannot be scored fairly on the holdout {_span(holdout)}; "
            f"the challenger is not promoted and v{champion_version} stays champion"))
    last = champion_window.train_end
    days = tuple(d for d in holdout if d > last)
    excluded = tuple(d for d in holdout if d <= last)
    if not days:
        return Comparison(holdout, (), excluded, (
            f"no decision: every holdout day ({_span(holdout)}) is on or before champion v{champion_version}'s "
            f"last training day {last} (it trained on {champion_window.train_start}..{last}); a champion is "
            f"never scored on days it has seen, so nothing was compared: the challenger is not promoted and "
            f"v{champion_version} stays champion (train with a holdout reaching past {last})"))
    note = None
    if excluded:
        note = (f"compared on {_span(days)} only ({len(days)} of the {len(holdout)} holdout days): "
                f"{_span(excluded)} left out, on or before champion v{champion_version}'s last training day {last}")
    return Comparison(holdout, days, excluded, note=note)


def trivial_baseline(train_positive_rate: float, holdout_positive_rate: float) -> dict[str, float]:
    """Holdout metrics of a constant prediction ``p`` = the training positive rate."""
    import math

    p = min(max(train_positive_rate, 1e-15), 1 - 1e-15)
    y = holdout_positive_rate
    return {
        "roc_auc": 0.5,
        "pr_auc": y,
        "log_loss": -(y * math.log(p) + (1 - y) * math.log(1 - p)),
        "brier": y * (1 - p) ** 2 + (1 - y) * p ** 2,
        "positive_rate": y,
        "mean_prediction": p,
        "calibration_error": abs(p - y),
    }


def decide(challenger: dict[str, float], champion: dict[str, float] | None, baseline: dict[str, float],
           policy: Policy, comparison: Comparison | None = None) -> Decision:
    """Promote or reject, with human-readable reasons (every failed check is named).

    ``challenger``, ``champion`` and ``baseline`` are metrics on the same days: ``comparison.days``.
    A ``comparison`` that refuses gives ``no_decision``; one that left holdout days out says so in
    the reasons."""
    if comparison is not None and comparison.refusal:
        return Decision(False, [comparison.refusal], "champion", None, {}, decided=False)
    m = policy.metric
    reference, ref = ("champion", champion) if champion is not None else ("baseline", baseline)
    sign = 1.0 if HIGHER_IS_BETTER[m] else -1.0
    improvement = sign * (challenger[m] - ref[m])
    reasons: list[str] = []
    beats = improvement > policy.margin
    if beats:
        reasons.append(f"{m} {challenger[m]:.4f} vs {reference} {ref[m]:.4f}: "
                       f"improvement {improvement:+.4f} > margin {policy.margin:.4f}")
    elif improvement > 0:
        reasons.append(f"{m} {challenger[m]:.4f} vs {reference} {ref[m]:.4f}: "
                       f"improvement {improvement:+.4f} within margin {policy.margin:.4f}")
    else:
        reasons.append(f"{m} {challenger[m]:.4f} vs {reference} {ref[m]:.4f}: "
                       f"not better ({improvement:+.4f}, margin {policy.margin:.4f})")

    def gap(metrics: dict[str, float]) -> float:
        return abs(metrics["mean_prediction"] - metrics["positive_rate"])

    if "calibration_error" not in challenger:  # not a probability of one class: no guards apply
        if comparison is not None and comparison.note:
            reasons.append(comparison.note)
        return Decision(beats, reasons, reference, improvement, {})
    ece, ref_ece = challenger["calibration_error"], ref["calibration_error"]
    guards = {
        "calibration": ece <= ref_ece + policy.calibration_tolerance,
        "positive_rate": gap(challenger) <= gap(ref) + policy.positive_rate_tolerance,
    }
    if not guards["calibration"]:
        reasons.append(f"guard calibration failed: expected calibration error {ece:.4f} > {reference} "
                       f"{ref_ece:.4f} + tolerance {policy.calibration_tolerance:.4f}")
    if not guards["positive_rate"]:
        reasons.append(f"guard positive_rate failed: mean prediction {challenger['mean_prediction']:.4f} vs "
                       f"observed {challenger['positive_rate']:.4f} (gap {gap(challenger):.4f} > {reference} "
                       f"gap {gap(ref):.4f} + tolerance {policy.positive_rate_tolerance:.4f})")
    if comparison is not None and comparison.note:
        reasons.append(comparison.note)
    return Decision(beats and all(guards.values()), reasons, reference, improvement, guards)


# -- the one line a person reads on the version -------------------------------------------------


def short_span(days) -> str:
    """``2013-03-18..03-31`` (the end without its year when it is the same), one day as itself."""
    days = list(days)
    if not days:
        return "none"
    first, last = days[0], days[-1]
    if first == last:
        return first
    return f"{first}..{last[5:] if last[:4] == first[:4] else last}"


def describe(entry: dict[str, Any]) -> str:
    """What was decided and why, in one line (the registered version's description), from a
    promotion log entry (``log_entry``). The full reasons and both models' metrics stay in the entry."""
    outcome = entry["decision"]
    before = entry.get("champion_before")
    champ_v = before["version"] if before else None
    stays = f"; v{champ_v} stays champion" if champ_v else "; no champion yet"
    if outcome == "no_decision":
        window = (before or {}).get("window")
        if champ_v and window and window.get("train_end"):
            why = (f"every holdout day ({short_span(entry['holdout'])}) is on or before champion v{champ_v}'s "
                   f"last training day {window['train_end']}, so the two cannot be compared fairly")
        elif champ_v:
            why = f"champion v{champ_v}'s training window is unknown, so it cannot be scored fairly"
        else:
            why = entry["reasons"][0] if entry.get("reasons") else "nothing was compared"
        return f"No decision, kept as challenger: {why}{stays}"

    m = entry["policy"]["metric"]
    label = METRIC_LABELS.get(m, m)
    margin = entry["policy"]["margin"]
    mine = entry["challenger"]["metrics"][m]
    compared, excluded = entry.get("compared_days") or [], entry.get("excluded_days") or []
    days = short_span(compared)
    if excluded:
        days += (f", {len(compared)} of the {len(compared) + len(excluded)} holdout days: "
                 f"v{champ_v} trained on the rest")
    if entry["reference"] == "champion":
        theirs = before["metrics"][m]
        versus = f"holdout {label} {mine:.4f} vs champion v{champ_v} {theirs:.4f} on the same days ({days})"
    else:
        theirs = entry["baseline"][m]
        versus = f"holdout {label} {mine:.4f} vs the trivial baseline {theirs:.4f} ({days})"
    improvement = entry["improvement"]
    failed = [g for g, ok in (entry.get("guards") or {}).items() if not ok]
    if outcome == "promoted":
        first = " (first model)" if entry["reference"] == "baseline" else ""
        return f"Promoted to champion{first}: {versus}, {improvement:+.4f} > margin {margin:.4f}"
    ref = f"champion v{champ_v}" if entry["reference"] == "champion" else "the baseline"
    if improvement > margin:
        why = f"{improvement:+.4f} > margin {margin:.4f}"
    elif improvement > 0:
        why = f"{improvement:+.4f}, not above the margin {margin:.4f}"
    elif mine == theirs:
        why = f"no better than {ref}"
    else:
        worse = "below" if HIGHER_IS_BETTER.get(m, True) else "above"
        why = f"{worse} {ref} by {abs(mine - theirs):.4f}"
    if failed:
        why += f", guard {' and '.join(failed)} failed"
    return f"Kept as challenger: {versus}, {why}{stays}"


# -- the promotion log -------------------------------------------------------------------------

def promotion_log_dir(model_name: str) -> str:
    return f"registry/{model_name}/promotion_log"


def entry_name(run_key: str) -> str:
    return hashlib.sha256(run_key.encode()).hexdigest()[:16] + ".json"


def log_entry(
    *,
    model_name: str,
    version: str,
    run_id: str,
    run_key: str,
    decision: Decision,
    policy: Policy,
    challenger: dict[str, float],
    champion_version: str | None,
    champion: dict[str, float] | None,
    baseline: dict[str, float],
    comparison: Comparison,
    challenger_window: dict[str, str],
    champion_window: TrainingWindow | None,
    trigger: dict[str, Any],
    decided_at: str,
) -> dict[str, Any]:
    """One decision, exactly as it is written to the lake (its one-line summary: ``describe``).

    ``challenger`` / ``champion`` / ``baseline``: metrics on ``comparison.days`` (the champion's
    are None when it was not scored: no comparison possible). ``challenger_window``: the
    challenger's split boundaries (train, validation, holdout)."""
    holdout = comparison.holdout
    return {
        "model": model_name,
        "version": str(version),
        "run_id": run_id,
        "run_key": run_key,
        "decided_at": decided_at,
        "decision": decision.outcome,
        "reasons": list(decision.reasons),
        "reference": decision.reference,
        "improvement": None if decision.improvement is None else round(decision.improvement, 6),
        "guards": dict(decision.guards),
        "policy": asdict(policy),
        "challenger": {"version": str(version), "metrics": challenger, "window": dict(challenger_window)},
        "champion_before": None if champion_version is None else {
            "version": str(champion_version), "metrics": champion,
            "window": None if champion_window is None else champion_window.as_dict()},
        "baseline": baseline,
        "champion_after": str(version) if decision.promoted else (
            None if champion_version is None else str(champion_version)),
        "holdout": [holdout[0], holdout[-1]],
        "compared_days": list(comparison.days),
        "excluded_days": list(comparison.excluded),
        "trigger": trigger,
    }


def write_entry(lake: Lake, entry: dict[str, Any]) -> str:
    """Write (or, for a rerun of the same run key, replace) one decision: written under
    ``_staging/`` and renamed into place, so a reader never sees half a document."""
    folder = promotion_log_dir(entry["model"])
    rel = f"{folder}/{entry_name(entry['run_key'])}"
    tmp = f"{folder}/_staging/{entry_name(entry['run_key'])}.{datetime.now().timestamp():.0f}"
    lake.write_bytes(tmp, json.dumps(entry, indent=2, sort_keys=True).encode())
    lake.delete(rel)
    lake.move(tmp, rel)
    return rel


def read_log(lake: Lake, model_name: str) -> list[dict[str, Any]]:
    """Every decision, oldest first."""
    folder = promotion_log_dir(model_name)
    entries = [json.loads(lake.read_bytes(f"{folder}/{n}"))
               for n in lake.listdir(folder) if n.endswith(".json")]
    return sorted(entries, key=lambda e: e["decided_at"])


def champion_on(lake: Lake, model_name: str, when: str) -> dict[str, Any] | None:
    """The promotion that made the champion current at ``when`` (ISO timestamp), or None."""
    promoted = [e for e in read_log(lake, model_name) if e["decision"] == "promoted" and e["decided_at"] <= when]
    return promoted[-1] if promoted else None
