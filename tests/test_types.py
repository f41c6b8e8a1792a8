"""The shared helpers of sambench.types that every stage's one-line errors rely on."""

import sqlite3

import pytest

from sambench.types import SambenchError, check_choice, check_min, first_line


def test_first_line_quotes_the_first_line_of_a_multi_line_message():
    assert first_line(ValueError("bad header\n  at byte 12\n  in block 3")) == "bad header"


def test_first_line_drops_blank_lines_and_spaces_around_the_message():
    assert first_line(sqlite3.DatabaseError("\n  database disk image is malformed  \n")) == \
        "database disk image is malformed"


def test_first_line_of_an_empty_or_blank_message_is_the_exception_type():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(OSError(" \n ")) == "OSError"


def test_first_line_can_leave_an_empty_message_empty_where_the_caller_names_the_type():
    assert first_line(KeyError(), empty="") == ""
    assert first_line(ValueError("x\ny"), empty="") == "x"


def test_check_choice_names_the_place_the_setting_the_choices_and_the_value():
    check_choice("fp16", ("fp32", "fp16"), "--cache-dtype")
    with pytest.raises(SambenchError) as e:
        check_choice("fp8", ("fp32", "fp16"), "--cache-dtype")
    assert str(e.value) == "--cache-dtype must be one of fp32, fp16, got 'fp8'"
    with pytest.raises(SambenchError) as e:
        check_choice("x", ("a",), "mask_selection", "cards/p.yaml")
    assert str(e.value) == "cards/p.yaml: mask_selection must be one of a, got 'x'"


@pytest.mark.parametrize("value, low, strict, ok", [(1, 1, False, True), (0, 1, False, False), (0, 0, True, False),
                                                    (0.5, 0, True, True), (float("nan"), 0, True, False),
                                                    (float("nan"), 1, False, False)])
def test_check_min_refuses_below_the_bound_and_nan(value, low, strict, ok):
    if ok:
        check_min(value, low, "--workers", strict=strict)
        return
    with pytest.raises(SambenchError) as e:
        check_min(value, low, "--workers", "here", strict=strict)
    assert str(e.value) == f"here: --workers must be {'>' if strict else '>='} {low}, got {value}"
