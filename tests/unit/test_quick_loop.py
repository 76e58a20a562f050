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
