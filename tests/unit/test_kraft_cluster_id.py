"""The secured-Kafka test's cluster id never starts with '-': the storage tool took one that
did for an option, and the test's broker never started (one run in 64)."""

from __future__ import annotations

import uuid

from tests import secured_kafka


def test_an_id_starting_with_a_dash_is_drawn_again(monkeypatch):
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(secured_kafka.uuid, "uuid4", lambda: next(drawn))
    assert secured_kafka.kraft_cluster_id() == "AQEBAQEBAQEBAQEBAQEBAQ"  # the second draw: b"\x01" * 16


def test_ids_are_22_url_safe_characters():
    ids = {secured_kafka.kraft_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
