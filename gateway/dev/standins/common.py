"""What every provider stand-in shares: test users, injected faults, the consent page, and the
small protocol checks (client authentication, PKCE) that several providers perform alike."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import unquote

import tornado.escape
import tornado.gen
import tornado.web

TEMPLATES = Path(__file__).parent / "templates"
MAX_PENDING = 10_000  # consent pages shown but not yet answered; the oldest are forgotten



class Account(Protocol):
    """A stand-in's test account, as its provider describes it: each has the key of its
    `DevUser`, which the chooser's form posts."""

    @property
    def key(self) -> str: ...


A = TypeVar("A", bound=Account)


@dataclass(frozen=True)
class Fault:
    """An answer a test makes an endpoint give instead of the real one.

    `status=0` hangs up without answering (after `delay` seconds); any other status answers
    with `body` after `delay` seconds. `stall_only` waits `delay` seconds, then answers as
    the provider would (a slow provider). `gate`, when given, holds each request until a test
    sets it (a provider that is slow for exactly as long as a test needs, whatever the
    machine's load). `times` limits how many requests the fault hits.
    """

    status: int = 500
    body: str = ""
    content_type: str = "application/json"
    delay: float = 0.0
    stall_only: bool = False
    times: int | None = None
    gate: asyncio.Event | None = None

    @classmethod
    def stall(cls, seconds: float, *, times: int | None = None) -> Fault:
        return cls(delay=seconds, stall_only=True, times=times)

    @classmethod
    def hold(cls, gate: asyncio.Event, *, times: int | None = None) -> Fault:
        """Answer as the provider would once `gate` is set (set it on the stand-in's loop)."""
        return cls(stall_only=True, times=times, gate=gate)


@dataclass(frozen=True)
class DevUser:
    """A test account. Each provider derives its own subject id for it."""

    key: str
    name: str
    given_name: str
    family_name: str
    email: str | None
    email_verified: bool
    username: str


DEV_ACCOUNTS: tuple[DevUser, ...] = (
    DevUser("ada", "Ada Lovelace", "Ada", "Lovelace", "ada@example.com", True, "ada"),
    DevUser("grace", "Grace Hopper", "Grace", "Hopper", "grace@example.com", True, "grace"),
    DevUser("alan", "Alan Turing", "Alan", "Turing", "alan@example.org", False, "alan"),
)


