from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from exosphere_nb.engine.cron import due_occurrence, next_occurrence, validate_expression
from exosphere_nb.errors import BadRequestError


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --- validate_expression -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "normalised"),
    [
        ("*/5 * * * *", "*/5 * * * *"),
        ("  0   9 * *   1-5 ", "0 9 * * 1-5"),
        ("0\t0\n1 1 *", "0 0 1 1 *"),
        ("0 0 29 2 *", "0 0 29 2 *"),
    ],
)
def test_valid_expressions_are_normalised(expr: str, normalised: str) -> None:
    assert validate_expression(expr) == normalised


@pytest.mark.parametrize(
    "expr",
    ["", "   ", "* * * *", "* * * * * *", "@hourly", "61 * * * *", "* 25 * * *", "*/0 * * * *", "a b c d e"],
)
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(BadRequestError, match="invalid cron expression") as exc:
        validate_expression(expr)
    assert repr(expr) in str(exc.value)
    assert "5 fields" in str(exc.value)


def test_expression_that_never_fires() -> None:
    with pytest.raises(BadRequestError, match="never fires"):
        validate_expression("0 0 30 2 *")


def test_non_string_expression() -> None:
    with pytest.raises(BadRequestError, match="must be a string"):
        validate_expression(5)  # type: ignore[arg-type]


# --- next_occurrence ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (at(2024, 1, 1, 0, 0), at(2024, 1, 1, 0, 5)),
        (at(2024, 1, 1, 0, 4, 59, 999999), at(2024, 1, 1, 0, 5)),
        (at(2024, 1, 1, 0, 5), at(2024, 1, 1, 0, 10)),  # strictly after, even exactly on an occurrence
        (at(2024, 1, 1, 0, 5, 0, 1), at(2024, 1, 1, 0, 10)),
        (at(2024, 12, 31, 23, 58), at(2025, 1, 1, 0, 0)),
    ],
)
def test_next_occurrence(after: datetime, expected: datetime) -> None:
    got = next_occurrence("*/5 * * * *", after)
    assert got == expected
    assert got.tzinfo == UTC


def test_next_occurrence_is_evaluated_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    # 08:30 at +02:00 is 06:30 UTC: the next 09:00 UTC is the same day, returned in UTC
    got = next_occurrence("0 9 * * *", datetime(2024, 3, 5, 8, 30, tzinfo=plus2))
    assert got == at(2024, 3, 5, 9, 0)
    assert got.utcoffset() == timedelta(0)


def test_next_occurrence_rare_schedule() -> None:
    assert next_occurrence("0 0 29 2 *", at(2097, 3, 1)) == at(2104, 2, 29)


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_occurrence("* * * * *", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        due_occurrence("* * * * *", None, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        due_occurrence("* * * * *", datetime(2024, 1, 1), at(2024, 1, 1))


def test_invalid_expression_is_rejected_by_helpers() -> None:
    with pytest.raises(BadRequestError):
        next_occurrence("* * * *", at(2024, 1, 1))
    with pytest.raises(BadRequestError):
        due_occurrence("* * * * * *", at(2024, 1, 1), at(2024, 1, 2))


# --- due_occurrence ----------------------------------------------------------------------------


def test_missed_window_fires_once_for_the_latest_occurrence() -> None:
    # 12 hours down with a 5-minute schedule: 144 missed occurrences, one run
    assert due_occurrence("*/5 * * * *", at(2024, 1, 1, 0, 0), at(2024, 1, 1, 12, 3, 17)) == at(2024, 1, 1, 12, 0)


def test_due_then_not_due_again_until_next_occurrence() -> None:
    expr = "*/5 * * * *"
    fired = due_occurrence(expr, at(2024, 1, 1, 0, 0), at(2024, 1, 1, 0, 7))
    assert fired == at(2024, 1, 1, 0, 5)
    assert due_occurrence(expr, fired, at(2024, 1, 1, 0, 9, 59)) is None
    assert due_occurrence(expr, fired, at(2024, 1, 1, 0, 10)) == at(2024, 1, 1, 0, 10)  # window end is inclusive


def test_window_start_is_exclusive() -> None:
    assert due_occurrence("*/5 * * * *", at(2024, 1, 1, 0, 5), at(2024, 1, 1, 0, 5, 30)) is None


def test_nothing_due_before_first_occurrence() -> None:
    assert due_occurrence("0 9 * * *", None, at(2024, 1, 1, 8, 0)) is None
    assert due_occurrence("0 9 * * *", None, at(2024, 1, 1, 9, 0)) is None  # a new schedule starts now
    start = at(2024, 1, 1, 8, 0)
    assert due_occurrence("0 9 * * *", start, at(2024, 1, 1, 8, 59, 59)) is None
    assert due_occurrence("0 9 * * *", start, at(2024, 1, 1, 9, 0, 1)) == at(2024, 1, 1, 9, 0)


def test_last_fired_in_the_future_is_never_due() -> None:
    assert due_occurrence("* * * * *", at(2024, 1, 2), at(2024, 1, 1)) is None


def test_years_of_downtime_is_fast() -> None:
    started = time.perf_counter()
    got = due_occurrence("* * * * *", at(2000, 1, 1), at(2024, 6, 1, 12, 30, 45))
    assert got == at(2024, 6, 1, 12, 30)
    assert time.perf_counter() - started < 0.5


def test_due_occurrence_handles_other_offsets() -> None:
    plus5 = timezone(timedelta(hours=5, minutes=30))
    # 15:00 at +05:30 is 09:30 UTC: the 09:00 UTC occurrence is due, returned in UTC
    got = due_occurrence("0 9 * * *", at(2024, 1, 1, 0, 0), datetime(2024, 1, 1, 15, 0, tzinfo=plus5))
    assert got == at(2024, 1, 1, 9, 0)
    assert got is not None
    assert got.utcoffset() == timedelta(0)
