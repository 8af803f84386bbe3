"""The retraining decision: a pure function of the monitoring records (no I/O, no clock).

It fires when either holds for the champion version:

- performance: the pooled promotion metric of its last ``retrain_window_days`` evaluated days
  (histograms, confusion cells and sums added: ``evaluate.pooled``) is worse than its holdout value
  by MORE than ``retrain_max_drop`` (for log loss, Brier, RMSE and MAE, higher is worse). Fewer evaluated days than the
  window: no verdict yet (one bad day after a promotion is not a trend);
- drift: its last ``retrain_drift_days`` scored days each have some feature's or the prediction's
  PSI more than ``retrain_drift_psi`` above its usual value on a training day (``drift``: the
  ``excess``; days without a scored partition are skipped, not a break).

Only records of the champion version count: a new champion starts with a clean slate (its own
holdout value, its own reference profile). Days the version trained on (``trained_through``: the
last day of its training window) are not evidence: the first champion scores every pending day,
its own training days included, and there it looks better than it is and drifts from nothing. ``last_fired``: the day the policy last fired for this
version; evidence that does not reach past it does not fire again (the same window would otherwise
trigger a retraining every day until a new champion is promoted).

Comparisons are made with a 1e-9 tolerance: a drop of exactly ``retrain_max_drop`` (0.75 - 0.72
is 0.030000000000000027 in floating point) does not fire.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from lakeforge.monitoring.evaluate import pooled
from lakeforge.training.promotion import HIGHER_IS_BETTER

if TYPE_CHECKING:
    from lakeforge.training.spec import ModelSpec

TOLERANCE = 1e-9


@dataclass(frozen=True)
class RetrainPolicy:
    metric: str = "roc_auc"
    window_days: int = 7
    max_drop: float = 0.03
    drift_psi: float = 0.25
    drift_days: int = 3

    def __post_init__(self):
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown metric {self.metric!r}: one of {sorted(HIGHER_IS_BETTER)}")
        if self.window_days < 1 or self.drift_days < 1:
            raise ValueError("window_days and drift_days must be at least 1")

    @classmethod
    def from_settings(cls) -> "RetrainPolicy":
        """The ``LAKEFORGE_*`` settings' policy (the promotion metric of a binary model)."""
        from lakeforge.settings import get_settings

        s = get_settings()
        return cls(s.promotion_metric, s.retrain_window_days, s.retrain_max_drop, s.retrain_drift_psi,
                   s.retrain_drift_days)

    @classmethod
    def for_spec(cls, spec: "ModelSpec") -> "RetrainPolicy":
        """A pipeline's policy: its promotion metric, its window and allowed drop where it declares
        them (a monthly table pools months; RMSE is in the label's units), else the settings'."""
        from dataclasses import replace

        policy = cls.from_settings()
        return replace(policy, metric=spec.promotion_metric or spec.resolved().promotion_metric,
                       window_days=policy.window_days if spec.retrain_window is None else spec.retrain_window,
                       max_drop=policy.max_drop if spec.retrain_max_drop is None else spec.retrain_max_drop)


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str  # one line for a person: why it fires, or why not
    trigger: str | None  # "performance", "drift", "performance+drift", or None
    model_version: str | None
    as_of: str | None  # the newest day the decision looked at
    policy: dict[str, Any]
    performance: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, Any] = field(default_factory=dict)

    def extra(self) -> dict[str, Any]:
        """The asset event's extra (JSON-safe)."""
        return asdict(self)


def _performance(records: Sequence[Mapping[str, Any]], holdout: float | None, p: RetrainPolicy,
                 last_fired: str | None) -> tuple[bool, str, dict[str, Any]]:
    days = sorted((r for r in records if r.get("rows_evaluated")), key=lambda r: r["ds"])[-p.window_days:]
    info: dict[str, Any] = {"metric": p.metric, "holdout": holdout, "days": [r["ds"] for r in days]}
    if holdout is None:
        return False, f"performance: no holdout {p.metric} of the champion to compare with", info
    if len(days) < p.window_days:
        return False, f"performance: {len(days)} of {p.window_days} evaluated days, no verdict yet", info
    value = pooled(days)[p.metric]
    span = f"{days[0]['ds']}..{days[-1]['ds']}"
    if value is None:
        return False, f"performance: {p.metric} undefined on {span} (one class)", info
    drop = (holdout - value) if HIGHER_IS_BETTER[p.metric] else (value - holdout)
    info.update(value=value, drop=drop)
    # The value's direction (a log loss going up is worse); ``drop`` is how much worse it is.
    text = (f"{p.metric} {value:.4f} over the last {p.window_days} evaluated days ({span}) vs holdout "
            f"{holdout:.4f}: {'down' if value < holdout else 'up'} {abs(drop):.4f}")
    if drop <= p.max_drop + TOLERANCE:
        return False, f"{text}, within {p.max_drop}", info
    if last_fired is not None and days[0]["ds"] <= last_fired:
        return False, f"{text}, more than {p.max_drop}, but already fired on {last_fired} with these days", info
    return True, f"{text}, more than the allowed {p.max_drop}", info