class PendingRequests:
    """Authorization requests waiting on the consent page, by a random id (bounded, expiring).

    The consent form carries only this id, so a user cannot edit the request they approve.
    """

    def __init__(self, ttl: float = 600, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._ttl = ttl
        self._clock = clock

    def add(self, request: Any) -> str:
        request_id = secrets.token_urlsafe(24)
        self._items[request_id] = (self._clock() + self._ttl, request)
        while len(self._items) > MAX_PENDING:
            self._items.popitem(last=False)
        return request_id

    def take(self, request_id: str) -> Any | None:
        item = self._items.pop(request_id, None)
        if item is None or item[0] < self._clock():
            return None
        return item[1]


def pkce_matches(challenge: str, method: str, verifier: str) -> bool:
    """RFC 7636 4.6: the verifier, transformed by the method, equals the challenge."""
    if not 43 <= len(verifier) <= 128:
        return False
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    elif method == "plain":
        computed = verifier
    else:
        return False
    return hmac.compare_digest(computed, challenge)


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """RFC 6749 2.3.1: `Authorization: Basic base64(urlencode(id):urlencode(secret))`."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, client_secret = decoded.partition(":")
    if not sep:
        return None
    return unquote(client_id), unquote(client_secret)


def secrets_equal(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(authorization: str | None, schemes: tuple[str, ...] = ("bearer",)
                 ) -> str | None:
    """The token of an `Authorization` header in one of `schemes` (lower case), or None."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() in schemes else None


class AccountBook(Generic[A]):
    """A stand-in's test accounts, found by the key its chooser's form posts."""

    accounts: Sequence[A]

    def account(self, key: str | None) -> A | None:
        return next((a for a in self.accounts if a.key == key), None)


@dataclass(frozen=True)
class AuthorizationRequest:
    """An authorization request a stand-in accepted (RFC 6749 4.1.1, with RFC 7636's PKCE and
    OpenID Connect's `nonce`): held behind the chooser, then by the code it earns."""

    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str | None
    code_challenge: str | None = None
    code_challenge_method: str = "S256"
    nonce: str | None = None


@dataclass(frozen=True)
class Grant(Generic[A]):
    """What an authorization code stands for."""

    request: AuthorizationRequest
    account: A
    expires: float


@dataclass(frozen=True)
class CodeRefusals:
    """A provider's own words, `(error, error_description)`, for a code exchange that fails."""

    code: tuple[str, str]  # unknown, used or expired
    redirect_uri: tuple[str, str]  # not the authorization request's
    verifier: tuple[str, str]  # absent or not the PKCE challenge's
    missing_verifier: tuple[str, str] | None = None  # absent, where it is worded apart


class AuthorizationCodes(Generic[A]):
    """The codes a stand-in issued: single use, expiring, bound to the request's
    `redirect_uri` and PKCE challenge (RFC 6749 4.1.3, RFC 7636 4.6)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._codes: dict[str, Grant[A]] = {}
        self._clock = clock

    def issue(self, code: str, request: AuthorizationRequest, account: A,
              lifetime: float) -> str:
        self._codes[code] = Grant(request, account, self._clock() + lifetime)
        return code

    def redeem(self, form: dict[str, str | None], refusals: CodeRefusals) -> Grant[A]:
        """The code's grant, once; or the provider's refusal as a ProtocolError."""
        code = form.get("code")
        grant = self._codes.pop(code, None) if code else None  # single use
        if grant is None or grant.expires < self._clock():
            raise ProtocolError(*refusals.code)
        if form.get("redirect_uri") != grant.request.redirect_uri:
            raise ProtocolError(*refusals.redirect_uri)
        challenge = grant.request.code_challenge
        if challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier and refusals.missing_verifier is not None:
                raise ProtocolError(*refusals.missing_verifier)
            if not verifier or not pkce_matches(challenge, grant.request.code_challenge_method,
                                                verifier):
                raise ProtocolError(*refusals.verifier)
        return grant


AVATAR_ROUTE = r"/avatars/([A-Za-z0-9_-]+)"


@dataclass(frozen=True)
class Avatar:
    """A test user's picture as a provider serves it: an https URL on the real providers
    (~100 characters, with an opaque id), an http URL on the stand-in's own origin here. Not a
    data: URL: the picture claim travels in every access token, so the benchmark's /verify sees
    a token near a real one's length, and the pages' CSP need not allow data: images."""

    id: str  # opaque, as the providers' are: the URL does not name the user
    svg: bytes

    def url(self, base_url: str) -> str:
        return f"{base_url}/avatars/{self.id}"


def make_avatar(provider: str, user: DevUser, colour: str) -> Avatar:
    """The user's initials on a square of `colour`."""
    digest = hashlib.sha256(f"avatar:{provider}:{user.key}".encode()).digest()
    initials = (user.given_name[:1] + user.family_name[:1]).upper()
    svg = ("<svg xmlns='http://www.w3.org/2000/svg' width='96' height='96' viewBox='0 0 2 2'>"
           f"<rect width='2' height='2' fill='{colour}'/>"
           "<text x='1' y='1.3' font-family='sans-serif' font-size='.8' fill='white' "
           f"text-anchor='middle'>{initials}</text></svg>")
    return Avatar(base64.urlsafe_b64encode(digest).rstrip(b"=").decode(), svg.encode())


class AvatarHandler(tornado.web.RequestHandler):
    """GET /avatars/<id>: a test user's picture (the pages that show it are the gateway's)."""

    def initialize(self, provider: Any) -> None:
        self.provider = provider

    def get(self, avatar_id: str) -> None:
        avatar = next((a.avatar for a in self.provider.accounts if a.avatar.id == avatar_id),
                      None)
        if avatar is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.set_header("X-Content-Type-Options", "nosniff")
        # An SVG opened on its own is a document: it may not run or load anything.
        self.set_header("Content-Security-Policy", "default-src 'none'")
        self.write(avatar.svg)


@dataclass(frozen=True)
class ProtocolError(Exception):
    """An OAuth 2.0 error answer: `error` and `error_description` (RFC 6749 5.2)."""

    error: str
    description: str
    status: int = 400


class StandInHandler(tornado.web.RequestHandler):
    """Base of every stand-in endpoint: injected faults, JSON answers, form arguments."""

    endpoint = ""  # the key under which a test injects a Fault for this endpoint
    faults: dict[str, Fault]

    def initialize(self, provider: Any) -> None:
        self.provider = provider
        self.faults = provider.faults

    def prepare(self) -> None:
        # How often each endpoint was called, for tests that count upstream requests.
        calls: Counter[str] | None = getattr(self.provider, "calls", None)
        if calls is not None:
            calls[self.endpoint] += 1

    def check_xsrf_cookie(self) -> None:
        """Provider endpoints are called by other servers and by the provider's own forms."""

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        self.set_header("Cache-Control", "no-store")

    async def answer_fault(self) -> bool:
        """Answer with the injected fault of this endpoint, if any; True when it did."""
        fault = self.faults.get(self.endpoint)
        if fault is None:
            return False
        if fault.times is not None:
            if fault.times <= 1:
                del self.faults[self.endpoint]
            else:
                self.faults[self.endpoint] = dataclasses.replace(fault, times=fault.times - 1)
        if fault.gate is not None:
            await fault.gate.wait()
        if fault.delay:
            await tornado.gen.sleep(fault.delay)
        if fault.stall_only:
            return False
        if fault.status == 0:
            # Hang up without a word: detach the connection from Tornado and close it.
            stream = self.request.connection.detach()  # type: ignore[union-attr]
            stream.close()
            self._finished = True
            return True
        self.set_status(fault.status)
        self.set_header("Content-Type", fault.content_type)
        self.finish(fault.body)
        return True

    def write_json(self, document: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(tornado.escape.json_encode(document))

    def form_argument(self, name: str) -> str | None:
        """A body argument given once, or None (several values count as none)."""
        values = self.get_body_arguments(name)
        return values[0] if len(values) == 1 else None

    def query_argument(self, name: str) -> str | None:
        values = self.get_query_arguments(name)
        return values[0] if len(values) == 1 else None

    def query_arguments_once(self) -> dict[str, str | None]:
        """Every query argument by name, None for one given several times."""
        return {name: self.query_argument(name) for name in self.request.query_arguments}

    def is_form_encoded(self) -> bool:
        content_type = self.request.headers.get("Content-Type", "")
        return content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"

    def render_page(self, template: str, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("X-Frame-Options", "DENY")
        self.render(template, **kwargs)


class AccountChooserHandler(StandInHandler):
    """The account chooser every stand-in shows (templates/choose_account.html): its page for a
    checked authorization request, and its form's answer. Subclasses name their brand and the
    line under each account's name."""

    brand = ""

    def account_detail(self, account: Any) -> str:
        raise NotImplementedError

    def show_chooser(self, request: Any, *, app: str, action: str | None = None) -> None:
        """The page, holding `request` server-side until its form is posted to `action`
        (by default this path's `/choose`)."""
        action = action or f"{self.request.path}/choose"
        self.render_page(
            "choose_account.html", brand=self.brand, app=app, action=action,
            request_id=self.provider.pending.add(request),
            accounts=[(a.key, a.name, self.account_detail(a)) for a in self.provider.accounts],
        )

    def take_pending(self) -> Any:
        """What the posted form answers (once), or None when its page has expired."""
        return self.provider.pending.take(self.form_argument("request_id") or "")

    def chosen_account(self) -> Any:
        """The account clicked, or None when the user cancelled (or posted an unknown one)."""
        if self.form_argument("decision") == "deny":
            return None
        return self.provider.account(self.form_argument("user"))


class OAuth2ChooserHandler(AccountChooserHandler):
    """The chooser of a stand-in whose refusals are `ProtocolError`s: its error page in its
    brand's name, and the authorization request its form answers."""

    def error_page(self, error: ProtocolError) -> None:
        self.set_status(error.status)
        self.render_page("provider_error.html", brand=self.brand, error=error.error,
                         description=error.description)



class OAuth2AuthorizeHandler(OAuth2ChooserHandler):
    """An authorization endpoint (RFC 6749 3.1): the provider's `check_authorization_request`
    of the query, then the chooser; a refusal is an error page, never a redirect to an
    unverified redirect_uri."""

    endpoint = "authorize"

    async def get(self) -> None:
        if await self.answer_fault():
            return
        request = self.checked_request()
        if request is not None:
            self.show_chooser(request, app=request.client_id)

    def checked_request(self) -> AuthorizationRequest | None:
        """The authorization request of the query, or None once an error page is written."""
        try:
            request: AuthorizationRequest = self.provider.check_authorization_request(
                self.query_arguments_once())
        except ProtocolError as e:
            self.error_page(e)
            return None
        return request


class OAuth2ChoiceHandler(OAuth2ChooserHandler):
    """The chooser's form, posted: the request it answers, then the provider's answer to the
    choice (`answer_choice`); a form whose page expired gets a page saying so."""

    endpoint = "authorize"

    def post(self) -> None:
        request = self.take_pending()
        if not isinstance(request, AuthorizationRequest):
            self.error_page(ProtocolError("invalid_request",
                                          "This sign-in page has expired. Start again."))
            return
        self.answer_choice(request, self.chosen_account())

    def answer_choice(self, request: AuthorizationRequest, account: Any | None) -> None:
        """Send the browser back with the approval, or with the cancel when `account` is
        None."""
        raise NotImplementedError


class OAuth2TokenHandler(StandInHandler):
    """A token endpoint (RFC 6749 3.2): a form in, the stand-in's `exchange_code` answer out.

    The stand-in records each request in `token_requests` and raises `ProtocolError`.
    """

    endpoint = "token"

    async def post(self) -> None:
        if await self.answer_fault():
            return
        if not self.is_form_encoded():
            self.write_json({"error": "invalid_request",
                             "error_description": "Invalid content type."}, 400)
            return
        form = {name: self.form_argument(name) for name in self.request.body_arguments}
        self.provider.token_requests.append({k: v for k, v in form.items() if v is not None})
        try:
            answer = self.provider.exchange_code(form, self.request.headers.get("Authorization"))
        except ProtocolError as e:
            self.write_json({"error": e.error, "error_description": e.description}, e.status)
            return
        self.write_json(answer)


def make_standin_app(provider: Any,
                     routes: Sequence[tuple[str, type[tornado.web.RequestHandler]]], *,
                     avatars: bool = True) -> tornado.web.Application:
    """The stand-in's Tornado application: each route's handler given `provider`, and the
    test users' pictures unless `avatars` is False."""
    kwargs = {"provider": provider}
    handlers: list[Any] = [(path, handler, kwargs) for path, handler in routes]
    if avatars:
        handlers.append((AVATAR_ROUTE, AvatarHandler, kwargs))
    return tornado.web.Application(
        handlers,
        template_path=str(TEMPLATES),
        autoescape="xhtml_escape",
        compress_response=False,
        serve_traceback=False,
        log_function=_quiet_log,
    )


def _quiet_log(handler: tornado.web.RequestHandler) -> None:
    """Stand-ins log nothing per request: their URLs carry codes and tokens (SECURITY L1)."""
