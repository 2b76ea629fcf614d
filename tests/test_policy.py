"""Property tests of the refresh and retry policy (iotinvoke's refresh_point, retry_delay,
retry_allowed, caller_wait): bounds, spread, Retry-After honoured, budget respected. In-process."""
from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import iotinvoke as ii

units = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
times = st.floats(min_value=0.0, max_value=4e9)
lifetimes = st.floats(min_value=0.0, max_value=43200.0)


@given(issued=times, lifetime=lifetimes, u=units)
def test_refresh_point_bounds(issued: float, lifetime: float, u: float) -> None:
    expiration = issued + lifetime
    point = ii.refresh_point(issued, expiration, lambda: u)
    earliest, latest = ii.refresh_window(issued, expiration)
    assert earliest <= point <= latest
    slack = 1e-6 * max(1.0, abs(expiration))
    assert point >= issued + lifetime / 2 - slack, "never beyond half the lifetime"
    assert point <= expiration - min(300.0, lifetime / 2) + slack, "at least the 5-minute margin (or half-life)"
    assert point >= expiration - 900.0 - slack, "never more than 5 + 10 minutes early"


@given(issued=times, lifetime=lifetimes)
def test_refresh_point_without_jitter_is_the_old_fixed_margin(issued: float, lifetime: float) -> None:
    expiration = issued + lifetime
    lifetime = expiration - issued  # as rounded
    assert ii.refresh_point(issued, expiration, lambda: 0.0) == expiration - min(300.0, lifetime * 0.5)


def test_refresh_points_cover_the_window() -> None:
    """10,000 draws for one-hour credentials: every 60-second slice of the 10-minute window gets
    about a tenth of them, so a fleet that fetched together refreshes spread over 10 minutes."""
    rand = random.Random(1).random
    points = [ii.refresh_point(0.0, 3600.0, rand) for _ in range(10_000)]
    assert min(points) >= 2700.0 and max(points) <= 3300.0
    assert min(points) < 2701.0 and max(points) > 3299.0
    slices = [0] * 10
    for p in points:
        slices[min(int((p - 2700.0) // 60), 9)] += 1
    assert all(850 <= n <= 1150 for n in slices), slices
    short = [ii.refresh_point(0.0, 900.0, rand) for _ in range(2_000)]  # the shortest role alias
    assert min(short) >= 450.0 and max(short) <= 600.0 and max(short) - min(short) > 140.0


@given(attempt=st.integers(min_value=1, max_value=100), u=units)
def test_backoff_within_zero_and_cap(attempt: int, u: float) -> None:
    delay = ii.retry_delay(attempt, lambda: u)
    assert 0.0 <= delay <= min(ii.BACKOFF_CAP_S, ii.BACKOFF_BASE_S * 2**attempt)


@given(attempt=st.integers(min_value=1, max_value=100), u=units,
       retry_after=st.floats(min_value=0.0, max_value=3600.0))
def test_retry_after_is_honoured(attempt: int, u: float, retry_after: float) -> None:
    delay = ii.retry_delay(attempt, lambda: u, retry_after)
    assert retry_after <= delay <= retry_after + ii.BACKOFF_CAP_S


def test_backoff_is_spread_not_in_step() -> None:
    rand = random.Random(2).random
    delays = [ii.retry_delay(2, rand, 1.0) for _ in range(1_000)]
    assert min(delays) < 1.05 and max(delays) > 1.75, "full jitter over [1, 1.8] after Retry-After: 1"


@given(attempt=st.integers(min_value=1, max_value=12), max_attempts=st.integers(min_value=1, max_value=10),
       elapsed=st.floats(min_value=0.0, max_value=100.0), delay=st.floats(min_value=0.0, max_value=100.0))
def test_budget_respected(attempt: int, max_attempts: int, elapsed: float, delay: float) -> None:
    allowed = ii.retry_allowed(attempt, max_attempts, elapsed, delay)
    assert allowed == (attempt < max_attempts and elapsed + delay <= ii.RETRY_BUDGET_S)


@given(seed=st.integers(min_value=0, max_value=2**32))
def test_whole_retry_sequence_stays_in_budget(seed: int) -> None:
    """Sleeping every delay the policy allows never exceeds the budget nor max_attempts tries,
    even when every answer says Retry-After: 20."""
    rand = random.Random(seed).random
    for retry_after in (None, 0.0, 1.0, 20.0):
        elapsed, attempt = 0.0, 1
        while True:
            delay = ii.retry_delay(attempt, rand, retry_after)
            if not ii.retry_allowed(attempt, ii.MAX_ATTEMPTS, elapsed, delay):
                break
            elapsed += delay
            attempt += 1
        assert attempt <= ii.MAX_ATTEMPTS and elapsed <= ii.RETRY_BUDGET_S


@given(u=units, retry_after=st.one_of(st.none(), st.floats(min_value=0.0, max_value=600.0)))
def test_caller_wait_bounds(u: float, retry_after: float | None) -> None:
    wait = ii.caller_wait(lambda: u, retry_after)
    assert isinstance(wait, int)
    floor = -(-retry_after // 1) if retry_after else 0
    assert floor + ii.CALLER_WAIT_MIN_S <= wait <= floor + ii.CALLER_WAIT_MAX_S


def test_caller_waits_cover_the_window() -> None:
    rand = random.Random(3).random
    waits = [ii.caller_wait(rand) for _ in range(10_000)]
    assert set(waits) == set(range(ii.CALLER_WAIT_MIN_S, ii.CALLER_WAIT_MAX_S + 1)), "every second of the window"
    assert ii.caller_wait(lambda: 0.0) == 1 and ii.caller_wait(lambda: 0.9999999) == 120


def test_client_retries_use_the_policy_and_tell_the_caller(tmp_path: Path) -> None:
    """Client's decision loop: max_attempts tries, sleeps within the policy's bounds (Retry-After
    honoured), and on giving up at hop 1 or 2 sets retry_after to caller_wait()'s whole seconds;
    hop 3 keeps the server's own Retry-After."""
    import pytest

    from fakes import STS_OK, Answer, FakeTransport, iot_ok, make_client, make_config

    throttled = Answer(429, b'{"message":"Rate exceeded"}', Retry_After="2", x_amzn_ErrorType="TooManyRequestsException")
    ok = {"iot": iot_ok(), "sts": Answer(200, STS_OK)}
    for hop in ("iot", "sts", "lambda"):
        script = {h: [ok[h]] for h in ("iot", "sts") if ("iot", "sts", "lambda").index(h) < ("iot", "sts", "lambda").index(hop)}
        script[hop] = [throttled] * ii.MAX_ATTEMPTS
        slept: list[float] = []
        (tmp_path / hop).mkdir()
        client = make_client(make_config(tmp_path / hop), FakeTransport(**script), slept, random=0.7)
        with pytest.raises(ii.IotInvokeError) as caught:
            client.invoke("dev", b"{}")
        assert len(slept) == ii.MAX_ATTEMPTS - 1
        assert all(2.0 <= s <= 2.0 + ii.BACKOFF_CAP_S for s in slept)
        assert "(after 3 attempts)" in caught.value.message
        if hop == "lambda":
            assert caught.value.retry_after == 2.0
        else:
            wait = caught.value.retry_after
            assert isinstance(wait, int) and 2 + ii.CALLER_WAIT_MIN_S <= wait <= 2 + ii.CALLER_WAIT_MAX_S
