"""The gateway's cookies: names and attributes in one place (SECURITY P1, P5, K5).

Tornado's `set_cookie` defaults `httponly` and `secure` to off and signed cookies to 30 days, so
every cookie here is set with explicit flags. Signed cookies are read with `min_version=2`
(HMAC-SHA256; the default also accepts legacy HMAC-SHA1 values).
"""

from __future__ import annotations

import hashlib
import http.cookies
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tornado.web

from gateway.config import CookieSettings

SIGNED_VALUE_MIN_VERSION = 2
# The version every signed cookie carried before versions were derived from the secrets.
LEGACY_KEY_VERSION = 1
HOST_PREFIX = "__Host-"

LOGIN = "gw_login"  # binds login transactions to this browser
SESSION = "gw_session"  # the gateway's own session
ACCESS = "gw_access"  # the access JWT, for apps on the same (parent) domain
DEMO = "gw_demo"  # development mode's demo OIDC client: its state, nonce and PKCE verifier
# X's OAuth 1.0a request token and its secret (SECURITY S4): bound to this browser, short-lived.
X_REQUEST_TOKEN = "gw_x_request"
# Tornado's XSRF token for our forms (SECURITY S5, P10): host-only, so `__Host-` where secure,
# which a sibling subdomain cannot plant.
XSRF = "_xsrf"


def versioned_secrets(settings: CookieSettings) -> tuple[dict[int, str], int]:
    """Tornado's `cookie_secret` dict and `key_version` (SECURITY K5/P3): the current secret
    signs; `previous_secrets` only verify. Each secret's version number is derived from the
    secret itself, so that it stays the same whatever its place in the configuration: a cookie
    signed before a rotation names the version of its secret, and a secret removed from the
    configuration takes its cookies with it."""
    current = settings.secret.reveal()
    secrets = {_key_version(s.reveal()): s.reveal() for s in settings.previous_secrets}
    # Cookies signed before versions were derived carry LEGACY_KEY_VERSION and the secret that
    # was current then: the oldest one still configured.
    secrets[LEGACY_KEY_VERSION] = (settings.previous_secrets[-1].reveal()
                                   if settings.previous_secrets else current)
    version = _key_version(current)
    secrets[version] = current
    return secrets, version


def _key_version(secret: str) -> int:
    # 31 bits of a hash: one-way (the secret is >= 32 random bytes) and short in the cookie.
    digest = hashlib.sha256(b"oauth-gateway cookie key version\0" + secret.encode()).digest()
    return max(int.from_bytes(digest[:4], "big") >> 1, LEGACY_KEY_VERSION + 1)


