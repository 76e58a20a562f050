"""The command line takes every value the gateway makes, whatever its first character."""

from __future__ import annotations

import pytest

from gateway import cli


def test_a_sid_beginning_with_a_dash_is_taken_in_its_equals_form() -> None:
    """A sid is base64url: one in 64 begins with "-". `--sid=-x...` is the form the help and
    docs/operations.md give, and argparse reads it as the value."""
    args = cli._parser().parse_args(["sessions", "revoke", "--sid=-Xq9ZRplX7Or_3m3", "--config",
                                     "gateway.toml"])
    assert args.sid == "-Xq9ZRplX7Or_3m3"


def test_a_bare_sid_option_before_such_a_sid_is_a_usage_error_naming_the_way(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli._parser().parse_args(["sessions", "revoke", "--sid", "-Xq9ZRplX7Or_3m3"])
    assert stopped.value.code == 2
    assert "expected one argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["sessions", "--help"])
    assert "--sid=SID" in capsys.readouterr().out
