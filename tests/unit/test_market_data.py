"""The real HTTP client against a local server that behaves like the Massive API."""

from __future__ import annotations

import logging
import re
from datetime import date

import pytest
import requests

from finstream.core.config import Secret
from producer.market_data import (
    MarketDataError,
    MassiveClient,
    RateLimiter,
    bar_from_aggregate,
    closed_bars,
    date_chunks,
    retry_after_seconds,
)
from tests.fakes.answers import NDX, NDX_CLOSES, TJX_2017, TJX_2020
from tests.fakes.massive import FakeMassive, Fault

KEY = "sk-very-secret-key-123"
DAY = 86_400_000
START_MS = 1_704_067_200_000  # 2024-01-01T00:00Z


@pytest.fixture
def fake():
    with FakeMassive(api_key=KEY, page_size=5) as server:
        server.add_bars("AAPL", START_MS, 12)
        yield server


def make_client(fake: FakeMassive, key: str = KEY, **kw) -> tuple[MassiveClient, list[float]]:
    sleeps: list[float] = []
    kw.setdefault("max_retries", 3)
    kw.setdefault("timeout", 2)
    return MassiveClient(fake.url, Secret(key), sleep=sleeps.append, **kw), sleeps


def fetch(client: MassiveClient, ticker: str = "AAPL", timespan: str = "day", start=date(2024, 1, 1),
          end=date(2024, 3, 1)):
    return list(client.aggregates(ticker, 1, timespan, start, end))


def test_follows_next_url_until_the_last_page(fake):
    client, _ = make_client(fake)
    results = fetch(client)
    assert [r["t"] for r in results] == [START_MS + i * DAY for i in range(12)]
    assert len(fake.requests) == 3  # pages of 5, 5, 2
    first, *rest = fake.requests
    assert first.query == {"adjusted": ["true"], "sort": ["asc"], "limit": ["50000"]}
    assert all("cursor" in seen.query for seen in rest)


def test_key_travels_in_the_header_never_in_a_url(fake):
    client, _ = make_client(fake)
    fetch(client)
    for seen in fake.requests:
        assert seen.headers["Authorization"] == f"Bearer {KEY}"
        assert KEY not in seen.path and KEY not in str(seen.query)
        assert "apiKey" not in seen.query


def test_429_waits_for_retry_after_then_succeeds(fake):
    fake.faults = [Fault(429, b'{"status":"ERROR"}', {"Retry-After": "7"})]
    client, sleeps = make_client(fake)
    assert len(fetch(client)) == 12
    assert sleeps == [7.0]


def test_429_without_retry_after_backs_off_exponentially(fake):
    fake.faults = [Fault(429), Fault(429), Fault(429)]
    client, sleeps = make_client(fake, backoff_base=1.0)
    assert len(fetch(client)) == 12
    assert sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(fake, status):
    fake.faults = [Fault(status, b"oops")]
    client, sleeps = make_client(fake)
    assert len(fetch(client)) == 12
    assert len(sleeps) == 1


def test_bad_json_is_retried_then_succeeds(fake):
    fake.faults = [Fault(200, b'{"results": [{"o": 1'), Fault(200, b"<html>gateway</html>")]
    client, sleeps = make_client(fake)
    assert len(fetch(client)) == 12
    assert len(sleeps) == 2


def test_persistent_failure_stops_after_bounded_retries(fake):
    fake.faults = [Fault(503)] * 10
    client, sleeps = make_client(fake, max_retries=3)
    with pytest.raises(MarketDataError, match="after 3 retries"):
        fetch(client)
    assert len(fake.requests) == 4 and len(sleeps) == 3


def test_401_says_to_check_the_key_and_never_shows_it(fake, caplog):
    caplog.set_level(logging.DEBUG)
    client, sleeps = make_client(fake, key="wrong-key-456")
    with pytest.raises(MarketDataError) as err:
        fetch(client)
    assert "401" in str(err.value) and "POLYGON_API_KEY" in str(err.value)
    assert "wrong-key-456" not in str(err.value) and "wrong-key-456" not in caplog.text
    assert sleeps == []  # not retried


