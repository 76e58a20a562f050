"""A generic OpenID Connect provider without sockets: its configuration, its discovery
document's checks (SECURITY C9), the discovery cache, and its claims mapped to an identity."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from config_support import (
    CLIENT_SECRET,
    COOKIE_SECRET,
    EXAMPLE_CONFIG,
    assert_refused,
    refusal,
    write_config,
)

from gateway.config import MicrosoftSettings, OidcProviderSettings, load_settings
from gateway.errors import ProviderUnavailable, UpstreamError
from gateway.providers.id_tokens import claimed_true, left_half_hash
from gateway.providers.microsoft import (
    CONSUMERS_TENANT,
    discovery_issuers,
    identity_from_microsoft,
    token_issuers,
)
from gateway.providers.oidc import basic_authorization, identity_from_claims
from gateway.upstream.discovery import (
    Discovery,
    DiscoveryError,
    discovery_url,
    is_provider_url,
    parse_metadata,
)

ISSUER = "https://sso.acme.example"
ACME = {
    "providers.oidc.acme.display_name": "Acme SSO",
    "providers.oidc.acme.issuer": ISSUER,
    "providers.oidc.acme.client_id": "gateway",
    "providers.oidc.acme.client_secret": CLIENT_SECRET,
}


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "jwks_uri": f"{ISSUER}/jwks",
        "response_types_supported": ["code", "id_token"],
    }
    for name, value in changes.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value
    return document


# -- configuration ------------------------------------------------------------------------------


def test_generic_providers_load_by_name(tmp_path: Path) -> None:
    changes = {**ACME, "providers.oidc.corp-sso.display_name": "Corp",
               "providers.oidc.corp-sso.issuer": "https://corp.example/realms/staff",
               "providers.oidc.corp-sso.client_id": "gw",
               "providers.oidc.corp-sso.client_secret": "another-secret"}
    settings = load_settings(write_config(tmp_path, changes), {})
    assert list(settings.providers.oidc) == ["acme", "corp-sso"]
    acme = settings.providers.oidc["acme"]
    assert (acme.display_name, acme.issuer, acme.client_id) == ("Acme SSO", ISSUER, "gateway")
    assert acme.client_secret.reveal() == CLIENT_SECRET
    assert acme.scopes == ("openid", "email", "profile")
    assert settings.providers.enabled_names() == ["google", "acme", "corp-sso"]


def test_a_generic_providers_secret_comes_from_the_environment(tmp_path: Path) -> None:
    changes = {**ACME, "providers.oidc.acme.client_secret": None}
    environ = {"GATEWAY_PROVIDERS__OIDC__ACME__CLIENT_SECRET": "from-the-environment"}
    settings = load_settings(write_config(tmp_path, changes), environ)
    assert settings.providers.oidc["acme"].client_secret.reveal() == "from-the-environment"


@pytest.mark.parametrize("name", ["google", "facebook", "twitter", "x", "github", "microsoft",
                                  "apple"])
def test_a_generic_provider_may_not_take_a_built_in_name(tmp_path: Path, name: str) -> None:
    changes = {k.replace(".acme.", f".{name}."): v for k, v in ACME.items()}
    error = refusal(write_config(tmp_path, changes))
    assert error.key == f"providers.oidc.{name}"
    assert "built-in provider" in str(error)


@pytest.mark.parametrize("name", ['"Acme"', '"acme sso"', '"acme%2F"', '"-acme"', '"a.b"',
                                  '"' + "a" * 33 + '"'])
def test_a_generic_providers_name_must_be_url_safe(tmp_path: Path, name: str) -> None:
    changes = {k.replace(".acme.", f".{name}."): v for k, v in ACME.items()}
    error = refusal(write_config(tmp_path, changes))
    assert error.key.startswith("providers.oidc.")
    assert "URL path segment" in str(error)


@pytest.mark.parametrize(("change", "key"), [
    ({"providers.oidc.acme.display_name": None}, "providers.oidc.acme.display_name"),
    ({"providers.oidc.acme.issuer": None}, "providers.oidc.acme.issuer"),
    ({"providers.oidc.acme.issuer": "http://sso.acme.example"}, "providers.oidc.acme.issuer"),
    ({"providers.oidc.acme.issuer": "https://sso.acme.example/?realm=a"},
     "providers.oidc.acme.issuer"),
    ({"providers.oidc.acme.client_secret": None}, "providers.oidc.acme.client_secret"),
    ({"providers.oidc.acme.scopes": ["email"]}, "providers.oidc.acme.scopes"),
    ({"providers.oidc.acme.authorize_url": "https://x"}, "providers.oidc.acme.authorize_url"),
])
def test_a_generic_providers_section_is_checked(tmp_path: Path, change: dict[str, Any],
                                               key: str) -> None:
    assert_refused(tmp_path, {**ACME, **change}, key)


def test_the_commented_generic_provider_of_the_shipped_example_is_valid(tmp_path: Path) -> None:
    example = EXAMPLE_CONFIG.read_text()
    start = example.index("# [providers.oidc.acme]")
    block = example[start:example.index("\n\n", start)]
    path = tmp_path / "gateway.toml"
    path.write_text(example.replace(block, "\n".join(line.removeprefix("# ")
                                                     for line in block.splitlines())))
    environ = {"GATEWAY_COOKIES__SECRET": COOKIE_SECRET,
               "GATEWAY_PROVIDERS__GOOGLE__CLIENT_SECRET": CLIENT_SECRET,
               "GATEWAY_PROVIDERS__OIDC__ACME__CLIENT_SECRET": "acme-secret-canary-5Tq1"}
    acme = load_settings(path, environ).providers.oidc["acme"]
    assert (acme.display_name, acme.issuer) == ("Acme SSO", ISSUER)
    assert acme.client_secret.reveal() == "acme-secret-canary-5Tq1"
    assert acme.scopes == OidcProviderSettings().scopes


def test_an_http_issuer_is_allowed_on_loopback_only(tmp_path: Path) -> None:
    changes = {**ACME, "providers.oidc.acme.issuer": "http://127.0.0.1:8089"}
    assert load_settings(write_config(tmp_path, changes), {}).providers.oidc["acme"].issuer


def test_access_subjects_and_clients_may_name_a_generic_provider(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, {
        **ACME, "access.subjects": ["acme:248289761001"]}), {})
    assert settings.access.subjects == ("acme:248289761001",)
    assert_refused(tmp_path, {**ACME, "access.subjects": ["other:1"]}, "access.subjects[0]")


# -- the discovery document (SECURITY C9) ----------------------------------------------------


def test_discovery_reads_the_endpoints_and_prefers_client_secret_basic() -> None:
    metadata = parse_metadata(_document(token_endpoint_auth_methods_supported=[
        "client_secret_post", "client_secret_basic"]), expected_issuer=ISSUER)
    assert metadata.authorization_endpoint == f"{ISSUER}/authorize"
    assert metadata.jwks_uri == f"{ISSUER}/jwks"
    assert metadata.token_endpoint_auth_method == "client_secret_basic"
    assert metadata.id_token_signing_algs == ("RS256",)  # listed nowhere: the default
    post = parse_metadata(_document(token_endpoint_auth_methods_supported=[
        "private_key_jwt", "client_secret_post"]), expected_issuer=ISSUER)
    assert post.token_endpoint_auth_method == "client_secret_post"
    omitted = parse_metadata(_document(), expected_issuer=ISSUER)
    assert omitted.token_endpoint_auth_method == "client_secret_basic"  # Discovery 3
    assert parse_metadata(_document(userinfo_endpoint=None),
                          expected_issuer=ISSUER).userinfo_endpoint is None


@pytest.mark.parametrize("issuer", [f"{ISSUER}/", "https://SSO.acme.example",
                                    "https://evil.example", None, ["https://sso.acme.example"]])
def test_C9_a_discovery_document_must_name_exactly_the_configured_issuer(issuer: Any) -> None:
    with pytest.raises(DiscoveryError, match="another issuer"):
        parse_metadata(_document(issuer=issuer), expected_issuer=ISSUER)


@pytest.mark.parametrize("changes", [
    {"token_endpoint": "http://sso.acme.example/token"},
    {"authorization_endpoint": "javascript:alert(1)"},
    {"jwks_uri": None},
    {"jwks_uri": "https://user:pw@sso.acme.example/jwks"},
    {"response_types_supported": ["id_token"]},
    {"token_endpoint_auth_methods_supported": ["private_key_jwt"]},
    {"id_token_signing_alg_values_supported": "RS256"},
])
def test_C9_a_discovery_document_we_cannot_use_safely_is_refused(changes: dict[str, Any]
                                                                 ) -> None:
    with pytest.raises(DiscoveryError):
        parse_metadata(_document(**changes), expected_issuer=ISSUER)


def test_discovery_url_drops_the_issuers_terminating_slash() -> None:
    assert discovery_url("https://a.example/") == \
        "https://a.example/.well-known/openid-configuration"
    assert discovery_url("https://a.example/realms/x") == \
        "https://a.example/realms/x/.well-known/openid-configuration"


def test_provider_urls_are_https_or_loopback_http() -> None:
    assert is_provider_url("https://a.example/x")
    assert is_provider_url("http://127.0.0.1:8081/x") and is_provider_url("http://localhost/")
    assert is_provider_url("http://[::1]:80/")
    assert not is_provider_url("http://a.example/x")
    assert not is_provider_url("ftp://a.example/x")
    assert not is_provider_url("https://a.example/x#frag")


class FakeUpstream:
    """The upstream client's two methods, answering from a list (an exception is raised)."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.fetches = 0

    def request(self, url: str, **kwargs: Any) -> str:
        return url

    async def fetch_json(self, request: str, *, provider: str, what: str) -> dict[str, Any]:
        self.fetches += 1
        await asyncio.sleep(0)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, dict)
        return answer


