"""Constant-time comparison of text that may come from a client or a provider."""

from __future__ import annotations

import hmac


def same_text(received: str, expected: str) -> bool:
    """`received == expected` in constant time. hmac.compare_digest raises TypeError on a str
    with non-ASCII characters (a 500 for a client's typo): UTF-8 bytes are compared instead."""
    return hmac.compare_digest(received.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))