@pytest.mark.parametrize("fault", [Fault(503), Fault(404, b'{"status":"NOT_FOUND"}')])
def test_a_base_url_with_credentials_never_shows_them(fake, caplog, fault):
    """POLYGON_BASE_URL may carry a proxy's user and password (https://user:pw@host)."""
    caplog.set_level(logging.DEBUG)
    fake.faults = [fault] * 4
    client, _ = make_client(fake)
    client.base_url = fake.url.replace("://", "://proxy-user:pw-7781@")
    with pytest.raises(MarketDataError) as err:
        fetch(client)
    assert "://***@127.0.0.1" in str(err.value)
    assert "pw-7781" not in str(err.value) + caplog.text and "proxy-user" not in str(err.value)


@pytest.mark.parametrize("status, advice", [(400, "POLYGON_API_KEY"), (403, "plan"), (404, "ticker")])
def test_client_errors_explain_what_to_do(fake, status, advice):
    fake.faults = [Fault(status, b'{"status":"NOT_AUTHORIZED","message":"You are not entitled"}')]
    client, sleeps = make_client(fake)
    with pytest.raises(MarketDataError, match=advice):
        fetch(client)
    assert sleeps == []


def test_status_error_body_is_reported(fake):
    fake.faults = [Fault(200, b'{"status":"ERROR","error":"Something broke"}')]
    client, _ = make_client(fake)
    with pytest.raises(MarketDataError, match="Something broke"):
        fetch(client)


def test_missing_results_is_an_empty_answer(fake):
    client, _ = make_client(fake)
    assert fetch(client, ticker="NOPE") == []


def test_repeating_next_url_stops_instead_of_looping(fake):
    fake.repeat_next_url = True
    client, _ = make_client(fake)
    with pytest.raises(MarketDataError, match="same next_url"):
        fetch(client)


def test_timeout_is_retried(fake):
    fake.faults = [Fault(200, b"{}", delay=1.5)]
    client, sleeps = make_client(fake, timeout=0.5)
    assert len(fetch(client)) == 12
    assert len(sleeps) == 1


def test_connection_refused_ends_in_a_clear_error():
    client = MassiveClient("http://127.0.0.1:9", Secret(KEY), max_retries=2, sleep=lambda s: None, timeout=1)
    with pytest.raises(MarketDataError, match="connection failed"):
        list(client.aggregates("AAPL", 1, "day", date(2024, 1, 1), date(2024, 1, 2)))


def test_no_key_is_refused_before_any_request(fake):
    client, _ = make_client(fake, key="")
    with pytest.raises(MarketDataError, match="POLYGON_API_KEY"):
        fetch(client)
    assert fake.requests == []


def test_minute_ranges_are_split_into_contiguous_chunks(fake):
    fake.add_bars("X:BTCUSD", START_MS, 70 * 24, step_ms=3_600_000)  # hourly points over 70 days
    client, _ = make_client(fake)
    got = fetch(client, ticker="X:BTCUSD", timespan="minute", start=date(2024, 1, 1), end=date(2024, 3, 10))
    assert len(got) == 70 * 24 and len({r["t"] for r in got}) == len(got)
    chunks = list(date_chunks("minute", date(2024, 1, 1), date(2024, 3, 10)))
    assert len(chunks) == 3
    for (_, hi), (lo, _) in zip(chunks, chunks[1:], strict=False):
        assert int(lo) == int(hi) + 1


def test_daily_ranges_are_one_request_with_dates():
    assert list(date_chunks("day", date(2020, 1, 1), date(2024, 12, 31))) == [("2020-01-01", "2024-12-31")]


def test_rate_limiter_caps_requests_per_minute():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(5, clock=lambda: now[0], sleep=sleep)
    for _ in range(11):
        limiter.wait()
    assert slept == [60.0, 60.0]


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds(None) is None


# -- the answers' real shapes, over HTTP ---------------------------------------------------------


