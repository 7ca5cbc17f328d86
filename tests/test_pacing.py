"""The pacer keeps every 1 s and 60 s window within Klaviyo's limits; tested on a simulated clock."""

from __future__ import annotations

from klaviyo_magic.pacing import LIMITS, Limit, Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


def starts_for(pacer: Pacer, clock: FakeClock, n: int) -> list[float]:
    times = []
    for _ in range(n):
        pacer.acquire()
        times.append(clock.now)
    return times


def max_in_any_window(times: list[float], length: float) -> int:
    return max(sum(1 for t in times if start <= t < start + length) for start in times)


def test_burst_limit_is_never_exceeded_in_any_one_second():
    clock = FakeClock()
    pacer = Pacer(Limit(10, 150), clock=clock, sleep=clock.sleep)
    times = starts_for(pacer, clock, 100)
    assert max_in_any_window(times, 1.0) == 10
    assert times[9] == 1000.0 and times[10] > 1001.0  # the first ten go at once, the eleventh waits
    assert times[-1] - times[0] < 10.6  # ...and no slower than the limit requires (5 % margin)


def test_steady_limit_is_never_exceeded_in_any_minute():
    clock = FakeClock()
    pacer = Pacer(Limit(10, 150), clock=clock, sleep=clock.sleep)
    times = starts_for(pacer, clock, 400)
    assert max_in_any_window(times, 60.0) == 150
    assert max_in_any_window(times, 1.0) <= 10


def test_pause_holds_every_caller_until_retry_after():
    clock = FakeClock()
    pacer = Pacer(Limit(75, 750), clock=clock, sleep=clock.sleep)
    pacer.acquire()
    pacer.pause(3.0)
    pacer.acquire()
    assert clock.now >= 1003.0


def test_limits_table_matches_klaviyo_docs():
    assert LIMITS["bulk-import:create"] == Limit(10, 150)
    assert LIMITS["accounts"] == Limit(1, 15)
    assert LIMITS["lists:read"] == Limit(75, 750)
