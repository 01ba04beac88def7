"""handlers/lineage.py, each rule from both sides (what mutation testing found unpinned)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.lineage import (
    ATTEMPTS,
    COPY,
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    MAX_COPIES_CEILING,
    ORIGINAL_ENQUEUED_TIME,
    ORIGINAL_MESSAGE_ID,
    Lineage,
    copy_message_id,
    copy_properties,
    dead_letter_message_id,
    lineage_of,
)

FIRST = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = FIRST + timedelta(hours=1)


def copy_of(original: Any, copy: Any = 1, **extra: Any) -> dict[str, Any]:
    return {ORIGINAL_MESSAGE_ID: original, COPY: copy, ORIGINAL_ENQUEUED_TIME: FIRST.isoformat(), **extra}


def read(original: str, copy: int = 1, **extra: Any) -> Lineage:
    return lineage_of(copy_message_id(original, copy), NOW, copy_of(original, copy, **extra))


@pytest.mark.parametrize("props", [None, {}, {"traceparent": "t"}, {COPY: 1}])
def test_without_an_original_id_property_a_message_is_plain(props: Any) -> None:
    assert lineage_of(copy_message_id("m", 1), NOW, props) == Lineage(copy_message_id("m", 1), NOW)


def test_the_original_id_is_at_most_128_characters_and_not_empty() -> None:
    assert read("x" * 128).original_id == "x" * 128
    assert read("x" * 129).copy == 0
    assert lineage_of(copy_message_id("", 1), NOW, copy_of("")).copy == 0
    assert lineage_of(copy_message_id("7", 1), NOW, copy_of(7)).copy == 0  # not a string


def test_copy_counts_from_one_to_the_ceiling() -> None:
    assert read("m", MAX_COPIES_CEILING).copy == MAX_COPIES_CEILING == 1000
    assert read("m", MAX_COPIES_CEILING + 1).copy == 0
    assert lineage_of(copy_message_id("m", 0), NOW, copy_of("m", 0)).copy == 0


def test_attempts_are_read_up_to_two_to_the_31() -> None:
    assert read("m", **{ATTEMPTS: 2**31}).attempts == 2**31
    assert read("m", **{ATTEMPTS: 2**31 + 1}).attempts == 0
    assert read("m", **{ATTEMPTS: True}).attempts == 0
    assert read("m", **{ATTEMPTS: -1}).attempts == 0
    assert read("m", **{ATTEMPTS: 0}).attempts == 0
    assert read("m", **{ATTEMPTS: 5}).attempts == 5


def test_a_copy_without_the_original_time_keeps_its_own() -> None:
    props = {ORIGINAL_MESSAGE_ID: "m", COPY: 1}
    assert lineage_of(copy_message_id("m", 1), NOW, props).original_enqueued_at == NOW
    odd = {**props, ORIGINAL_ENQUEUED_TIME: 12345}
    assert lineage_of(copy_message_id("m", 1), NOW, odd).original_enqueued_at == NOW
    bad = {**props, ORIGINAL_ENQUEUED_TIME: "yesterday"}
    assert lineage_of(copy_message_id("m", 1), NOW, bad).original_enqueued_at == NOW


def dead(reason: Any, description: Any = "d", **extra: Any) -> Lineage:
    props = copy_of("m", 3, **{DEAD_LETTER_REASON: reason, DEAD_LETTER_DESCRIPTION: description, **extra})
    return lineage_of(dead_letter_message_id("m"), NOW, props)


def test_a_dead_letter_copy_needs_a_text_reason() -> None:
    assert dead("ServerBusy").dead_letter == ("ServerBusy", "d")
    assert dead("").dead_letter is None
    assert dead(42).dead_letter is None
    assert dead("ServerBusy", None).dead_letter == ("ServerBusy", "")


def test_a_dead_letter_copy_keeps_its_counts_and_time_and_cuts_long_texts() -> None:
    lineage = dead("R" * 2000, "D" * 5000, **{ATTEMPTS: 9})
    assert lineage.dead_letter == ("R" * 1024, "D" * 4096)
    assert (lineage.copy, lineage.attempts, lineage.original_enqueued_at) == (3, 9, FIRST)
    assert dead("x", **{ATTEMPTS: 2**31}).attempts == 2**31
    assert dead("x", **{ATTEMPTS: 2**31 + 1}).attempts == 0


def test_ids_are_uuids_distinct_per_copy_and_for_the_dead_letter() -> None:
    ids = {copy_message_id("m", n) for n in range(1, 50)} | {dead_letter_message_id("m")}
    assert len(ids) == 50
    assert all(str(uuid.UUID(i)) == i for i in ids)
    assert dead_letter_message_id("m") == dead_letter_message_id("m") != dead_letter_message_id("n")


def test_copy_properties_keep_text_and_integer_values_only_and_none_is_empty() -> None:
    lineage = Lineage("m", FIRST)
    out = copy_properties(lineage, {"a": "x", "n": 2, "f": 1.5, "b": b"x", DEAD_LETTER_REASON: "r"}, 1, 0)
    assert {k: out[k] for k in ("a", "n")} == {"a": "x", "n": 2}
    assert "f" not in out and "b" not in out and DEAD_LETTER_REASON not in out
    assert set(copy_properties(lineage, None, 1, 0)) == {
        ORIGINAL_MESSAGE_ID,
        COPY,
        ATTEMPTS,
        ORIGINAL_ENQUEUED_TIME,
    }
    assert ORIGINAL_ENQUEUED_TIME not in copy_properties(Lineage("m", None), None, 1, 0)


def test_lineage_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Lineage("m", None).copy = 3  # type: ignore[misc]