@dataclass(frozen=True)
class CookiePolicy:
    settings: CookieSettings

    def name(self, base: str, *, shared: bool = False) -> str:
        """`__Host-` names where the cookie is host-only and secure; a shared cookie (one with
        the configured domain) cannot carry the prefix."""
        host_only = not (shared and self.settings.domain)
        return HOST_PREFIX + base if host_only and self.settings.secure else base

    def set(self, handler: tornado.web.RequestHandler, base: str, value: str, *,
            max_age: int, signed: bool = False, shared: bool = False) -> None:
        """What Tornado's `set_cookie` (or `set_signed_cookie`) would send, byte for byte,
        made here in one step: Tornado checks each value and attribute with a regex of its
        own, builds a `Morsel` attribute by attribute and formats it again at flush, which
        is most of a login's cookie cost (docs/benchmarks.md)."""
        name = self.name(base, shared=shared)
        if signed:
            value = handler.create_signed_value(name, value).decode("ascii")
        coded = coded_value(value)
        if coded is not value and _CONTROL_OR_SPACE.search(value):  # unquoted: none there
            raise ValueError(f"Invalid cookie {name!r}")  # as Tornado's set_cookie
        attributes = self._attributes(base, shared)
        header = f"{name}={coded}{_attribute_text(attributes, max_age)}"
        # Into Tornado's own jar: flushed with the others, replacing an earlier cookie of this
        # name, and kept when an error page replaces the answer, as set_cookie's are.
        jar = getattr(handler, "_new_cookie", None)
        if jar is None:
            jar = handler._new_cookie = http.cookies.SimpleCookie()
        jar.pop(name, None)
        jar[name] = _MadeCookie(header)

    def _attributes(self, base: str, shared: bool) -> dict[str, Any]:
        samesite = self.settings.samesite
        if base == LOGIN and samesite == "Strict":
            samesite = "Lax"  # SECURITY P5: a Strict cookie is not sent on the provider's redirect
        if base == X_REQUEST_TOKEN:
            samesite = "Lax"  # sent on X's redirect back (Strict is not), never cross-site (None)
        return {
            "path": "/",
            "httponly": True,
            "secure": self.settings.secure,
            "samesite": samesite,
            "domain": self.settings.domain if shared and self.settings.domain else None,
        }

    def read_session_id(self, handler: tornado.web.RequestHandler) -> str | None:
        """The gateway session's id from the browser's signed session cookie, if any."""
        return self.read_signed(handler, SESSION, self.settings.session_lifetime)

    def session_id_from(self, cookies: Mapping[str, str], secret: Any) -> str | None:
        """`read_session_id` without a handler: from the request's parsed cookies
        (tornado.httputil.parse_cookie) and the application's `cookie_secret`."""
        name = self.name(SESSION)
        value = cookies.get(name)
        if not value:
            return None
        raw = tornado.web.decode_signed_value(
            secret, name, value, max_age_days=self.settings.session_lifetime / 86400,
            min_version=SIGNED_VALUE_MIN_VERSION)
        return raw.decode("utf-8", "replace") if raw else None

    def read_signed(self, handler: tornado.web.RequestHandler, base: str,
                    max_age_seconds: int) -> str | None:
        raw = handler.get_signed_cookie(
            self.name(base), max_age_days=max_age_seconds / 86400,
            min_version=SIGNED_VALUE_MIN_VERSION,
        )
        return raw.decode("utf-8", "replace") if raw else None

    def read(self, handler: tornado.web.RequestHandler, base: str, *,
             shared: bool = False) -> str | None:
        return handler.get_cookie(self.name(base, shared=shared))

    def clear(self, handler: tornado.web.RequestHandler, base: str, *,
              shared: bool = False) -> None:
        """Expire a cookie with the same attributes it was set with (SECURITY P7)."""
        handler.clear_cookie(self.name(base, shared=shared), **self._attributes(base, shared))


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20]")
_NOT_AN_ATTRIBUTE = re.compile(r"[\x00-\x20\x3b\x7f]")  # Tornado's check of attribute values
_ENCODER = http.cookies.SimpleCookie()
# http.cookies' alphabets: what a value may hold unquoted, and what quoting leaves as it is.
_LEGAL = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~:]+")
_UNESCAPED = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~: ()/<=>?@\[\]{}]+")


def coded_value(value: str) -> str:
    """The value as Morsel writes it (`SimpleCookie.value_encode`), without its translation
    table for the common quoted case: a signed value's base64 ends in `=`, which must be
    quoted but not escaped."""
    if _LEGAL.fullmatch(value):
        return value
    if _UNESCAPED.fullmatch(value):
        return f'"{value}"'
    return str(_ENCODER.value_encode(value)[1])


def _attribute_text(attributes: Mapping[str, Any], max_age: int) -> str:
    """The attributes as `Morsel.OutputString` writes them: sorted by name, flags by name."""
    domain, samesite = attributes["domain"], attributes["samesite"]
    for value in (domain, samesite, attributes["path"]):
        if value is not None and _NOT_AN_ATTRIBUTE.search(value):
            raise http.cookies.CookieError(f"Invalid cookie attribute {value!r}")
    return "".join((
        f"; Domain={domain}" if domain else "",
        "; HttpOnly" if attributes["httponly"] else "",
        f"; Max-Age={int(max_age)}" if max_age else "",  # as Tornado: int(), none for 0
        f"; Path={attributes['path']}" if attributes["path"] else "",
        f"; SameSite={samesite}" if samesite else "",
        "; Secure" if attributes["secure"] else "",
    ))


class _MadeCookie(http.cookies.Morsel):  # type: ignore[type-arg]
    """A cookie whose Set-Cookie value is already made: what Tornado's flush asks of the
    cookies in its jar is `OutputString`."""

    def __init__(self, header: str) -> None:
        super().__init__()
        self._header = header

    def OutputString(self, attrs: Any = None) -> str:
        return self._header
