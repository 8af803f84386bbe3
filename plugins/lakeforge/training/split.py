"""Time-based split of the features table: a rolling training window, then a holdout of the most
recent days that were never trained on. Nothing is shuffled across time.

    |<------------- window_days ------------->|<-- holdout_days -->|
    | search-train ...       | validation_days |      holdout       |
                                                                    ^ end (newest day used)

The hyperparameter search fits trials on the search-train days and scores them on the validation
days (the last days of the window); the chosen configuration is refitted on the whole window and
scored, like the champion, on the holdout. Calendar days define the boundaries; days without a
partition (or whose quality gate failed) are simply absent.

A split the data cannot support is refused with the reason (``ValueError``), never adjusted
silently: too few training days, no holdout partition, ``validation_days`` not smaller than
``window_days`` (no search-train day would be left), or no partition on one side of the
validation boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Iterable


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]       # the whole window (refit of the chosen configuration)
    search_train: tuple[str, ...]
    validation: tuple[str, ...]
    holdout: tuple[str, ...]

    def boundaries(self) -> dict[str, str]:
        """First and last day of each part (what is logged as run params)."""
        out = {}
        for part in ("train", "search_train", "validation", "holdout"):
            days = getattr(self, part)
            out[f"{part}_start"], out[f"{part}_end"] = days[0], days[-1]
        return out

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in asdict(self).items()}


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def make_split(
    available: Iterable[str],
    *,
    end: str | None,
    window_days: int,
    holdout_days: int,
    validation_days: int,
    min_train_days: int = 2,
) -> Split:
    """The split ending at ``end`` (default: the newest available day) over the available days.

    Raises ValueError with the reason when the data cannot support it (too few days)."""
    have = sorted(set(available))
    if not have:
        raise ValueError("no feature partitions to train on")
    last = date.fromisoformat(end) if end else date.fromisoformat(have[-1])
    if holdout_days < 1 or window_days < 1 or validation_days < 1:
        raise ValueError(f"window_days ({window_days}), holdout_days ({holdout_days}) and validation_days "
                         f"({validation_days}) must each be >= 1")
    if validation_days >= window_days:
        raise ValueError(
            f"validation_days ({validation_days}) must be smaller than window_days ({window_days}): the "
            f"validation days are the last days of the training window and the search needs training "
            f"days before them"
        )
    holdout_first = last - timedelta(days=holdout_days - 1)
    window_first = holdout_first - timedelta(days=window_days)
    present = set(have)
    holdout = [d for d in _days(holdout_first, last) if d in present]
    train = [d for d in _days(window_first, holdout_first - timedelta(days=1)) if d in present]
    if not holdout:
        raise ValueError(f"no feature partitions in the holdout {holdout_first}..{last}")
    if len(train) < min_train_days:
        raise ValueError(
            f"only {len(train)} feature day(s) in the training window {window_first}.."
            f"{holdout_first - timedelta(days=1)}: need at least {min_train_days}"
        )
    # The validation days are the last calendar days of the window.
    first_valid = holdout_first - timedelta(days=validation_days)
    validation = [d for d in train if d >= first_valid.isoformat()]
    search_train = [d for d in train if d < first_valid.isoformat()]
    if not validation:
        raise ValueError(
            f"no feature partitions in the validation days {first_valid}..{holdout_first - timedelta(days=1)} "
            f"(the last {validation_days} day(s) of the training window): the search has nothing to score "
            f"its trials on; use more validation days or an end whose window has them"
        )
    if not search_train:
        raise ValueError(
            f"no feature partitions in the training window {window_first}..{first_valid - timedelta(days=1)} "
            f"before the {validation_days} validation day(s): the search has nothing to fit its trials on; "
            f"use fewer validation days or a longer window"
        )
    return Split(tuple(train), tuple(search_train), tuple(validation), tuple(holdout))
