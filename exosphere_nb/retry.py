"""Delay before a retry, per the graph's RetryPolicyModel."""

from __future__ import annotations

import math
import random

from exosphere_nb.models import RetryPolicyModel, RetryStrategyEnum

__all__ = ["MAX_DELAY_MS", "retry_delay_ms"]

# About 100 years: far beyond any useful retry, yet small enough that callers can add it to a
# datetime without OverflowError and jitter it as a float without losing precision.
MAX_DELAY_MS = 100 * 365 * 24 * 3600 * 1000
_LOG_MAX = math.log(MAX_DELAY_MS)

_S = RetryStrategyEnum
_EXPONENTIAL = frozenset({_S.EXPONENTIAL, _S.EXPONENTIAL_FULL_JITTER, _S.EXPONENTIAL_EQUAL_JITTER})
_LINEAR = frozenset({_S.LINEAR, _S.LINEAR_FULL_JITTER, _S.LINEAR_EQUAL_JITTER})
_FULL_JITTER = frozenset({_S.EXPONENTIAL_FULL_JITTER, _S.LINEAR_FULL_JITTER, _S.FIXED_FULL_JITTER})
_EQUAL_JITTER = frozenset({_S.EXPONENTIAL_EQUAL_JITTER, _S.LINEAR_EQUAL_JITTER, _S.FIXED_EQUAL_JITTER})


def retry_delay_ms(policy: RetryPolicyModel, attempt: int, rng: random.Random | None = None) -> int:
    if attempt < 1:
        raise ValueError(f"attempt is 1-based, got {attempt}")
    strategy = policy.strategy
    base = policy.backoff_factor
    if strategy in _EXPONENTIAL:
        delay = _exponential(base, policy.exponent, attempt - 1)
    elif strategy in _LINEAR:
        delay = min(base * attempt, MAX_DELAY_MS)
    else:
        delay = min(base, MAX_DELAY_MS)

    if strategy in _FULL_JITTER:
        uniform = rng.uniform if rng is not None else random.uniform
        delay = int(uniform(0, delay))
    elif strategy in _EQUAL_JITTER:
        uniform = rng.uniform if rng is not None else random.uniform
        delay = int(delay / 2 + uniform(0, delay / 2))

    if policy.max_delay is not None:
        delay = min(delay, policy.max_delay)
    return delay


def _exponential(base: int, exponent: int, power: int) -> int:
    # exponent ** power is exact but unbounded: attempt 10**6 with exponent 10 would build a
    # million-digit int. When the logs say the result clearly exceeds the ceiling (the +1 margin
    # absorbs float error), skip the power entirely.
    if power and exponent > 1 and power * math.log(exponent) + math.log(base) > _LOG_MAX + 1:
        return MAX_DELAY_MS
    return min(base * exponent**power, MAX_DELAY_MS)