def _discovery(upstream: FakeUpstream, clock: list[float]) -> Discovery:
    return Discovery(upstream, provider="acme", url=discovery_url(ISSUER),  # type: ignore[arg-type]
                     expected_issuer=ISSUER, cache_seconds=100, retry_seconds=10,
                     clock=lambda: clock[0])


def test_discovery_is_cached_refreshed_when_stale_and_shared_by_concurrent_logins() -> None:
    moved = _document(token_endpoint=f"{ISSUER}/v2/token")
    upstream, clock = FakeUpstream([_document(), moved]), [0.0]
    discovery = _discovery(upstream, clock)

    async def scenario() -> None:
        first = await asyncio.gather(*(discovery.metadata() for _ in range(5)))
        assert upstream.fetches == 1 and len(set(first)) == 1
        clock[0] = 100
        assert (await discovery.metadata()).token_endpoint == f"{ISSUER}/token"
        clock[0] = 101
        assert (await discovery.metadata()).token_endpoint == f"{ISSUER}/v2/token"
        assert upstream.fetches == 2

    asyncio.run(scenario())


def test_a_failed_refresh_keeps_the_last_good_document_and_retries_later() -> None:
    down = UpstreamError("down", provider="acme", log_detail="discovery: HTTP 500")
    upstream = FakeUpstream([_document(), down, _document(issuer="https://evil.example"),
                             _document()])
    clock = [0.0]
    discovery = _discovery(upstream, clock)

    async def scenario() -> None:
        good = await discovery.metadata()
        clock[0] = 200
        assert await discovery.metadata() == good  # the refresh failed: the last good one
        clock[0] = 205
        assert await discovery.metadata() == good  # within retry_seconds: no new fetch
        assert upstream.fetches == 2
        clock[0] = 211
        assert await discovery.metadata() == good  # another issuer now: refused, kept
        clock[0] = 222
        assert await discovery.metadata() == good
        assert upstream.fetches == 4

    asyncio.run(scenario())


