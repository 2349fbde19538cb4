"""bench.validation_cost: each form of checked_messages runs on valid bars, and the rules are
restored afterwards."""

from __future__ import annotations

from bench import validation_cost as V
from finstream.ingest import validation as B


def test_every_form_is_measured_and_the_rules_restored(spark):
    names = sorted({name for patches in V.FORMS.values() for name in patches})
    rules = [getattr(B, name) for name in names]
    kinds = V.measure(spark, messages=300, repeats=1)
    assert set(kinds) == set(V.KINDS) and all(set(forms) == set(V.FORMS) for forms in kinds.values())
    assert all(0 < f["min"] <= f["median"] <= f["max"] for forms in kinds.values() for f in forms.values())
    assert [getattr(B, name) for name in names] == rules
    table = V.table({"messages": 300, "parallelism": 2, "repeats": 1, "date": "2026-12-04", "kinds": kinds})
    assert all(f"| {form} |" in table for form in V.FORMS)
