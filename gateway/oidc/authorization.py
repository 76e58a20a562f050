"""The authorization request (`GET /authorize`, OIDC Core 3.1.2) and authorization codes.

`parse_authorization_request` decides, with no I/O, whether a request is acceptable. Until the
client and its `redirect_uri` are known to be registered, every refusal is an error page, never a
redirect (SECURITY R1, R3): `InvalidRequest`. After that, refusals go back to the client as
`AuthorizationRedirect` (RFC 6749 4.1.2.1) with `state` and `iss` (RFC 9207).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gateway.config import ClientSettings
from gateway.errors import AuthorizationRedirect, InvalidGrant, InvalidRequest
from gateway.oidc.clients import ClientRegistry
from gateway.textcompare import same_text
from gateway.transactions import pkce_s256_challenge

CODE_BYTES = 32  # 256 bits, above the 128 of C1
REQUEST_ID_BYTES = 32
MAX_PARAMETER_LENGTH = 2048
# RFC 7636 4.1 / 4.2: a verifier is 43-128 unreserved characters; an S256 challenge is the
# unpadded base64url of a SHA-256 digest, 43 characters.
CODE_VERIFIER_PATTERN = re.compile(r"[A-Za-z0-9._~-]{43,128}")
S256_CHALLENGE_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
PROMPT_VALUES = frozenset({"none", "login", "consent", "select_account"})


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request, kept server-side while the user signs in upstream."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None  # always S256
    provider: str | None = None
    prompt: tuple[str, ...] = ()
    max_age: int | None = None
    created: float = 0.0

    @property
    def forces_login(self) -> bool:
        """prompt=login (or select_account): sign in upstream even with a live session."""
        return "login" in self.prompt or "select_account" in self.prompt

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AuthorizationRequest:
        return cls(**{**record, "scope": tuple(record["scope"]),
                      "prompt": tuple(record["prompt"])})


@dataclass(frozen=True)
class CodeGrant:
    """What one authorization code stands for, bound to everything C1 names."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    sub: str
    claims: dict[str, Any]  # the identity's profile claims (idp, email, name, ...)
    auth_time: int
    sid: str  # the gateway session the code came from
    family_id: str  # decided now, so a replayed code can revoke what its first use issued
    issued_at: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> CodeGrant:
        return cls(**{**record, "scope": tuple(record["scope"])})


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def new_request_id() -> str:
    return secrets.token_urlsafe(REQUEST_ID_BYTES)


def hashed(value: str) -> str:
    """Store keys for codes, request ids and refresh tokens: a dump of the store holds none."""
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def allowed_providers(client: ClientSettings, enabled: Sequence[str]) -> tuple[str, ...]:
    """The enabled providers this client may use, in the gateway's order."""
    if not client.providers:
        return tuple(enabled)
    return tuple(name for name in enabled if name in client.providers)


