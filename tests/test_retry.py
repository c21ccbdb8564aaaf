from __future__ import annotations

import random
import time

import pytest

from exosphere_nb.models import RetryPolicyModel, RetryStrategyEnum
from exosphere_nb.retry import MAX_DELAY_MS, retry_delay_ms

S = RetryStrategyEnum


def policy(strategy: RetryStrategyEnum, **kw: int) -> RetryPolicyModel:
    return RetryPolicyModel(strategy=strategy, backoff_factor=kw.pop("b", 1000), exponent=kw.pop("e", 2), **kw)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (S.EXPONENTIAL, [1000, 2000, 4000, 8000]),
        (S.LINEAR, [1000, 2000, 3000, 4000]),
        (S.FIXED, [1000, 1000, 1000, 1000]),
    ],
)
def test_deterministic_strategies(strategy: RetryStrategyEnum, expected: list[int]) -> None:
    assert [retry_delay_ms(policy(strategy), n) for n in (1, 2, 3, 4)] == expected


def test_exponential_uses_the_exponent() -> None:
    assert [retry_delay_ms(policy(S.EXPONENTIAL, b=500, e=3), n) for n in (1, 2, 3)] == [500, 1500, 4500]


def test_defaults_match_the_sdk() -> None:
    # backoff 2000, exponent 2
    assert [retry_delay_ms(RetryPolicyModel(), n) for n in (1, 2, 3)] == [2000, 4000, 8000]


# Uncapped base delay at attempt 3 with b=1000, e=2.
BASES = {"EXPONENTIAL": 4000, "LINEAR": 3000, "FIXED": 1000}


@pytest.mark.parametrize("strategy", [S.EXPONENTIAL_FULL_JITTER, S.LINEAR_FULL_JITTER, S.FIXED_FULL_JITTER])
def test_full_jitter(strategy: RetryStrategyEnum) -> None:
    base = BASES[strategy.value.split("_")[0]]
    got = retry_delay_ms(policy(strategy), 3, random.Random(42))
    assert got == int(random.Random(42).uniform(0, base))
    samples = [retry_delay_ms(policy(strategy), 3, random.Random(seed)) for seed in range(300)]
    assert all(0 <= s <= base for s in samples)
    assert min(samples) < base * 0.1  # spans the whole range
    assert max(samples) > base * 0.9


@pytest.mark.parametrize("strategy", [S.EXPONENTIAL_EQUAL_JITTER, S.LINEAR_EQUAL_JITTER, S.FIXED_EQUAL_JITTER])
def test_equal_jitter(strategy: RetryStrategyEnum) -> None:
    base = BASES[strategy.value.split("_")[0]]
    got = retry_delay_ms(policy(strategy), 3, random.Random(7))
    assert got == int(base / 2 + random.Random(7).uniform(0, base / 2))
    samples = [retry_delay_ms(policy(strategy), 3, random.Random(seed)) for seed in range(300)]
    assert all(base // 2 <= s <= base for s in samples)
    assert min(samples) < base * 0.55
    assert max(samples) > base * 0.95


def test_jitter_without_rng_uses_module_random() -> None:
    assert 0 <= retry_delay_ms(policy(S.FIXED_FULL_JITTER), 1) <= 1000


@pytest.mark.parametrize(
    ("strategy", "attempt", "expected"),
    [(S.EXPONENTIAL, 1, 1000), (S.EXPONENTIAL, 3, 2500), (S.EXPONENTIAL, 10, 2500), (S.LINEAR, 5, 2500)],
)
def test_max_delay_caps(strategy: RetryStrategyEnum, attempt: int, expected: int) -> None:
    assert retry_delay_ms(policy(strategy, max_delay=2500), attempt) == expected


def test_max_delay_caps_after_jitter() -> None:
    p = policy(S.EXPONENTIAL_EQUAL_JITTER, max_delay=2500)
    # base 8000 at attempt 4: equal jitter is at least 4000, so always capped
    assert {retry_delay_ms(p, 4, random.Random(seed)) for seed in range(50)} == {2500}
    # full jitter below the cap passes through
    p = policy(S.EXPONENTIAL_FULL_JITTER, max_delay=2500)
    assert retry_delay_ms(p, 4, random.Random(3)) == min(2500, int(random.Random(3).uniform(0, 8000)))


def test_huge_exponent_is_fast_and_finite() -> None:
    started = time.perf_counter()
    for strategy in (S.EXPONENTIAL, S.EXPONENTIAL_FULL_JITTER, S.EXPONENTIAL_EQUAL_JITTER):
        for attempt in (50, 10_000, 10**9):
            got = retry_delay_ms(policy(strategy, e=10), attempt, random.Random(1))
            assert isinstance(got, int)
            assert 0 <= got <= MAX_DELAY_MS
    assert retry_delay_ms(policy(S.EXPONENTIAL, e=10), 50) == MAX_DELAY_MS
    assert retry_delay_ms(policy(S.EXPONENTIAL, e=10, max_delay=60_000), 50) == 60_000
    assert time.perf_counter() - started < 0.5


def test_large_but_representable_exponential_is_exact() -> None:
    # 1000 * 2**31 ms is about 68 years: under the ceiling, so computed exactly
    assert retry_delay_ms(policy(S.EXPONENTIAL), 32) == 1000 * 2**31


def test_huge_linear_and_fixed_are_clamped() -> None:
    assert retry_delay_ms(policy(S.LINEAR, b=10**15), 10**9) == MAX_DELAY_MS
    assert retry_delay_ms(policy(S.FIXED, b=10**15), 1) == MAX_DELAY_MS


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_is_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        retry_delay_ms(policy(S.FIXED), attempt)