def test_C9_without_a_good_document_every_failure_is_a_503() -> None:
    for answer in (UpstreamError("down", provider="acme"), _document(issuer="https://x.example")):
        discovery = _discovery(FakeUpstream([answer]), [0.0])
        with pytest.raises(ProviderUnavailable) as caught:
            asyncio.run(discovery.metadata())
        assert caught.value.status == 503
        assert caught.value.provider == "acme"


# -- claims to identity -------------------------------------------------------------------------


def test_email_verified_counts_as_true_or_the_string_true_only() -> None:
    assert claimed_true(True) and claimed_true("true") and claimed_true("TRUE")
    for value in (False, "false", "1", 1, None, "yes", [True]):
        assert not claimed_true(value), value


def test_the_email_and_its_verification_come_from_one_answer() -> None:
    id_claims = {"sub": "s1", "email": "a@example.com", "name": "A"}  # no email_verified
    userinfo = {"sub": "s1", "email": "b@example.com", "email_verified": True}
    identity = identity_from_claims("acme", id_claims, userinfo)
    assert identity.sub == "acme:s1"
    assert identity.email == "a@example.com" and identity.email_verified is False
    from_userinfo = identity_from_claims("acme", {"sub": "s1"}, userinfo)
    assert from_userinfo.email == "b@example.com" and from_userinfo.email_verified is True


