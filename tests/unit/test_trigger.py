"""The stream job's trigger interval: Spark's parser decides, a refused value is one line."""

import pytest

from finstream.core.errors import UserError
from finstream.ingest.source import processing_time


@pytest.fixture
def writer(spark):
    return spark.readStream.format("rate").load().writeStream.format("noop")


@pytest.mark.parametrize("interval", ["1 second", "500 milliseconds", "0 seconds", "interval 2 minutes", "1.5 seconds"])
def test_intervals_spark_accepts(writer, interval):
    assert processing_time(writer, interval, "STREAM_TRIGGER_INTERVAL") is writer


@pytest.mark.parametrize("interval", ["fast", "1 fortnight", "-1 second", "1 month", "", "   ", "1s",
                                      "200000000 days"])
def test_a_refused_interval_names_its_setting(writer, interval):
    with pytest.raises(UserError) as refused:
        processing_time(writer, interval, "STREAM_TRIGGER_INTERVAL")
    message = str(refused.value)
    assert message.startswith(f"STREAM_TRIGGER_INTERVAL={interval!r} is not a trigger interval Spark accepts")
    assert "\n" not in message
