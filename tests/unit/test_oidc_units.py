"""The OpenID Connect provider's plain parts, without HTTP: client configuration, secret
hashing and client authentication (C4), the authorization request (R1, R3, S2), and the grants
in the store with a controlled clock (C1, T1, T4, T5)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from config_support import write_config
from race_support import racing_a_read

from gateway.config import ClientSettings, TokenSettings, load_settings
from gateway.errors import (
    AuthorizationRedirect,
    ConfigError,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
)
from gateway.jose import left_half_hash
from gateway.oidc import grants as grants_module
from gateway.oidc.authorization import (
    AuthorizationRequest,
    CodeGrant,
    check_code_redemption,
    parse_authorization_request,
)
from gateway.oidc.claims import released_claims
from gateway.oidc.clients import (
    ClientRegistry,
    client_credentials,
    client_secret_matches,
    generate_client_secret,
    hash_client_secret,
)
from gateway.oidc.grants import NOT_REVOKED_SECONDS, Grants, new_family_id
from gateway.store.memory import MemoryStore
from gateway.transactions import pkce_s256_challenge

ISSUER = "https://login.example.com"
SECRET = generate_client_secret()
WEB = ClientSettings(client_id="web", client_secret_hash=hash_client_secret(SECRET),
                     redirect_uris=("https://app.example.com/cb",))
SPA = ClientSettings(client_id="spa", redirect_uris=("https://spa.example.com/cb",),
                     providers=("google",), scopes=("openid", "email"))
CLIENTS = ClientRegistry([WEB, SPA])
VERIFIER = "v" * 43
CHALLENGE = pkce_s256_challenge(VERIFIER)


# -- configuration ----------------------------------------------------------------------------


def _load(tmp_path: Path, clients: str, extra: dict[str, Any] | None = None) -> Any:
    path = write_config(tmp_path, extra)
    path.write_text(path.read_text() + "\n" + clients)
    return load_settings(path, {})


CLIENT_TOML = '''
[[clients]]
client_id = "web"
name = "Web"
redirect_uris = ["https://app.example.com/cb"]
post_logout_redirect_uris = ["https://app.example.com/bye"]
providers = ["google"]
'''


def test_clients_are_an_array_of_tables(tmp_path: Path) -> None:
    settings = _load(tmp_path, CLIENT_TOML + '\n[[clients]]\nclient_id = "spa"\n'
                     'redirect_uris = ["http://127.0.0.1:3000/cb"]\naudience = "api"\n')
    web, spa = settings.clients
    assert web.redirect_uris == ("https://app.example.com/cb",) and web.is_public
    assert web.token_audience == "web" and spa.token_audience == "api"
    assert spa.scopes == ("openid", "email", "profile", "offline_access")


@pytest.mark.parametrize(("toml", "key"), [
    ('[[clients]]\nclient_id = "a"\nredirect_uris = "https://x.example.com/cb#frag"',
     "clients[0].redirect_uris[0]"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = ["https://*.example.com/cb"]',
     "clients[0].redirect_uris[0]"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = ["http://app.example.com/cb"]',
     "clients[0].redirect_uris[0]"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = ["/relative"]', "clients[0].redirect_uris[0]"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = []', "clients[0].redirect_uris"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = [1]', "clients[0].redirect_uris"),
    ('[[clients]]\nredirect_uris = ["https://x.example.com/cb"]', "clients[0].client_id"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = ["https://x.example.com/cb"]\n'
     '[[clients]]\nclient_id = "a"\nredirect_uris = ["https://x.example.com/cb"]',
     "clients[1].client_id"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = ["https://x.example.com/cb"]\n'
     'providers = ["myspace"]', "clients[0].providers[0]"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = ["https://x.example.com/cb"]\n'
     'scopes = ["email"]', "clients[0].scopes"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = ["https://x.example.com/cb"]\n'
     'client_secret_hash = "plaintext"', "clients[0].client_secret_hash"),
    ('[[clients]]\nclient_id = "a"\nredirect_uris = ["https://x.example.com/cb"]\nsecret = 1',
     "clients[0].secret"),
    ('[clients]\nclient_id = "web"', "clients"),
])
def test_a_wrong_client_is_a_config_error_naming_the_key(tmp_path: Path, toml: str,
                                                         key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, toml)
    assert refused.value.key == key


def test_oidc_lifetimes_are_bounded(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, "", {"tokens.authorization_code_lifetime": 300})
    assert refused.value.key == "tokens.authorization_code_lifetime"


def test_the_example_client_of_the_shipped_configuration_is_valid(tmp_path: Path) -> None:
    """The commented `[[clients]]` of config/gateway.example.toml, uncommented, loads."""
    from config_support import EXAMPLE_CONFIG
    lines = EXAMPLE_CONFIG.read_text().splitlines()
    start = lines.index("# [[clients]]")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    settings = _load(tmp_path, "\n".join(block))
    assert settings.clients[0].client_id


# -- secrets and client authentication (C4) ---------------------------------------------------


def test_C4_secrets_are_stored_salted_and_hashed() -> None:
    first, second = hash_client_secret(SECRET), hash_client_secret(SECRET)
    assert first != second and SECRET not in first
    assert client_secret_matches(SECRET, first) and client_secret_matches(SECRET, second)
    assert not client_secret_matches(SECRET + "x", first)
    assert not client_secret_matches(SECRET, "md5$salt$00")


def test_client_secret_basic_is_form_urlencoded_inside_basic() -> None:
    encoded = base64.b64encode(b"web:a%2Bb%3Ac").decode()
    credentials = client_credentials(f"Basic {encoded}", None, None)
    assert (credentials.client_id, credentials.client_secret) == ("web", "a+b:c")
    assert credentials.method == "client_secret_basic"


def test_two_authentication_methods_at_once_are_refused() -> None:
    encoded = base64.b64encode(f"web:{SECRET}".encode()).decode()
    with pytest.raises(InvalidRequest):
        client_credentials(f"Basic {encoded}", None, SECRET)
    with pytest.raises(InvalidClient):
        client_credentials(f"Basic {encoded}", "spa", None)


@pytest.mark.parametrize(("creds", "allow_public"), [
    (("web", SECRET + "x"), True), (("web", None), True), (("nobody", SECRET), True),
    (("spa", "anything"), True), (("spa", None), False),
])
def test_C4_client_authentication_refusals(creds: tuple[str, str | None],
                                           allow_public: bool) -> None:
    client_id, secret = creds
    with pytest.raises(InvalidClient):
        CLIENTS.authenticate(client_credentials(None, client_id, secret),
                             allow_public=allow_public)


# -- the authorization request ------------------------------------------------------------------


def _parse(**params: str | list[str]) -> tuple[ClientSettings, AuthorizationRequest]:
    query = {k: v if isinstance(v, list) else [v] for k, v in params.items()}
    return parse_authorization_request(query, CLIENTS, issuer=ISSUER,
                                       enabled_providers=["google", "facebook"], now=1000.0)


GOOD = {"client_id": "spa", "redirect_uri": "https://spa.example.com/cb", "response_type": "code",
        "scope": "openid email", "state": "s1", "code_challenge": CHALLENGE,
        "code_challenge_method": "S256"}


def test_a_good_request_parses() -> None:
    client, request = _parse(**GOOD)
    assert client is SPA and request.scope == ("openid", "email")
    assert request.code_challenge == CHALLENGE and request.state == "s1"


@pytest.mark.parametrize("redirect_uri", [
    "https://spa.example.com/cb/", "https://spa.example.com/c", "https://SPA.example.com/cb",
    "https://spa.example.com/cb?x=1", "https://spa.example.com/cb#x", "https://spa.example.com",
    " https://spa.example.com/cb", ["https://spa.example.com/cb", "https://evil.example/"],
])
def test_R1_redirect_uri_must_match_exactly_or_it_is_a_page(redirect_uri: str | list[str]
                                                            ) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _parse(**{**GOOD, "redirect_uri": redirect_uri})
    assert not isinstance(refused.value, AuthorizationRedirect)


@pytest.mark.parametrize("client_id", ["nobody", "", ["spa", "web"]])
def test_R3_unknown_client_is_a_page(client_id: str | list[str]) -> None:
    with pytest.raises(InvalidRequest):
        _parse(**{**GOOD, "client_id": client_id})


@pytest.mark.parametrize(("change", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": ""}, "invalid_request"),
    ({"scope": "email"}, "invalid_scope"),
    ({"scope": "openid profile"}, "invalid_scope"),  # not among spa's scopes
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": ""}, "invalid_request"),  # no method means plain
    ({"code_challenge": "", "code_challenge_method": ""}, "invalid_request"),  # public: PKCE
    ({"code_challenge": "short"}, "invalid_request"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"provider": "facebook"}, "invalid_request"),  # not allowed for spa
    ({"request": "eyJ..."}, "request_not_supported"),
    ({"scope": ["openid", "openid email"]}, "invalid_request"),
])
def test_other_refusals_go_back_to_the_client(change: dict[str, Any], error: str) -> None:
    with pytest.raises(AuthorizationRedirect) as refused:
        _parse(**{**GOOD, **change})
    assert refused.value.error == error
    location = refused.value.location
    assert location.startswith("https://spa.example.com/cb?")
    assert "state=s1" in location and "iss=https%3A%2F%2Flogin.example.com" in location


def test_S2_confidential_clients_may_skip_pkce() -> None:
    _client, request = _parse(client_id="web", redirect_uri="https://app.example.com/cb",
                              response_type="code", scope="openid")
    assert request.code_challenge is None


def _grant(**change: Any) -> CodeGrant:
    values: dict[str, Any] = {
        "client_id": "spa", "redirect_uri": "https://spa.example.com/cb",
        "scope": ("openid", "email", "offline_access"), "nonce": "n", "code_challenge": CHALLENGE,
        "sub": "google:1", "claims": {"idp": "google", "email": "a@example.com",
                                      "email_verified": True, "name": "Ada"},
        "auth_time": 1000, "sid": "sid-1", "family_id": new_family_id(), "issued_at": 1000.0}
    return CodeGrant(**{**values, **change})


@pytest.mark.parametrize(("client_id", "redirect_uri", "verifier"), [
    ("web", "https://spa.example.com/cb", VERIFIER),
    ("spa", "https://spa.example.com/cb/", VERIFIER),
    ("spa", None, VERIFIER),
    ("spa", "https://spa.example.com/cb", None),
    ("spa", "https://spa.example.com/cb", "w" * 43),
    ("spa", "https://spa.example.com/cb", "v" * 42),
])
def test_C1_S2_a_code_is_bound_to_client_redirect_uri_and_verifier(
        client_id: str, redirect_uri: str | None, verifier: str | None) -> None:
    with pytest.raises(InvalidGrant):
        check_code_redemption(_grant(), client_id=client_id, redirect_uri=redirect_uri,
                              code_verifier=verifier)


def test_S2_a_verifier_for_a_code_without_challenge_is_refused() -> None:
    with pytest.raises(InvalidGrant):
        check_code_redemption(_grant(code_challenge=None), client_id="spa",
                              redirect_uri="https://spa.example.com/cb", code_verifier=VERIFIER)


def test_scope_releases_only_its_claims() -> None:
    profile = {"idp": "google", "email": "a@example.com", "email_verified": True, "name": "Ada"}
    assert released_claims(profile, ["openid"]) == {"idp": "google"}
    assert released_claims(profile, ["openid", "email"]) == {
        "idp": "google", "email": "a@example.com", "email_verified": True}
    assert released_claims(profile, ["openid", "profile"])["name"] == "Ada"


def test_at_hash_uses_the_hash_of_the_algorithm() -> None:
    assert len(left_half_hash("token", "RS256")) == 22  # 16 bytes
    assert len(left_half_hash("token", "EdDSA")) == 43  # 32 bytes of SHA-512


# -- grants in the store, with a controlled clock -------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _grants(**tokens: Any) -> tuple[Grants, Clock, MemoryStore]:
    clock = Clock()
    store = MemoryStore(clock=clock)
    settings = TokenSettings(**{"refresh_token_idle_lifetime": 3600,
                                "refresh_token_absolute_lifetime": 86400, **tokens})
    return Grants(store, settings, clock=clock, successor_key=b"k" * 32), clock, store


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _family(grants: Grants) -> tuple[Any, str]:
    code = await grants.issue_code(_grant())
    family = await grants.start_family(await grants.redeem_code(code), "spa")
    return family, await grants.issue_refresh_token(family)


def test_C1_a_code_works_once_and_its_replay_revokes_the_family() -> None:
    async def scenario() -> None:
        grants, _clock, _store = _grants()
        code = await grants.issue_code(_grant())
        grant = await grants.redeem_code(code)
        family = await grants.start_family(grant, "spa")
        assert await grants.live_family(family.family_id) is not None
        with pytest.raises(InvalidGrant):
            await grants.redeem_code(code)
        assert await grants.live_family(family.family_id) is None
    run(scenario())


def test_C1_a_replay_during_the_exchange_still_wins() -> None:
    async def scenario() -> None:
        grants, _clock, _store = _grants()
        code = await grants.issue_code(_grant())
        grant = await grants.redeem_code(code)
        with pytest.raises(InvalidGrant):
            await grants.redeem_code(code)  # the replay comes before the family exists
        with pytest.raises(InvalidGrant):
            await grants.start_family(grant, "spa")
    run(scenario())


def test_C1_codes_expire() -> None:
    async def scenario() -> None:
        grants, clock, _store = _grants(authorization_code_lifetime=30)
        code = await grants.issue_code(_grant())
        clock.now += 31
        with pytest.raises(InvalidGrant):
            await grants.redeem_code(code)
    run(scenario())


def test_T1_rotation_and_reuse_after_the_interval_revokes_the_family() -> None:
    async def scenario() -> None:
        grants, clock, _store = _grants(refresh_token_reuse_interval=5)
        family, first = await _family(grants)
        _f, _scope, second = await grants.rotate(first, SPA, requested_scope=None)
        clock.now += 6
        with pytest.raises(InvalidGrant):
            await grants.rotate(first, SPA, requested_scope=None)
        with pytest.raises(InvalidGrant):
            await grants.rotate(second, SPA, requested_scope=None)
        assert await grants.live_family(family.family_id) is None
    run(scenario())


def test_T4_reuse_within_the_interval_gets_the_same_successor() -> None:
    """Two tabs refreshing at once keep the family, and it does not fork: the token presented
    again in the window gets the successor the first rotation gave, no branch of its own."""
    async def scenario() -> None:
        grants, clock, _store = _grants(refresh_token_reuse_interval=5)
        _fam, first = await _family(grants)
        _f, _s, second = await grants.rotate(first, SPA, requested_scope=None)
        clock.now += 2
        _f, _s, again = await grants.rotate(first, SPA, requested_scope=None)
        assert again == second
        _f, _s, third = await grants.rotate(second, SPA, requested_scope=None)
        assert third == grants.successor(second) != second
    run(scenario())


def test_T4_successors_depend_on_the_key_and_the_token() -> None:
    async def scenario() -> None:
        grants, _clock, store = _grants()
        other = Grants(store, grants._tokens, successor_key=b"o" * 32)
        assert grants.successor("a") == grants.successor("a")
        assert grants.successor("a") != grants.successor("b")
        assert grants.successor("a") != other.successor("a")
        assert len(grants.successor("a")) == 43  # 256 bits, like a first refresh token
    run(scenario())


def test_T5_refresh_tokens_die_when_idle_and_families_at_their_absolute_lifetime() -> None:
    async def scenario() -> None:
        grants, clock, _store = _grants(refresh_token_idle_lifetime=3600,
                                        refresh_token_absolute_lifetime=7200)
        _fam, token = await _family(grants)
        clock.now += 3601
        with pytest.raises(InvalidGrant):
            await grants.rotate(token, SPA, requested_scope=None)
        _fam, token = await _family(grants)
        for _ in range(3):  # used often, never idle, until the absolute lifetime
            clock.now += 3000
            try:
                _f, _s, token = await grants.rotate(token, SPA, requested_scope=None)
            except InvalidGrant:
                assert clock.now - 3000 * 3 < 1_000_000 + 3601 + 7200
                return
        raise AssertionError("the family outlived its absolute lifetime")
    run(scenario())


def test_T5_a_refresh_never_widens_scope_and_a_refused_one_uses_nothing_up() -> None:
    async def scenario() -> None:
        grants, _clock, _store = _grants()
        _fam, token = await _family(grants)
        with pytest.raises(InvalidScope):
            await grants.rotate(token, SPA, requested_scope="openid email profile")
        _f, scope, _next = await grants.rotate(token, SPA, requested_scope="openid")
        assert scope == ("openid",)
    run(scenario())


def test_T5_another_client_cannot_refresh() -> None:
    async def scenario() -> None:
        grants, _clock, _store = _grants()
        _fam, token = await _family(grants)
        with pytest.raises(InvalidGrant):
            await grants.rotate(token, WEB, requested_scope=None)
        await grants.rotate(token, SPA, requested_scope=None)
    run(scenario())


def test_P2_ending_the_session_revokes_its_families() -> None:
    async def scenario() -> None:
        grants, _clock, _store = _grants()
        family, token = await _family(grants)
        await grants.end_session(family.sid)
        with pytest.raises(InvalidGrant):
            await grants.rotate(token, SPA, requested_scope=None)
        claims = {"jti": "j", "exp": 2_000_000, "fid": family.family_id}
        assert await grants.access_token_revoked(claims)
    run(scenario())


# -- "not revoked", remembered for a second at most (SECURITY T3) -----------------------------


def test_T3_not_revoked_is_remembered_for_under_a_second_then_asked_again() -> None:
    async def scenario() -> None:
        grants, clock, store = _grants()
        family, _ = await _family(grants)
        claims = {"jti": "j1", "exp": 2_000_000, "fid": family.family_id, "sid": family.sid}
        assert not grants.recently_not_revoked(claims)
        assert not await grants.access_token_revoked(claims)
        assert grants.recently_not_revoked(claims)
        # Another replica revokes it (a marker in the shared store, not through this one).
        elsewhere = Grants(store, grants._tokens, clock=clock, successor_key=b"k" * 32)
        await elsewhere.revoke_access_token(claims)
        clock.now += NOT_REVOKED_SECONDS - 0.01
        assert not await grants.access_token_revoked(claims)  # still within the second
        clock.now += 0.01
        assert not grants.recently_not_revoked(claims)
        assert await grants.access_token_revoked(claims)
    run(scenario())


@pytest.mark.parametrize("revocation", ["token", "family", "session"])
def test_T3_a_revocation_on_this_replica_applies_at_once(revocation: str) -> None:
    async def scenario() -> None:
        grants, _clock, _store = _grants()
        family, _ = await _family(grants)
        claims = {"jti": "j1", "exp": 2_000_000, "fid": family.family_id, "sid": family.sid}
        assert not await grants.access_token_revoked(claims)
        if revocation == "token":
            await grants.revoke_access_token(claims)
        elif revocation == "family":
            await grants.revoke_family(family.family_id, reason="test")
        else:
            await grants.end_session(family.sid)
        assert not grants.recently_not_revoked(claims)
        assert await grants.access_token_revoked(claims)
    run(scenario())


def test_T3_a_check_racing_a_revocation_here_is_not_remembered() -> None:
    """The store answered "not revoked", then this replica revoked the token before the check
    went on: that answer is stale and must not be remembered."""
    async def scenario() -> None:
        grants, _clock, store = _grants()
        claims = {"jti": "j1", "exp": 2_000_000}
        check = await racing_a_read(store, grants.access_token_revoked(claims),
                                    lambda: grants.revoke_access_token(claims))
        assert check is False  # it read the store before the revocation
        assert not grants.recently_not_revoked(claims)
        assert await grants.access_token_revoked(claims)
    run(scenario())


def test_not_revoked_answers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grants_module, "NOT_REVOKED_ENTRIES", 3)

    async def scenario() -> None:
        grants, _clock, _store = _grants()
        tokens = [{"jti": f"j{n}", "exp": 2_000_000} for n in range(4)]
        for claims in tokens:
            assert not await grants.access_token_revoked(claims)
        assert not grants.recently_not_revoked(tokens[0])  # the least recently used went
        assert all(grants.recently_not_revoked(claims) for claims in tokens[1:])
    run(scenario())


# -- the CLI ------------------------------------------------------------------------------------


def test_C4_cli_hashes_a_secret_from_stdin(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from gateway.cli import main
    monkeypatch.setattr("sys.stdin", io.StringIO(SECRET + "\n"))
    assert main(["clients", "hash-secret"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("sha256$") and SECRET not in printed
    assert client_secret_matches(SECRET, printed)


def test_C4_cli_refuses_a_short_secret(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from gateway.cli import main
    monkeypatch.setattr("sys.stdin", io.StringIO("hunter2\n"))
    assert main(["clients", "hash-secret"]) == 2
    assert "--generate" in capsys.readouterr().err


def test_cli_generates_a_secret_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main
    assert main(["clients", "hash-secret", "--generate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    secret = lines[0].removeprefix("client_secret = ")
    hashed = lines[1].removeprefix('client_secret_hash = "').rstrip('"')
    assert len(secret) >= 43 and client_secret_matches(secret, hashed)


def test_P2_a_code_exchanged_after_sign_out_is_refused() -> None:
    async def scenario() -> None:
        grants, _clock, _store = _grants()
        code = await grants.issue_code(_grant())
        await grants.end_session("sid-1")
        grant = await grants.redeem_code(code)
        with pytest.raises(InvalidGrant):
            await grants.start_family(grant, "spa")
    run(scenario())