def test_basic_authorization_form_encodes_the_client_id_and_secret() -> None:
    # RFC 6749 2.3.1: "a:b" and "c d" are urlencoded before base64.
    assert basic_authorization("a:b", "c d") == "Basic YSUzQWI6Yytk"


def test_at_hash_uses_the_hash_its_algorithm_names() -> None:
    assert left_half_hash("token", "RS256") == left_half_hash("token", "ES256")
    assert len(left_half_hash("token", "RS384")) == 32  # 24 bytes
    assert len(left_half_hash("token", "PS512")) == 43  # 32 bytes


# -- Microsoft -----------------------------------------------------------------------------------

CONTOSO = "72f988bf-86f1-41af-91ab-2d7cd011db47"
MICROSOFT = {"providers.microsoft.client_id": "00001111-aaaa-2222-bbbb-3333cccc4444",
             "providers.microsoft.client_secret": CLIENT_SECRET}


def test_microsoft_loads_with_its_defaults_and_a_tenant(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path, MICROSOFT), {})
    microsoft = settings.providers.microsoft
    assert microsoft is not None
    assert (microsoft.tenant, microsoft.authority) == ("common",
                                                       "https://login.microsoftonline.com")
    single = load_settings(write_config(tmp_path, {
        **MICROSOFT, "providers.microsoft.tenant": CONTOSO}), {}).providers.microsoft
    assert single is not None and single.tenant == CONTOSO


@pytest.mark.parametrize(("change", "key"), [
    ({"providers.microsoft.tenant": "contoso.onmicrosoft.com"}, "providers.microsoft.tenant"),
    ({"providers.microsoft.tenant": CONTOSO.upper()}, "providers.microsoft.tenant"),
    ({"providers.microsoft.authority": "https://login.microsoftonline.com/common"},
     "providers.microsoft.authority"),
    ({"providers.microsoft.authority": "http://login.microsoftonline.com"},
     "providers.microsoft.authority"),
    ({"providers.microsoft.client_secret": None}, "providers.microsoft.client_secret"),
    ({"providers.microsoft.scopes": ["openid"]}, "providers.microsoft.scopes"),
])
def test_microsofts_section_is_checked(tmp_path: Path, change: dict[str, Any], key: str) -> None:
    assert_refused(tmp_path, {**MICROSOFT, **change}, key)


@pytest.mark.parametrize(("tenant", "tid", "admitted"), [
    ("common", CONTOSO, True),
    ("common", CONSUMERS_TENANT, True),
    ("organizations", CONTOSO, True),
    ("organizations", CONSUMERS_TENANT, False),
    ("consumers", CONSUMERS_TENANT, True),
    ("consumers", CONTOSO, False),
    (CONTOSO, CONTOSO, True),
    (CONTOSO, "aaaabbbb-0000-cccc-1111-dddd2222eeee", False),
    ("common", "{tenantid}", False),
    ("common", None, False),
])
def test_C7_microsoft_the_token_issuer_is_its_own_tenants_when_that_tenant_may_sign_in(
        tenant: str, tid: Any, admitted: bool) -> None:
    settings = MicrosoftSettings(tenant=tenant)
    expected = (f"https://login.microsoftonline.com/{tid}/v2.0",) if admitted else ()
    assert token_issuers(settings, {"tid": tid}) == expected


def test_C7_microsoft_discovery_issuers_per_tenant() -> None:
    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert discovery_issuers(MicrosoftSettings()) == (template,)
    assert discovery_issuers(MicrosoftSettings(tenant="organizations")) == (template,)
    assert discovery_issuers(MicrosoftSettings(tenant=CONTOSO)) == (
        f"https://login.microsoftonline.com/{CONTOSO}/v2.0",)
    assert discovery_issuers(MicrosoftSettings(tenant="consumers"))[1] == (
        f"https://login.microsoftonline.com/{CONSUMERS_TENANT}/v2.0")


def test_C7_microsoft_email_is_verified_only_by_xms_edov() -> None:
    claims = {"tid": CONTOSO, "oid": "00000000-0000-0000-0000-000000000001",
              "email": "ada@example.com", "email_verified": True}
    assert identity_from_microsoft(claims).email_verified is False  # no xms_edov
    assert identity_from_microsoft({**claims, "xms_edov": True}).email_verified is True
    assert identity_from_microsoft({**claims, "xms_edov": "true"}).email_verified is True
    assert identity_from_microsoft({**claims, "xms_edov": False}).email_verified is False