def with_query(url: str, params: Mapping[str, str | None]) -> str:
    """`url` with `params` added to its query, keeping the query it had (RFC 6749 3.1.2)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


def parse_authorization_request(
    params: Mapping[str, list[str]],
    clients: ClientRegistry,
    *,
    issuer: str,
    enabled_providers: Sequence[str],
    now: float,
) -> tuple[ClientSettings, AuthorizationRequest]:
    """Validate the query of `/authorize`; `params` maps each name to all its values, raw.

    Until client_id and redirect_uri are known good, a refusal is a page (SECURITY R1, R3);
    after that, every refusal goes back to the client with `error`, `state` and `iss`."""
    # SECURITY R1: the redirect_uri is compared as an exact string; no prefix, no normalisation.
    client = clients.get(_one_value(params, "client_id"))
    if client is None:
        raise InvalidRequest("This app is not registered with the gateway.",
                             log_detail="unknown or missing client_id")
    redirect_uri = _one_value(params, "redirect_uri")
    if redirect_uri is None or redirect_uri not in client.redirect_uris:
        raise InvalidRequest("The app asked to return to an address it has not registered.",
                             log_detail=f"redirect_uri not registered for {client.client_id}")
    query = _ClientQuery(params, client, redirect_uri, issuer)
    query.state = query.value("state")
    _check_response_type(query)
    scope = _checked_scope(query)
    code_challenge = _checked_code_challenge(query)
    prompt, max_age = _checked_prompt_and_max_age(query)
    provider = query.value("provider")
    if provider is not None and provider not in allowed_providers(client, enabled_providers):
        raise query.refuse("invalid_request", "This app may not use that sign-in provider.",
                           f"provider={provider[:32]!r}")
    return client, AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scope=scope,
        state=query.state,
        nonce=query.value("nonce"),
        code_challenge=code_challenge,
        provider=provider,
        prompt=prompt,
        max_age=max_age,
        created=now,
    )


def _one_value(params: Mapping[str, list[str]], name: str) -> str | None:
    """A parameter given at most once (SECURITY S7), bounded; None when absent or empty."""
    values = params.get(name, [])
    if len(values) > 1:
        raise InvalidRequest(f"The parameter {name!r} was given more than once.")
    if not values or values[0] == "":
        return None
    if len(values[0]) > MAX_PARAMETER_LENGTH:
        raise InvalidRequest(f"The parameter {name!r} is too long.")
    return values[0]


@dataclass
class _ClientQuery:
    """The rest of an authorization request, once its client and redirect_uri are known good:
    every refusal from here on goes back to that redirect_uri."""

    params: Mapping[str, list[str]]
    client: ClientSettings
    redirect_uri: str
    issuer: str
    state: str | None = None

    def value(self, name: str) -> str | None:
        try:
            return _one_value(self.params, name)
        except InvalidRequest as e:
            raise self.refuse("invalid_request", e.description) from None

    def refuse(self, error: str, description: str, detail: str = "") -> AuthorizationRedirect:
        location = with_query(self.redirect_uri, {
            "error": error, "error_description": description, "state": self.state,
            "iss": self.issuer})
        return AuthorizationRedirect(
            error, description, location=location,
            log_detail=f"client={self.client.client_id} {detail}".strip())


def _check_response_type(query: _ClientQuery) -> None:
    response_type = query.value("response_type")
    if response_type is None:
        raise query.refuse("invalid_request", "response_type is required.")
    if response_type != "code":
        raise query.refuse("unsupported_response_type", "Only response_type=code is supported.")
    for name, error in (("request", "request_not_supported"),
                        ("request_uri", "request_uri_not_supported")):
        if query.value(name) is not None:
            raise query.refuse(error, f"The {name} parameter is not supported.")
    if query.value("response_mode") not in (None, "query"):
        raise query.refuse("invalid_request", "Only response_mode=query is supported.")


def _checked_scope(query: _ClientQuery) -> tuple[str, ...]:
    scope = tuple(dict.fromkeys((query.value("scope") or "").split()))
    if "openid" not in scope:
        raise query.refuse("invalid_scope", "The scope must include openid.")
    refused = [s for s in scope if s not in query.client.scopes]
    if refused:
        raise query.refuse("invalid_scope",
                           "This app may not ask for: " + " ".join(sorted(refused)))
    return scope


def _checked_code_challenge(query: _ClientQuery) -> str | None:
    code_challenge = query.value("code_challenge")
    method = query.value("code_challenge_method")
    if code_challenge is None and method is not None:
        raise query.refuse("invalid_request", "code_challenge_method without code_challenge.")
    if code_challenge is not None:
        # SECURITY S2: only S256. A missing method means plain (RFC 7636 4.3), refused too.
        if method != "S256":
            raise query.refuse("invalid_request", "PKCE code_challenge_method must be S256.",
                               f"code_challenge_method={(method or 'plain')[:16]!r}")
        if not S256_CHALLENGE_PATTERN.fullmatch(code_challenge):
            raise query.refuse("invalid_request",
                               "The code_challenge is not a valid S256 challenge.")
    elif query.client.is_public:
        raise query.refuse("invalid_request", "PKCE (code_challenge with S256) is required.",
                           "public client without PKCE")
    return code_challenge


def _checked_prompt_and_max_age(query: _ClientQuery) -> tuple[tuple[str, ...], int | None]:
    prompt = tuple(dict.fromkeys((query.value("prompt") or "").split()))
    if not set(prompt) <= PROMPT_VALUES or ("none" in prompt and len(prompt) > 1):
        raise query.refuse("invalid_request", "Unsupported prompt value.")
    max_age_text = query.value("max_age")
    if max_age_text is None:
        return prompt, None
    if not max_age_text.isdigit() or len(max_age_text) > 10:
        raise query.refuse("invalid_request", "max_age must be a number of seconds.")
    return prompt, int(max_age_text)


def refusal(request: AuthorizationRequest, error: str, description: str, *, issuer: str,
            log_detail: str = "") -> AuthorizationRedirect:
    """A refusal of an already validated request, back to the client (e.g. login_required)."""
    location = with_query(request.redirect_uri, {
        "error": error, "error_description": description, "state": request.state,
        "iss": issuer})
    return AuthorizationRedirect(error, description, location=location,
                                 log_detail=f"client={request.client_id} {log_detail}".strip())


def success_location(request: AuthorizationRequest, code: str, *, issuer: str) -> str:
    """The redirect carrying the code; `iss` per RFC 9207 (mix-up defence for the client)."""
    return with_query(request.redirect_uri, {"code": code, "state": request.state,
                                             "iss": issuer})


def check_code_redemption(grant: CodeGrant, *, client_id: str, redirect_uri: str | None,
                          code_verifier: str | None) -> None:
    """SECURITY C1, S2: the code was issued to this client for this redirect_uri, and the
    PKCE verifier matches its challenge. Every failure is `invalid_grant`."""
    if not same_text(grant.client_id, client_id):
        raise InvalidGrant(f"code of client {grant.client_id} presented by {client_id}")
    if redirect_uri is None or redirect_uri != grant.redirect_uri:
        # OIDC Core 3.1.3.2: redirect_uri is required and identical to the one authorized.
        raise InvalidGrant("redirect_uri missing or different from the authorization request")
    if grant.code_challenge is None:
        if code_verifier is not None:
            # RFC 9700 2.1.1: a verifier without a challenge is a PKCE downgrade attempt.
            raise InvalidGrant("code_verifier sent for a code issued without a challenge")
        return
    if code_verifier is None or not CODE_VERIFIER_PATTERN.fullmatch(code_verifier):
        raise InvalidGrant("missing or malformed code_verifier")
    if not hmac.compare_digest(pkce_s256_challenge(code_verifier), grant.code_challenge):
        raise InvalidGrant("code_verifier does not match the code_challenge")
