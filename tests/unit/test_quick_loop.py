"""tests/unit is the quick loop: nothing in it may open a socket (tests/conftest.py refuses)."""

from __future__ import annotations

import socket

import pytest


def test_a_unit_test_cannot_connect() -> None:
    with pytest.raises(AssertionError, match="move it to tests/http"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_a_unit_test_cannot_listen() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match="move it to tests/http"):
        sock.bind(("127.0.0.1", 0))


def test_test_modules_have_names_unique_across_the_folders() -> None:
    """Test folders have no __init__.py: two test modules of one name in tests/unit and
    tests/http stop the whole suite's collection (the quick loop alone would not notice)."""
    from collections import Counter

    from conftest import REPO_ROOT

    names = Counter(path.name for path in (REPO_ROOT / "tests").rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
