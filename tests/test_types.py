"""The shared helpers of sambench.types that every stage's one-line errors rely on."""

import sqlite3

from sambench.types import first_line


def test_first_line_quotes_the_first_line_of_a_multi_line_message():
    assert first_line(ValueError("bad header\n  at byte 12\n  in block 3")) == "bad header"


def test_first_line_drops_blank_lines_and_spaces_around_the_message():
    assert first_line(sqlite3.DatabaseError("\n  database disk image is malformed  \n")) == \
        "database disk image is malformed"


def test_first_line_of_an_empty_or_blank_message_is_the_exception_type():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(OSError(" \n ")) == "OSError"