def _drift(records: Sequence[Mapping[str, Any]], p: RetrainPolicy,
           last_fired: str | None) -> tuple[bool, str, dict[str, Any]]:
    days = sorted(records, key=lambda r: r["ds"])
    streak: list[Mapping[str, Any]] = []
    for r in reversed(days):
        if not _drifts(r, p.drift_psi):
            break
        streak.append(r)
    streak.reverse()
    info: dict[str, Any] = {"psi": p.drift_psi, "streak": [r["ds"] for r in streak]}
    if len(streak) < p.drift_days:
        tail = f"; the newest day's largest {days[-1].get('max_excess') or 0:.3f}" if days else ""
        return False, (f"drift: {len(streak)} of {p.drift_days} consecutive scored days with a PSI more than "
                       f"{p.drift_psi} above usual{tail}"), info
    held = streak[-p.drift_days:]
    worst: dict[str, float] = {}
    for r in held:
        for name, value in _over(r, p.drift_psi):
            worst[name] = max(worst.get(name, 0.0), value)
    top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(worst.items(), key=lambda kv: -kv[1])[:5])
    info["features"] = worst
    text = (f"drift: PSI more than {p.drift_psi} above usual on {len(streak)} consecutive scored days "
            f"({streak[0]['ds']}..{streak[-1]['ds']}; {top})")
    if last_fired is not None and held[0]["ds"] <= last_fired:
        return False, f"{text}, but already fired on {last_fired} with these days", info
    return True, text, info


def _over(record: Mapping[str, Any], threshold: float) -> list[tuple[str, float]]:
    """(feature, PSI above usual) over the threshold in a drift record: a report or its ``drift.summary``."""
    out = [(e["feature"], e["excess"]) for e in record.get("features", []) if e.get("excess") is not None]
    out += [(name, value) for name, value in record.get("top", []) if value is not None]
    pred = record.get("prediction_excess", (record.get("prediction") or {}).get("excess"))
    if pred is not None:
        out.append(("__prediction__", pred))
    return [(k, v) for k, v in dict(out).items() if v > threshold + TOLERANCE]


def _drifts(record: Mapping[str, Any], threshold: float) -> bool:
    value = record.get("max_excess")
    return value is not None and value > threshold + TOLERANCE


def decide(performance: Sequence[Mapping[str, Any]], drift: Sequence[Mapping[str, Any]],
           holdout_value: float | None, champion_version: str, policy: RetrainPolicy,
           last_fired: str | None = None, trained_through: str | None = None) -> RetrainDecision:
    """Should the champion be retrained? ``performance``: records of ``evaluate`` (table rows);
    ``drift``: day reports of ``drift`` or their ``drift.summary``; both may hold other versions'
    days (ignored). ``holdout_value``: the champion's holdout ``policy.metric``. ``trained_through``:
    the last day of its training window; days up to it are left out (it has seen them)."""
    version = str(champion_version)

    def unseen(r: Mapping[str, Any]) -> bool:
        return trained_through is None or r["ds"] > trained_through

    perf = [r for r in performance if str(r["model_version"]) == version]
    dr = [r for r in drift if str(r.get("model_version")) == version]
    seen = sorted({r["ds"] for r in perf + dr if not unseen(r)})
    perf, dr = [r for r in perf if unseen(r)], [r for r in dr if unseen(r)]
    fired_p, why_p, info_p = _performance(perf, holdout_value, policy, last_fired)
    fired_d, why_d, info_d = _drift(dr, policy, last_fired)
    if seen:
        info_p["trained_on_days_left_out"] = info_d["trained_on_days_left_out"] = len(seen)
    trigger = "+".join(t for t, fired in (("performance", fired_p), ("drift", fired_d)) if fired) or None
    reasons = [why for why, fired in ((why_p, fired_p), (why_d, fired_d)) if fired] or [why_p, why_d]
    if seen:
        reasons.append(f"{len(seen)} day(s) of its own training window left out ({seen[0]}..{seen[-1]})")
    days = [r["ds"] for r in perf] + [r["ds"] for r in dr]
    prefix = f"retrain v{version}: " if trigger else f"no retraining of v{version}: "
    return RetrainDecision(
        retrain=trigger is not None, reason=prefix + "; ".join(reasons),
        trigger=trigger, model_version=version, as_of=max(days, default=None), policy=asdict(policy),
        performance=info_p, drift=info_d)