def test_an_index_answer_has_values_only(fake):
    fake.add_results("I:NDX", NDX)
    client, _ = make_client(fake)
    results = fetch(client, "I:NDX", start=date(2023, 3, 9), end=date(2023, 3, 15))
    assert fake.requests[0].path == "/v2/aggs/ticker/I:NDX/range/1/day/2023-03-09/2023-03-15"
    bars = [bar_from_aggregate("I:NDX", "day", 1, r) for r in results]
    assert [b.close for b in bars] == NDX_CLOSES
    assert {(b.volume, b.vwap, b.transactions) for b in bars} == {(None, None, None)}


def test_numbers_as_the_api_spells_them(fake):
    fake.number_format = "g"
    fake.add_results("SPY", [{"v": 7.4e7, "vw": 394.7, "o": 394.1, "c": 394.74, "h": 396.0, "l": 393.0,
                              "t": 1704171600000, "n": 1412331.0},
                             {"v": 6.1e7, "vw": 395.7, "o": 395.1, "c": 395.5, "h": 396.5, "l": 394.0,
                              "t": 1.7042580e12, "n": 999999.0}])
    raw = requests.get(f"{fake.url}/v2/aggs/ticker/SPY/range/1/day/2024-01-01/2024-01-05",
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=5).text
    assert '"n":1.412331e+06' in raw and '"t":1.704258e+12' in raw and '"n":999999}' in raw
    client, _ = make_client(fake)
    bars = [bar_from_aggregate("SPY", "day", 1, r) for r in fetch(client, "SPY", start=date(2024, 1, 2),
                                                                  end=date(2024, 1, 5))]
    assert [(b.timestamp, b.transactions) for b in bars] == [(1704171600000, 1412331), (1704258000000, 999999)]
    assert all(type(b.timestamp) is int and type(b.transactions) is int for b in bars)


@pytest.mark.parametrize("body", [b'{"ticker":"AAPL","queryCount":0,"resultsCount":0,"adjusted":true,'
                                  b'"status":"OK","request_id":"r"}',
                                  b'{"ticker":"AAPL","resultsCount":0,"results":null,"status":"OK"}',
                                  b'{"ticker":"AAPL","resultsCount":0,"results":[],"status":"DELAYED"}'])
def test_no_results_is_an_empty_answer_whatever_its_spelling(fake, body):
    fake.faults = [Fault(200, body)]
    client, sleeps = make_client(fake)
    assert fetch(client, end=date(2024, 1, 1)) == [] and sleeps == []


def test_a_delayed_answer_is_an_answer(fake):
    fake.status = "DELAYED"  # plans with delayed data
    client, _ = make_client(fake)
    assert len(fetch(client)) == 12


def test_results_that_are_not_a_list_are_a_broken_answer(fake):
    fake.faults = [Fault(200, b'{"status":"OK","results":{"o":1}}')]
    client, sleeps = make_client(fake)
    assert len(fetch(client)) == 12 and len(sleeps) == 1  # retried as a broken body


def test_a_result_that_is_not_an_aggregate_is_skipped(fake, caplog):
    fake.faults = [Fault(200, b'{"status":"OK","results":[7,{"o":1,"h":1,"l":1,"c":1,"v":1,"t":1704067200000}]}')]
    client, _ = make_client(fake)
    assert fetch(client, end=date(2024, 1, 1)) == [{"o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": 1704067200000}]
    assert "a result that is not an aggregate, skipped: 7" in caplog.text




