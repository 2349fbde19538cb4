"""The skill maths by hand: losses, the naive baselines' formulas, the Diebold-Mariano test
and the rule that serves a baseline when the model is not significantly better."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from finstream.core import skill


def test_qlike_is_zero_for_a_perfect_forecast_and_punishes_too_low_more():
    assert skill.qlike(2.0, 2.0) == 0.0
    assert skill.qlike(0.5, 1.0) > skill.qlike(2.0, 1.0) > 0  # under-forecasting variance costs more
    assert skill.qlike(4.0, 1.0) == pytest.approx(0.25 - math.log(0.25) - 1)


def test_interval_score_is_the_width_plus_the_miss_times_two_over_alpha():
    assert skill.interval_score(-1.0, 1.0, 0.5) == 2.0
    assert skill.interval_score(-1.0, 1.0, 1.5) == pytest.approx(2.0 + 20 * 0.5)
    assert skill.interval_score(-1.0, 1.0, -3.0) == pytest.approx(2.0 + 20 * 2.0)


def test_ewma_and_rolling_variance_by_hand():
    returns = [0.01 * (k % 3 - 1) for k in range(25)]
    weights = [0.94 ** k for k in range(20)]
    expected = sum(w * r * r for w, r in zip(weights, reversed(returns[-20:]), strict=False)) / sum(weights)
    assert skill.ewma_variance(returns) == pytest.approx(expected, rel=1e-15)
    assert skill.rolling_variance(returns) == pytest.approx(sum(r * r for r in returns[-20:]) / 20)
    assert skill.mean_range([2.0] * 5, [1.0] * 5) == pytest.approx(math.log(2.0))


def test_diebold_mariano_by_hand():
    loss = np.array([1.0, 2.0, 3.0, 4.0])
    base = np.array([2.0, 2.0, 2.0, 2.0])  # d = -1, 0, 1, 2: mean 0.5, variance 1.25
    dm = skill.diebold_mariano(loss, base)
    hln = math.sqrt((4 + 1 - 2) / 4)
    assert dm.statistic == pytest.approx(0.5 / math.sqrt(1.25 / 4) * hln)
    assert dm.p_better == pytest.approx(0.5 * math.erfc(-dm.statistic / math.sqrt(2)))
    assert math.isnan(skill.diebold_mariano(base, base).statistic)  # identical forecasts: no test


def test_diebold_mariano_separates_a_better_forecast_from_noise():
    rng = random.Random(3)
    actual = np.array([rng.gauss(0, 1) for _ in range(500)])
    good = actual + np.array([rng.gauss(0, 0.5) for _ in range(500)])
    noise = np.array([rng.gauss(0, 1) for _ in range(500)])
    better = skill.diebold_mariano((good - actual) ** 2, (noise - actual) ** 2)
    assert better.statistic < -5 and better.p_better < 1e-6
    worse = skill.diebold_mariano((noise - actual) ** 2, (good - actual) ** 2)
    assert worse.p_better > 0.999


def test_hac_variance_counts_autocovariance_within_a_series_only():
    d = np.array([1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0]) + 0.1
    one_series = skill.diebold_mariano(d, np.zeros(8), np.zeros(8), horizon=2)
    split = skill.diebold_mariano(d, np.zeros(8), np.array([0, 1, 0, 1, 0, 1, 0, 1]), horizon=2)
    plain = skill.diebold_mariano(d, np.zeros(8), horizon=1)
    assert one_series.statistic != plain.statistic  # neighbours in one series are correlated
    # every neighbour pair is split across series: no autocovariance term, only the HLN factor differs
    assert split.statistic / plain.statistic == pytest.approx(math.sqrt((8 + 1 - 4 + 2 / 8) / (8 + 1 - 2)))


def test_the_model_is_served_only_when_significantly_better():
    assert skill.served_choice("lags", "gbt", -2.5, 0.006)[0] == "gbt"
    served, why = skill.served_choice("lags", "gbt", -1.0, 0.16)
    assert served == "persistence" and "not significantly better" in why
    assert skill.served_choice("volatility", "linear", 2.0, 0.98)[0] == "ewma"
    assert skill.served_choice("range", "linear", None, None)[0] == "mean_range_5"
