"""The connector seam: what every upstream identity provider implements, as Dex has it.

A connector is built once from its configuration section (`build` in its module) and answers
three questions for the login handlers (handlers/login.py), which know no provider:

- `begin(transaction)`: where to send the browser, and the key the login transaction is kept
  under until the browser comes back (OAuth 2.0's `state`; OAuth 1.0a's request token);
- `callback_parameters(argument)`: what the redirect back carries, in the provider's own
  parameter names;
- `finish(parameters, transaction, browser_binding)`: the signed-in `Identity`.

Tornado's auth mixins build the authorization redirects: a connector is the mixin's host, and
`redirect` keeps the URL the mixin made instead of answering a request. Every call to a
provider goes through `gateway.upstream` (timeouts, one error mapping), never the mixins' own
fetches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from tornado.auth import OAuth2Mixin

from gateway import transactions
from gateway.identity import Identity
from gateway.transactions import LoginTransaction


@dataclass(frozen=True)
class LoginStart:
    """Where a login goes upstream, and what it leaves behind until the callback."""

    key: str  # the login transaction's key, which comes back on the callback
    redirect_url: str  # the provider's authorization page, for the browser
    # A value kept in this browser's signed cookie (the connector's `binding_cookie`) until the
    # callback, which gets it back (SECURITY S4: OAuth 1.0a's request-token secret).
    browser_binding: str | None = None


@dataclass(frozen=True)
class CallbackParameters:
    """What a provider's redirect back carries, in the provider's own parameter names."""

    transaction_key: str  # OAuth 2.0: `state`; OAuth 1.0a: the request token
    code: str | None  # OAuth 2.0: `code`; OAuth 1.0a: `oauth_verifier`
    error: str | None  # the provider's error code, e.g. access_denied
    # What else the provider's own protocol puts there (Sign in with Apple: `user`).
    extra: Mapping[str, str] = field(default_factory=dict)


class ArgumentReader(Protocol):
    """A request argument given at most once (SECURITY S7), bounded (H4); None when absent
    and not required (the handler's `single_argument`)."""

    def __call__(self, name: str, *, required: bool = True) -> str | None: ...


class Connector(Protocol):
    """One upstream identity provider, as the login handlers see it."""

    @property
    def name(self) -> str:
        """The path segment (/login/<name>, /callback/<name>) and the `idp` claim."""

    @property
    def display_name(self) -> str:
        """The provider's brand, for buttons and pages ("Google", "Facebook", "X")."""

    @property
    def binding_cookie(self) -> str | None:
        """The cookie that keeps `LoginStart.browser_binding`, or None when it has none."""

    async def begin(self, tx: LoginTransaction) -> LoginStart: ...

    def callback_parameters(self, argument: ArgumentReader) -> CallbackParameters: ...

    async def finish(self, params: CallbackParameters, tx: LoginTransaction,
                     browser_binding: str | None) -> Identity:
        """The identity of who signed in; `params.code` is set and `params.error` is not."""


class FormPostConnector:
    """Mixed into a connector whose provider comes back with a cross-site POST
    (`response_mode=form_post`, Sign in with Apple) instead of a redirect. Its callback route
    takes POST only, without an XSRF token, and relays the form once through a same-site page
    of ours so that the login cookie comes with it (handlers/login.py, SECURITY C8)."""

    # The form fields that are relayed as they came; any other is dropped.
    callback_fields: tuple[str, ...] = ("state", "code", "error")


def oauth2_callback_parameters(argument: ArgumentReader) -> CallbackParameters:
    """RFC 6749 4.1.2: `state`, then `code` or `error`."""
    state = argument("state")
    assert state is not None
    return CallbackParameters(state, argument("code", required=False),
                              argument("error", required=False))


class OAuth2Connector(OAuth2Mixin):
    """The OAuth 2.0 code flow's start for a connector that hosts a tornado.auth mixin: a new
    `state`, and the mixin's authorization URL for our callback, client and scopes, with the
    provider's own parameters (`authorization_params`: PKCE, nonce...)."""

    binding_cookie: str | None = None

    def __init__(self, *, authorize_url: str, callback_url: str, client_id: str,
                 scopes: Sequence[str] | None) -> None:
        self._OAUTH_AUTHORIZE_URL = authorize_url  # what the mixin reads; ours is configured
        self.callback_url = callback_url
        self._client_id = client_id
        self._scopes = list(scopes) if scopes is not None else None
        self._redirect_url = ""

    def authorization_params(self, tx: LoginTransaction, state: str) -> dict[str, str]:
        raise NotImplementedError

    async def begin(self, tx: LoginTransaction) -> LoginStart:
        state = transactions.new_state()
        self.authorize_redirect(redirect_uri=self.callback_url, client_id=self._client_id,
                                scope=self._scopes, response_type="code",
                                extra_params=self.authorization_params(tx, state))
        return LoginStart(state, self._redirect_url)

    def redirect(self, url: str, permanent: bool = False, status: int | None = None) -> None:
        """Called by the mixin's `authorize_redirect`: keep the URL it built."""
        self._redirect_url = url

    def callback_parameters(self, argument: ArgumentReader) -> CallbackParameters:
        return oauth2_callback_parameters(argument)

    def get_auth_http_client(self) -> NoReturn:
        """The mixins' own fetches (untimed, unmapped errors) must never run."""
        raise NotImplementedError("providers are called through gateway.upstream only")