def test_results_outside_the_window_asked_for_are_dropped_and_named(fake, caplog):
    """The API once answered a one-day TJX minute request with 12 results, 4 of them from 2017."""
    fake.add_results("TJX", [{"v": 100, "vw": 53.7, "o": 53.7, "c": 53.7, "h": 53.7, "l": 53.7, "t": t, "n": 1}
                             for t in TJX_2020], step_ms=60_000)
    fake.strays["TJX"] = [{"v": 206, "vw": 14.49, "o": 14.49, "c": 14.49, "h": 14.49, "l": 14.49, "t": t, "n": 1}
                          for t in TJX_2017]
    raw = requests.get(f"{fake.url}/v2/aggs/ticker/TJX/range/1/minute/2020-08-27/2020-08-27?limit=50",
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()
    assert raw["resultsCount"] == 5 and len(fake.bars["TJX"]) + len(fake.strays["TJX"]) == 12  # pages of 5
    client, _ = make_client(fake)
    got = fetch(client, "TJX", timespan="minute", start=date(2020, 8, 27), end=date(2020, 8, 27))
    assert [r["t"] for r in got] == TJX_2020 and client.outside_window == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["TJX: 4 result(s) outside the window asked for (2020-08-27T00:00:00Z .. 2020-08-27T23:59:59Z) "
                        "dropped, not published: 2017-02-03T14:30:00Z, 2017-02-03T14:32:00Z, 2017-02-03T14:46:00Z, "
                        "2017-02-03T15:12:00Z"]


def test_live_polls_drop_them_too(fake):
    fake.add_results("TJX", [{"o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "t": t} for t in TJX_2020], step_ms=60_000)
    fake.strays["TJX"] = [{"o": 2, "h": 2, "l": 2, "c": 2, "v": 2, "t": t} for t in TJX_2017]
    client, _ = make_client(fake)
    bars = list(closed_bars(client, "TJX", "minute", 1, TJX_2020[0], TJX_2020[-1] + 60_000))
    assert [b.timestamp for b in bars] == TJX_2020 and client.outside_window == 4


@pytest.mark.parametrize("elsewhere", ["http://127.0.0.1:9/v2/aggs/ticker/AAPL/range/1/day/2024-01-01/2024-03-01",
                                       "{url}/v2/aggs/ticker/MSFT/range/1/day/2024-01-01/2024-03-01?cursor=5"],
                         ids=["another host", "another series"])
def test_a_next_url_elsewhere_is_never_followed(fake, elsewhere):
    """The key goes with every request: a next page on another host (or for another ticker,
    whose prices would be published as this one's) stops the fetch with one line."""
    fake.next_url_override = elsewhere.format(url=fake.url)
    client, _ = make_client(fake)
    with pytest.raises(MarketDataError, match="not on .* or not this series"):
        fetch(client)
    assert len(fake.requests) == 1


class Answers:
    """A client stand-in that answers with the given results, in the given order."""

    def __init__(self, results: list[dict]) -> None:
        self.results = results

    def aggregates_between(self, *_args) -> list[dict]:
        return self.results


def test_closed_bars_are_in_time_order_and_a_correction_wins():
    minute = 60_000
    t0 = START_MS
    rows = [{"t": t0 + 2 * minute, "o": 1, "h": 1, "l": 1, "c": 1, "v": 1},
            {"t": t0, "o": 2, "h": 2, "l": 2, "c": 2, "v": 1},
            {"t": t0 + minute, "o": 3, "h": 3, "l": 3, "c": 3, "v": 1},
            {"t": t0, "o": 4, "h": 4, "l": 4, "c": 4, "v": 1},  # the same minute again: a correction
            {"t": "1704067260000", "o": 5, "h": 5, "l": 5, "c": 5, "v": 1}]  # no integral time: skipped, logged
    bars = list(closed_bars(Answers(rows), "X:BTCUSD", "minute", 1, t0, t0 + 10 * minute))
    assert [(b.timestamp, b.close) for b in bars] == [(t0, 4), (t0 + minute, 3), (t0 + 2 * minute, 1)]


def test_a_backfill_range_defaults_from_its_end_and_refuses_a_start_after_it():
    from finstream.core.errors import UserError
    from producer.cli import backfill_range

    today = date(2026, 12, 4)
    assert backfill_range(None, None, today) == (date(2021, 12, 3), date(2026, 12, 3))
    assert backfill_range(None, date(2015, 6, 30), today) == (date(2010, 6, 30), date(2015, 6, 30))
    assert backfill_range(date(2026, 1, 2), date(2026, 1, 2), today) == (date(2026, 1, 2), date(2026, 1, 2))
    with pytest.raises(UserError, match=r"^--from 2026-02-01 is after --to 2026-01-31: give a start on or before"):
        backfill_range(date(2026, 2, 1), date(2026, 1, 31), today)


@pytest.mark.parametrize(("argv", "environ", "refused"), [
    (["backfill", "--from", "2024-02-01", "--to", "2024-01-01"], {"POLYGON_API_KEY": "k"}, "is after --to"),
    (["backfill"], {"POLYGON_API_KEY": ""}, "no API key"),
    (["live"], {"POLYGON_API_KEY": ""}, "no API key"),
    (["live", "--source", "websocket", "--timespan", "hour"], {"POLYGON_API_KEY": "k"}, "minute bars only"),
    (["live", "--timespan", "hour"], {"POLYGON_API_KEY": "k", "LIVE_SOURCE": "websocket"}, "minute bars only"),
    (["live", "--timespan", "hour"], {"POLYGON_API_KEY": "k"}, None),
    (["replay"], {"POLYGON_API_KEY": ""}, None),
])
def test_mistakes_that_need_no_server_are_found_before_kafka_is_reached(argv, environ, refused, monkeypatch):
    from finstream.core.config import Settings
    from finstream.core.errors import UserError
    from producer.cli import check_before_publishing, parse_args

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("POLYGON_API_KEY_FILE", raising=False)
    args, settings = parse_args(argv), Settings.load()
    if refused is None:
        check_before_publishing(args, settings)
    else:
        with pytest.raises(UserError, match=refused):
            check_before_publishing(args, settings)


def test_a_backfill_day_is_from_1970_and_a_future_end_is_today():
    from finstream.core.errors import Refused, UserError
    from producer.cli import backfill_range, market_date

    today = date(2026, 12, 5)
    assert market_date("1970-01-01") == date(1970, 1, 1) and market_date("9999-12-31") == date(9999, 12, 31)
    for text, reason in (("0001-01-01", "is not a day from 1970-01-01 on"),
                         ("1969-12-31", "is not a day from 1970-01-01 on"),
                         ("2024-13-01", "is not a day (YYYY-MM-DD)")):
        with pytest.raises(Refused, match=rf"^{text} {re.escape(reason)}"):
            market_date(text)
    # A --to after today asks for everything up to now; a --from after today for nothing.
    assert backfill_range(date(2026, 12, 1), date(2026, 12, 31), today) == (date(2026, 12, 1), today)
    assert backfill_range(None, date(9999, 12, 31), today) == (date(2021, 12, 5), today)
    assert backfill_range(None, date(1970, 1, 1), today) == (date(1970, 1, 1), date(1970, 1, 1))
    with pytest.raises(UserError, match=r"^--from 2026-12-06 is after today \(2026-12-05\): no bars exist yet"):
        backfill_range(date(2026, 12, 6), None, today)
    with pytest.raises(UserError, match=r"^--from 2026-12-05 is after the default --to, yesterday \(2026-12-04\): give "
                                        r"--to 2026-12-05 or later$"):
        backfill_range(today, None, today)


def test_a_backfill_that_reaches_now_leaves_out_the_bar_still_forming(fake, caplog):
    """The API answers a range reaching today with today's bar so far: published, it would be
    sent again, different, once closed. Only bars closed by now, less the feed's delay."""
    from finstream.core.config import Settings
    from producer.cli import backfill, parse_args

    published = []

    class Publisher:
        def publish(self, bar):
            published.append(bar.timestamp)

    def run(now_ms: int, delay_minutes: str = "0") -> int:
        published.clear()
        settings = Settings.load(environ={"LIVE_DELAY_MINUTES": delay_minutes})
        args = parse_args(["backfill", "--tickers", "AAPL", "--from", "2024-01-01", "--to", "2024-01-12"])
        return backfill(args, settings, Publisher(), now_ms=now_ms, client=make_client(fake)[0])

    last_start = START_MS + 11 * DAY  # the 12th and last bar: 2024-01-12
    with caplog.at_level(logging.INFO, logger="producer.cli"):
        assert run(last_start + DAY - 1) == 11
    assert published == [START_MS + i * DAY for i in range(11)]
    assert "AAPL: 1 bar(s) from 2024-01-12T00:00:00Z left out, not yet closed by the longest length of a day bar" \
        in caplog.text
    assert run(last_start + DAY) == 12  # closed at that very instant
    assert run(last_start + DAY + 14 * 60_000, delay_minutes="15") == 11  # the feed's delay, as live
    assert run(last_start + DAY + 15 * 60_000, delay_minutes="15") == 12
