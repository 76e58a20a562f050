"""OAuth 1.0a request verification for the X stand-in (RFC 5849 3.2), on oauthlib's signature
functions.

An implementation independent of the one the gateway signs with (Tornado's `tornado.auth`): a
signing mistake in the gateway fails the tests instead of agreeing with itself. Every request is
checked the way RFC 5849 3.2 asks of a server: the signature (HMAC-SHA1, 3.4), the timestamp
within a window, and the nonce never seen before for that timestamp and token (3.3).
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from oauthlib.oauth1.rfc5849 import signature

HMAC_SHA1 = "HMAC-SHA1"
TIMESTAMP_WINDOW = 300  # seconds either side of our clock
MAX_NONCES = 100_000  # remembered nonces; the oldest are forgotten (they are outside the window)


@dataclass(frozen=True)
class OAuthRefusal(Exception):
    """A refused request, as X answers it: `{"errors": [{"code", "message"}]}`."""

    status: int
    code: int
    message: str


def could_not_authenticate() -> OAuthRefusal:
    return OAuthRefusal(401, 32, "Could not authenticate you.")


def bad_request(message: str) -> OAuthRefusal:
    return OAuthRefusal(400, 215, message)


@dataclass(frozen=True)
class SignedRequest:
    """One request's parameters (RFC 5849 3.4.1.3.1): all of them, and the protocol ones."""

    method: str
    uri: str  # scheme://host[:port]/path as the client addressed it, without the query
    params: list[tuple[str, str]]  # every parameter but oauth_signature, in the base string
    oauth: dict[str, str]  # the protocol parameters (oauth_*), oauth_signature included

    @property
    def consumer_key(self) -> str:
        return self.oauth.get("oauth_consumer_key", "")

    @property
    def token(self) -> str | None:
        return self.oauth.get("oauth_token")


def parse_request(method: str, uri: str, query: str, headers: Mapping[str, str], body: str,
                  ) -> SignedRequest:
    """Collect the parameters from the query, the `Authorization: OAuth` header and a
    form-encoded body (the caller passes "" for any other body)."""
    try:
        authorization = headers.get("Authorization", "")
        from_header = signature.collect_parameters(
            headers={"Authorization": authorization}, exclude_oauth_signature=False,
        ) if authorization.lower().startswith("oauth ") else []
        from_query = signature.collect_parameters(uri_query=query, exclude_oauth_signature=False)
        from_body = signature.collect_parameters(body=body, exclude_oauth_signature=False)
    except ValueError:
        raise bad_request("Bad Authentication data.") from None
    sources = [params for params in (from_header, from_query, from_body)
               if any(name.startswith("oauth_") for name, _ in params)]
    if len(sources) != 1:
        # RFC 5849 3.5: the protocol parameters come by one and only one method.
        raise bad_request("Bad Authentication data.")
    every = [*from_header, *from_query, *from_body]
    protocol = [(name, value) for name, value in every if name.startswith("oauth_")]
    oauth = dict(protocol)
    if len(oauth) != len(protocol):
        raise bad_request("Bad Authentication data.")  # RFC 5849 3.2: duplicated parameters
    params = [(name, value) for name, value in every if name != "oauth_signature"]
    return SignedRequest(method.upper(), uri, params, oauth)


@dataclass(frozen=True)
class _Secrets:
    """What oauthlib's signers read: the client's and the token's shared secrets."""

    client_secret: str
    resource_owner_secret: str


def hmac_sha1_signature(request: SignedRequest, consumer_secret: str, token_secret: str) -> str:
    """RFC 5849 3.4.1 (base string) and 3.4.2 (HMAC-SHA1), by oauthlib."""
    # typeshed's stubs say a dict and a Literal method; oauthlib takes pairs and any method.
    normalized = signature.normalize_parameters(request.params)  # type: ignore[arg-type]
    base_string = signature.signature_base_string(
        request.method, signature.base_string_uri(request.uri), normalized)  # type: ignore[arg-type]
    return str(signature.sign_hmac_sha1_with_client(
        base_string, _Secrets(consumer_secret, token_secret)))


class RequestVerifier:
    """Checks every request of one consumer: RFC 5849 3.2, in its order."""

    def __init__(self, consumer_key: str, consumer_secret: str, *,
                 clock: Callable[[], float] = time.time, window: int = TIMESTAMP_WINDOW) -> None:
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.clock = clock
        self.window = window
        self._nonces: OrderedDict[tuple[str, str, str, str], int] = OrderedDict()

    def verify(self, request: SignedRequest, token_secret: str | None) -> None:
        """Raise `OAuthRefusal` unless the request is signed by our consumer (and by the token
        whose secret is given; None: the request must carry no token), in time, and new."""
        oauth = request.oauth
        required = ("oauth_consumer_key", "oauth_signature_method", "oauth_timestamp",
                    "oauth_nonce", "oauth_signature")
        if not all(oauth.get(name) for name in required):
            raise bad_request("Bad Authentication data.")
        if oauth.get("oauth_version", "1.0") != "1.0":
            raise bad_request("Bad Authentication data.")
        if not hmac.compare_digest(request.consumer_key.encode(), self.consumer_key.encode()):
            raise could_not_authenticate()
        if oauth["oauth_signature_method"] != HMAC_SHA1:
            raise could_not_authenticate()
        if (token_secret is None) != (request.token is None):
            raise could_not_authenticate()
        timestamp = self._timestamp(oauth["oauth_timestamp"])
        expected = hmac_sha1_signature(request, self.consumer_secret, token_secret or "")
        if not hmac.compare_digest(expected.encode(), oauth["oauth_signature"].encode()):
            raise could_not_authenticate()
        self._remember_nonce(request, timestamp)

    def _timestamp(self, value: str) -> int:
        if not (value.isascii() and value.isdigit()):
            raise bad_request("Bad Authentication data.")
        timestamp = int(value)
        if abs(timestamp - self.clock()) > self.window:
            raise OAuthRefusal(401, 135, "Timestamp out of bounds.")
        return timestamp

    def _remember_nonce(self, request: SignedRequest, timestamp: int) -> None:
        """RFC 5849 3.3: a nonce is unique for its timestamp, client and token."""
        key = (request.consumer_key, request.token or "", str(timestamp),
               request.oauth["oauth_nonce"])
        if key in self._nonces:
            raise could_not_authenticate()
        self._nonces[key] = timestamp
        oldest_kept = self.clock() - self.window
        while self._nonces and (len(self._nonces) > MAX_NONCES
                                or next(iter(self._nonces.values())) < oldest_kept):
            self._nonces.popitem(last=False)
