"""Property: whatever arrives, every message becomes exactly one bar or one dead letter,
every bar that gets through obeys the rules, and the producer's Python reader
(finstream.ingest.messages) gives each message the stream job's reasons."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finstream.core import schema as S
from finstream.ingest import messages as M
from finstream.ingest import validation as B
from tests.catalogue import GOOD, NOW_MS
from tests.unit.test_bars import check

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=6), st.integers(-10**13, 10**13),
    st.floats(allow_nan=True, allow_infinity=True), st.just([]), st.just({}),
)


@st.composite
def messages(draw) -> bytes:
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "bytes", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "json":
        def containers(c):
            return st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3)
        return json.dumps(draw(st.recursive(st.none() | st.integers() | st.text(max_size=5), containers,
                                            max_leaves=6))).encode()
    body = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(S.BAR_FIELD_NAMES), max_size=3, unique=True)):
        action = draw(st.sampled_from(["drop", "odd", "scale"]))
        if action == "drop":
            body.pop(name)
        elif action == "odd":
            body[name] = draw(ODD_VALUES)
        elif isinstance(body[name], (int, float)):
            body[name] = body[name] * draw(st.sampled_from([-1, 0, 0.5, 2, 1000, 1e12]))
    return json.dumps(body, allow_nan=True).encode()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(values=st.lists(messages(), min_size=1, max_size=30))
def test_every_message_is_a_bar_or_a_dead_letter(spark, values):
    checked = check(spark, values).persist()
    reasons = {row.offset: list(row.reasons) for row in checked.select("offset", "reasons").collect()}
    assert {i: M.check(value, now_ms=NOW_MS)[1] for i, value in enumerate(values)} == reasons
    bars = B.valid_bars(checked).collect()
    dead = B.dead_letters(checked).collect()
    checked.unpersist()
    assert len(bars) + len(dead) == len(values)
    assert {b.kafka_offset for b in bars} | {d.offset for d in dead} == set(range(len(values)))
    assert all(d.reason for d in dead)
    for bar in bars:
        assert S.MIN_PRICE <= bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high <= S.MAX_PRICE
        assert (bar.volume is None or 0 <= bar.volume <= S.MAX_VOLUME) and bar.timestamp >= S.MIN_TIMESTAMP_MS
        assert bar.timespan in S.TIMESPANS and bar.multiplier >= 1 and bar.ticker
