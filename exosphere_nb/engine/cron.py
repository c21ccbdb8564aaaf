"""Pure cron arithmetic for scheduled triggers; every datetime is timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from croniter import CroniterBadDateError, croniter

from exosphere_nb.errors import BadRequestError

__all__ = ["due_occurrence", "next_occurrence", "validate_expression"]

_MINUTE = timedelta(minutes=1)


def validate_expression(expr: str) -> str:
    if not isinstance(expr, str):
        raise BadRequestError(f"cron expression must be a string, got {type(expr).__name__}")
    return _validated(expr)


@lru_cache(maxsize=256)
def _validated(expr: str) -> str:
    normalised = " ".join(expr.split())
    if len(normalised.split(" ")) != 5 or not croniter.is_valid(normalised):
        raise BadRequestError(
            f"invalid cron expression {expr!r}: expected 5 fields (minute hour day-of-month month day-of-week)"
        )
    try:
        # `0 0 30 2 *` is well-formed yet never fires; croniter would only say so on first use.
        croniter(normalised, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise BadRequestError(f"cron expression {expr!r} never fires") from None
    return normalised


def next_occurrence(expr: str, after: datetime) -> datetime:
    # Occurrences sit on whole minutes, so "strictly after `after`" is "strictly after its minute".
    start = _minute_floor(_utc(after, "after"))
    return _as_utc(croniter(validate_expression(expr), start).get_next(datetime))


def due_occurrence(expr: str, last_fired: datetime | None, now: datetime) -> datetime | None:
    now = _utc(now, "now")
    if last_fired is None:
        return None
    last_fired = _utc(last_fired, "last_fired")
    # Stepping back from now is O(1) however long the scheduler was down, and yields only the
    # latest missed occurrence: a week offline must not replay a week of runs at once.
    # get_prev is strictly before its start, so start one minute past now's minute to include now.
    latest = _as_utc(croniter(validate_expression(expr), _minute_floor(now) + _MINUTE).get_prev(datetime))
    return latest if latest > last_fired else None


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _minute_floor(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)
