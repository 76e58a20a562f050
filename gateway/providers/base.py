"""What the registry knows of an enabled provider."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tornado.auth import OAuth2Mixin

from gateway.transactions import LoginTransaction


@dataclass(frozen=True)
class EnabledProvider:
    name: str  # the path segment: /login/<name>, /callback/<name>, and the `idp` claim
    display_name: str  # for buttons and pages ("Google", "Facebook", "X")
    provider: Any  # the provider object its handlers receive
    login_mixin: type  # carries the tornado.auth mixin; mixed into the generic handlers


def authorize_redirect(handler: OAuth2Mixin, *, authorize_url: str, callback_url: str,
                       client_id: str, scopes: Sequence[str] | None,
                       extra_params: dict[str, str]) -> None:
    """Send the browser to an OAuth 2.0 provider's authorization endpoint (response_type=code)
    through the handler's tornado.auth mixin, which reads the endpoint from an attribute: ours
    comes from configuration."""
    handler._OAUTH_AUTHORIZE_URL = authorize_url  # type: ignore[attr-defined]
    handler.authorize_redirect(
        redirect_uri=callback_url,
        client_id=client_id,
        scope=list(scopes) if scopes is not None else None,
        response_type="code",
        extra_params=extra_params,
    )


class OAuth2CodeLogin(OAuth2Mixin):
    """`start_upstream_login` of an OAuth 2.0 provider whose settings name its authorization
    endpoint, client id and scopes (Google, X); mixed in before its tornado.auth mixin."""

    provider: Any

    def start_upstream_login(self, tx: LoginTransaction, key: str) -> None:
        settings = self.provider.settings
        authorize_redirect(self, authorize_url=settings.authorize_url,
                           callback_url=self.provider.callback_url,
                           client_id=settings.client_id, scopes=settings.scopes,
                           extra_params=self.provider.authorization_params(tx, key))
