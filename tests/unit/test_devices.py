"""The device a session's user sees in their list of sessions, named from the User-Agent."""

from __future__ import annotations

import pytest

from gateway.devices import UNKNOWN, describe_device

CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/131.0.0.0 Safari/537.36")
EDGE_WINDOWS = CHROME_WINDOWS + " Edg/131.0.2903.86"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36")
SAFARI_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, "
              "like Gecko) Version/18.1 Safari/605.1.15")
CHROME_ON_IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
                  "like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1")
OPERA_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
             "Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0")


@pytest.mark.parametrize(("user_agent", "device"), [
    (CHROME_WINDOWS, "Chrome on Windows"),
    (EDGE_WINDOWS, "Edge on Windows"),  # Edge says Chrome and Safari too
    (SAFARI_IPHONE, "Safari on iPhone"),  # and "Mac OS X"
    (FIREFOX_LINUX, "Firefox on Linux"),
    (CHROME_ANDROID, "Chrome on Android"),  # Android says Linux too
    (SAFARI_MAC, "Safari on macOS"),
    (CHROME_ON_IPAD, "Chrome on iPad"),
    (OPERA_MAC, "Opera on macOS"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/131.0.0.0 Safari/537.36", "Chrome on Linux"),
    ("curl/8.5.0", "curl"),
    ("python-httpx/0.28.1", "Python"),
])
def test_P8_a_device_is_named_as_its_user_knows_it(user_agent: str, device: str) -> None:
    assert describe_device(user_agent) == device


@pytest.mark.parametrize("user_agent", [None, "", "x" * 10_000, "<script>alert(1)</script>"])
def test_P8_an_unknown_device_is_named_so_and_the_header_is_never_echoed(
        user_agent: str | None) -> None:
    assert describe_device(user_agent) == UNKNOWN


def test_P8_a_header_past_its_reading_limit_is_not_read() -> None:
    assert describe_device("x" * 600 + " Firefox/133.0 (X11; Linux)") == UNKNOWN
