"""bench.state_step_cost times the state step's three parts per group, on calls that really
predict every new bar with the four questions' linear models."""

from __future__ import annotations

import json

import pytest

from bench import state_step_cost


def test_every_scenario_times_calls_that_predict_each_new_bar(tmp_path, capsys):
    out = tmp_path / "cost"
    assert state_step_cost.main(["--repeats", "2", "--buckets", "2", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["benchmark"] == "state_step_cost"
    assert list(result["scenarios"]) == list(state_step_cost.SCENARIOS)
    for name, (series, new_bars) in state_step_cost.SCENARIOS.items():
        scenario = result["scenarios"][name]
        # each new bar predicted, and the prediction each series made at its last remembered bar judged
        assert scenario["rows_per_call"] == {"predicted": series * new_bars, "judged": series}
        per_call = scenario["ms_per_call"]
        assert all(per_call[part]["min"] > 0 for part in state_step_cost.PARTS)
        assert per_call["total"]["median"] > per_call["step"]["median"]
        per_bar = scenario["ms_per_bar"]["total"]["median"]
        assert per_bar * series * new_bars == pytest.approx(per_call["total"]["median"], rel=1e-3)
    assert "| one series per bucket, one bar |" in out.with_suffix(".md").read_text()
    assert "per bar, ms" in capsys.readouterr().out
