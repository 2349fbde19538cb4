"""The live skill watch: the band a holdout promises (windowed loss ratios), and the watch's
rolling ratio per served version, its WARNING when a full window leaves the band, and what it
sends to MLflow."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from finstream.core import skill
from finstream.serving import installed
from finstream.serving.live_skill import LiveSkillWatch


def test_band_spans_the_holdouts_windowed_ratios():
    rng = np.random.default_rng(3)
    baseline = rng.exponential(1.0, 1000)
    loss = baseline * rng.uniform(0.8, 1.0, 1000)  # a model a little better than its baseline
    band = skill.live_band(loss, baseline, window=100)
    ratios = [loss[i:i + 100].sum() / baseline[i:i + 100].sum() for i in range(901)]
    assert band["window"] == 100 and band["holdout"] == pytest.approx(loss.sum() / baseline.sum())
    assert band["low"] == pytest.approx(np.quantile(ratios, 0.025)) and band["high"] == pytest.approx(
        np.quantile(ratios, 0.975))
    assert 0.8 < band["low"] < band["holdout"] < band["high"] < 1.0
    assert skill.live_band(loss[:99], baseline[:99], window=100) is None  # shorter than a window


V = "finstream-lags-day1-stocks/{}"


def install(model_dir, version: str, band: dict | None, series=None) -> None:
    series = series or {"timespan": "day", "multiplier": 1, "asset_class": "stocks"}
    installed.install(model_dir, "lags", version, {"question": "lags", "served": "persistence"},
                      {"series": series, "live_band": band, "mlflow_run_id": "run-7",
                       "registered_model": V.format("")[:-1] if "asset_class" in series else "finstream-lags-hour1"})


def rows(version: str, loss: float, baseline: float, judged: int) -> list[dict]:
    """A batch's sums of one version, as the query observes them: `judged` predictions whose
    loss and baseline terms sum to `loss` and `baseline`."""
    return [{"version": version, "loss": loss, "baseline": baseline, "judged": judged}]


def batch(*versions: list[dict]) -> dict:
    return {"live_lags_judged": [row for part in versions for row in part]}


def test_the_watch_warns_once_when_a_full_window_leaves_the_band_and_logs_each_ratio(tmp_path, caplog):
    install(tmp_path, "3", {"window": 100, "low": 0.9, "high": 1.1, "holdout": 1.0})
    logged = []
    watch = LiveSkillWatch(tmp_path, lambda *args: logged.append(args))
    with caplog.at_level(logging.INFO, logger="finstream.serving.live_skill"):
        (entry,) = watch.update(batch(rows(V.format(3), 50.0, 50.0, 50)), 1)
        assert entry["live_loss_ratio"] == 1.0 and entry["live_judged"] == 50 and entry["live_set"] == "day1-stocks"
        watch.update(batch(rows(V.format(3), 300.0, 50.0, 50)), 2)  # 350/100 = 3.5 over a full window
        watch.update(batch(rows(V.format(3), 300.0, 50.0, 50)), 3)  # still out: said once
        (entry,) = watch.update(batch(rows(V.format(3), 50.0, 50.0, 50)), 4)
        assert entry["live_loss_ratio"] == pytest.approx(350 / 100)  # the window dropped batch 1 and 2
        watch.update(batch(rows(V.format(3), 50.0, 50.0, 50)), 5)  # back in: 100/100
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{V.format(3)} has left its holdout band: loss ratio 3.500" in warnings[0]
    assert "rollback --question lags --set day1-stocks" in warnings[0]
    assert "back in its holdout band" in caplog.text
    assert [(run, key, step) for run, key, _, step in logged] == [("run-7", "live.lags.loss_ratio", s)
                                                                    for s in range(1, 6)]
    assert entry["live_band_low"] == 0.9 and entry["live_band_high"] == 1.1


def test_the_watch_follows_each_sets_champion_on_its_own_and_compares_no_partial_window(tmp_path, caplog):
    install(tmp_path, "1", None)
    install(tmp_path, "2", {"window": 100, "low": 0.9, "high": 1.1, "holdout": 1.0},
            series={"timespan": "hour", "multiplier": 1})
    watch = LiveSkillWatch(tmp_path)
    with caplog.at_level(logging.WARNING, logger="finstream.serving.live_skill"):
        (entry,) = watch.update(batch(rows(V.format(1), 500.0, 50.0, 200)), 1)
        assert "live_band_low" not in entry  # no band: nothing to compare with
        hourly = "finstream-lags-hour1/2"
        both = watch.update(batch(rows(hourly, 500.0, 50.0, 50), rows(V.format(1), 50.0, 50.0, 50)), 2)
        assert [(e["live_version"], e["live_set"], e["live_loss_ratio"]) for e in both] == [
            (V.format(1), "day1-stocks", 550.0 / 100.0), (hourly, "hour1", 10.0)]  # a mixed batch: each its own
        watch.update(batch(rows(hourly, 500.0, 50.0, 10)), 3)  # out, but 60 < 100 judged
    assert not caplog.records
    assert json.loads((installed.version_dir(tmp_path, "lags", "hour1", "2") / "metadata.json").read_text())[
        "live_band"]
