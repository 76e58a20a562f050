"""Our access JWTs: issuing, and every refusal of the verifier (SECURITY J1-J9).

Pure functions over a `KeySet` and claims, with an injected clock: no HTTP, no sleeping. Refused
tokens are forged by hand and signed with our own private key, so that each one differs from a
valid token in the single defect under test (`test_J8_complete_token_signed_by_our_key_is_accepted`
is the control that proves the forger itself makes valid tokens). The forger builds the compact
serialization itself: `jwt.encode` refuses some of the defects (a non-string `kid` or `iss`).
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import tracemalloc
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import get_default_algorithms

from gateway import jose
from gateway.config import TokenSettings
from gateway.errors import InvalidToken
from gateway.identity import Identity
from gateway.keys import KeySet, load_keyset
from gateway.tokens import (
    TokenIssuer,
    TokenPolicy,
    TokenVerifier,
    bearer_token_from_header,
    entry_size,
)

ALGORITHMS = ("EdDSA", "ES256", "RS256")
ISSUER = "https://login.example.com"
AUDIENCE = "https://app.example.com"
NOW = 1_700_000_000  # far from the wall clock: a verifier reading time.time() would notice
LIFETIME = 600
LEEWAY = 30
ACCESS_TYPE = "at+jwt"  # spelled out rather than imported: the README promises this value
ADA = Identity("google", "1234567890", email="ada@example.com", email_verified=True,
               name="Ada Lovelace", picture="https://example.com/ada.png")
MISSING = object()


# ---------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def keysets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeySet]:
    """One key set per algorithm, generated once for the module (RSA generation is slow)."""
    return {alg: load_keyset(tmp_path_factory.mktemp(alg), alg, generate_if_empty=True)
            for alg in ALGORITHMS}


@pytest.fixture
def keyset(keysets: dict[str, KeySet]) -> KeySet:
    return keysets["RS256"]


def _policy(**changes: Any) -> TokenPolicy:
    return replace(TokenPolicy(ISSUER, (AUDIENCE,), LIFETIME, LEEWAY), **changes)


def _verifier(keyset: KeySet, policy: TokenPolicy | None = None, now: float = NOW
              ) -> TokenVerifier:
    return TokenVerifier(keyset, policy or _policy(), clock=lambda: now)


def _issue(keyset: KeySet, policy: TokenPolicy | None = None, now: float = NOW,
           identity: Identity = ADA) -> str:
    issuer = TokenIssuer(keyset, policy or _policy(), clock=lambda: now)
    return issuer.issue_access_token(identity, AUDIENCE)


def _claims(**changes: Any) -> dict[str, Any]:
    """The claims of a token valid at NOW; a change to MISSING removes the claim."""
    claims: dict[str, Any] = {
        "iss": ISSUER, "sub": ADA.sub, "aud": AUDIENCE, "iat": NOW, "nbf": NOW,
        "exp": NOW + LIFETIME, "jti": "3q2-7wEAAAAAAAAAAAAAAA", "auth_time": NOW, "idp": "google",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not MISSING}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: Any) -> str:
    return _b64(json.dumps(value).encode())


def _compact(header: dict[str, Any], payload: bytes, sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_segment(header)}.{_b64(payload)}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def _forge(keyset: KeySet, claims: dict[str, Any] | None = None, *,
           headers: dict[str, Any] | None = None, key: Any = None,
           algorithm: str | None = None, payload: bytes | None = None) -> str:
    """A token signed by our signing key (or `key`), with our kid and typ unless overridden.

    A header member set to MISSING is left out; `payload` replaces the JSON of `claims`.
    """
    algorithm = algorithm or keyset.signing.algorithm
    key = keyset.signing.private_key if key is None else key
    header = {"alg": algorithm, "kid": keyset.signing.kid, "typ": ACCESS_TYPE, **(headers or {})}
    header = {name: value for name, value in header.items() if value is not MISSING}
    if payload is None:
        payload = json.dumps(_claims() if claims is None else claims).encode()
    signer = get_default_algorithms()[algorithm]
    # In the canonical form our verifier asks for (J10), so that only the defect under test
    # is a defect.
    return _compact(header, payload,
                    lambda data: jose.canonical_signature(algorithm, signer.sign(data, key)))


def _refusal(verifier: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as refused:
        verifier.verify(token)
    return refused.value


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HMAC-signed by hand: PyJWT refuses to use a PEM public key as an HMAC secret."""
    return _compact(header, json.dumps(claims).encode(),
                    lambda data: hmac.new(secret, data, hashlib.sha256).digest())


# ---------------------------------------------------------------------------------------------
# J1: one algorithm, ours; signatures checked


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_J1_issued_token_round_trips(keysets: dict[str, KeySet], algorithm: str) -> None:
    keyset = keysets[algorithm]
    claims = _verifier(keyset).verify(_issue(keyset))
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "google:1234567890"
    assert claims["aud"] == AUDIENCE
    assert claims["iat"] == claims["nbf"] == claims["auth_time"] == NOW
    assert claims["exp"] == NOW + LIFETIME
    assert claims["idp"] == "google"
    assert claims["email"] == "ada@example.com"
    assert claims["email_verified"] is True


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_J1_issued_token_header_names_algorithm_kid_and_typ(keysets: dict[str, KeySet],
                                                            algorithm: str) -> None:
    keyset = keysets[algorithm]
    header = jwt.get_unverified_header(_issue(keyset))
    assert header == {"alg": algorithm, "kid": keyset.signing.kid, "typ": ACCESS_TYPE}


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_J1_alg_none_is_refused(keyset: KeySet, alg: str) -> None:
    header = {"alg": alg, "kid": keyset.signing.kid, "typ": ACCESS_TYPE}
    unsigned = f"{_segment(header)}.{_segment(_claims())}."
    assert "algorithm" in _refusal(_verifier(keyset), unsigned).reason


@pytest.mark.parametrize(("ours", "theirs"), [
    (ours, theirs) for ours in ALGORITHMS for theirs in ALGORITHMS if ours != theirs
])
def test_J1_token_validly_signed_with_another_algorithm_is_refused(
        keysets: dict[str, KeySet], ours: str, theirs: str) -> None:
    foreign = keysets[theirs].signing
    # Our kid, their algorithm and key: a valid signature, but not one we accept.
    token = _forge(keysets[ours], key=foreign.private_key, algorithm=theirs)
    jwt.decode(token, foreign.public_key, algorithms=[theirs], audience=AUDIENCE, issuer=ISSUER,
               options={"verify_exp": False, "verify_nbf": False, "verify_iat": False})
    assert "algorithm" in _refusal(_verifier(keysets[ours]), token).reason


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_J1_tampered_payload_is_refused(keysets: dict[str, KeySet], algorithm: str) -> None:
    header, _, signature = _issue(keysets[algorithm]).split(".")
    tampered = f"{header}.{_segment(_claims(sub='google:mallory'))}.{signature}"
    assert _refusal(_verifier(keysets[algorithm]), tampered).reason == "bad signature"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_J1_signature_of_another_token_is_refused(keysets: dict[str, KeySet],
                                                  algorithm: str) -> None:
    keyset = keysets[algorithm]
    ada = _issue(keyset)
    grace = _issue(keyset, identity=Identity("google", "grace"))
    spliced = ".".join([*grace.split(".")[:2], ada.split(".")[2]])
    assert _refusal(_verifier(keyset), spliced).reason == "bad signature"


# ---------------------------------------------------------------------------------------------
# J2: algorithm confusion


def _public_key_secrets(keyset: KeySet) -> dict[str, bytes]:
    public_key = keyset.signing.public_key
    return {
        "pem": public_key.public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(keyset.signing.public_jwk()).encode(),
        "jwks": json.dumps(keyset.jwks()).encode(),
    }


@pytest.mark.parametrize("form", ["pem", "jwk", "jwks"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_J2_hs256_signed_with_our_public_key_is_refused(keysets: dict[str, KeySet],
                                                        algorithm: str, form: str) -> None:
    keyset = keysets[algorithm]
    header = {"alg": "HS256", "kid": keyset.signing.kid, "typ": ACCESS_TYPE}
    token = _hs256(header, _claims(), _public_key_secrets(keyset)[form])
    assert "algorithm" in _refusal(_verifier(keyset), token).reason


# ---------------------------------------------------------------------------------------------
# J3: our key set only, nothing fetched


def test_J3_unknown_kid_is_refused(keyset: KeySet) -> None:
    token = _forge(keyset, headers={"kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"})
    assert _refusal(_verifier(keyset), token).reason == "unknown kid"


@pytest.mark.parametrize(("member", "value"), [
    ("jku", "https://evil.example/jwks.json"),
    ("x5u", "https://evil.example/cert.pem"),
    ("jwk", {"kty": "oct", "k": "c2VjcmV0"}),
    ("crit", ["exp"]),
    ("x5c", ["MIIBszCCAVmgAwIBAgIUSFqpRXHoOS5Q"]),
    ("cty", "JWT"),
])
def test_J3_forbidden_header_member_is_refused_even_with_a_valid_signature(
        keyset: KeySet, member: str, value: Any) -> None:
    _refusal(_verifier(keyset), _forge(keyset, headers={member: value}))


def test_J3_our_own_public_jwk_in_the_header_is_refused(keyset: KeySet) -> None:
    _refusal(_verifier(keyset), _forge(keyset, headers={"jwk": keyset.signing.public_jwk()}))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_J3_token_signed_by_a_foreign_key_carrying_our_kid_is_refused(
        keysets: dict[str, KeySet], algorithm: str, tmp_path: Path) -> None:
    stranger = load_keyset(tmp_path, algorithm, generate_if_empty=True)
    assert stranger.signing.kid != keysets[algorithm].signing.kid
    token = _forge(keysets[algorithm], key=stranger.signing.private_key)
    assert jwt.get_unverified_header(token)["kid"] == keysets[algorithm].signing.kid
    assert _refusal(_verifier(keysets[algorithm]), token).reason == "bad signature"


# ---------------------------------------------------------------------------------------------
# J4: time claims, issuer and audience, with a bounded leeway


def test_J4_expired_token_is_refused(keyset: KeySet) -> None:
    token = _issue(keyset, now=NOW)
    later = NOW + LIFETIME + LEEWAY + 1
    assert _refusal(_verifier(keyset, now=later), token).reason == "expired"


def test_J4_token_not_yet_valid_is_refused(keyset: KeySet) -> None:
    token = _forge(keyset, _claims(nbf=NOW + LEEWAY + 60))
    assert _refusal(_verifier(keyset), token).reason == "not yet valid"


def test_J4_token_issued_in_the_future_is_refused(keyset: KeySet) -> None:
    token = _forge(keyset, _claims(iat=NOW + LEEWAY + 60))
    assert _refusal(_verifier(keyset), token).reason == "issued in the future"


def test_J4_wrong_issuer_is_refused(keyset: KeySet) -> None:
    token = _forge(keyset, _claims(iss="https://evil.example"))
    assert _refusal(_verifier(keyset), token).reason == "wrong issuer"


def test_J4_wrong_audience_is_refused(keyset: KeySet) -> None:
    token = _forge(keyset, _claims(aud="https://other-app.example.com"))
    assert _refusal(_verifier(keyset), token).reason == "wrong audience"


def test_J4_audience_list_without_ours_is_refused(keyset: KeySet) -> None:
    token = _forge(keyset, _claims(aud=["https://a.example", "https://b.example"]))
    assert _refusal(_verifier(keyset), token).reason == "wrong audience"


def test_J4_token_10s_past_exp_is_accepted_within_leeway(keyset: KeySet) -> None:
    token = _issue(keyset, _policy(leeway=30))
    _verifier(keyset, _policy(leeway=30), now=NOW + LIFETIME + 10).verify(token)


def test_J4_token_10s_past_exp_is_refused_without_leeway(keyset: KeySet) -> None:
    token = _issue(keyset, _policy(leeway=0))
    verifier = _verifier(keyset, _policy(leeway=0), now=NOW + LIFETIME + 10)
    assert _refusal(verifier, token).reason == "expired"


def test_J4_token_from_a_clock_10s_ahead_is_accepted_within_leeway(keyset: KeySet) -> None:
    token = _issue(keyset, now=NOW + 10)
    _verifier(keyset, now=NOW).verify(token)


def test_J4_lifetime_longer_than_policy_is_refused(keyset: KeySet) -> None:
    token = _issue(keyset, _policy(lifetime=3600))
    assert _refusal(_verifier(keyset), token).reason == "lifetime longer than policy"


# ---------------------------------------------------------------------------------------------
# J5: access tokens are told apart from ID tokens


def test_J5_id_token_shape_is_refused_as_access_token(keyset: KeySet) -> None:
    id_token = _forge(keyset, _claims(nonce="n-0S6_WzA2Mj"), headers={"typ": "JWT"})
    assert "typ" in _refusal(_verifier(keyset), id_token).reason


def test_J5_token_without_typ_is_refused(keyset: KeySet) -> None:
    token = _forge(keyset, headers={"typ": MISSING})
    assert "typ" not in jwt.get_unverified_header(token)
    assert "typ" in _refusal(_verifier(keyset), token).reason


# ---------------------------------------------------------------------------------------------
# J6: unique jti, short lifetimes


def test_J6_tokens_for_the_same_identity_have_different_jti(keyset: KeySet) -> None:
    verifier = _verifier(keyset)
    jtis = {verifier.verify(_issue(keyset))["jti"] for _ in range(50)}
    assert len(jtis) == 50


def test_J6_default_access_token_lifetime_is_at_most_15_minutes() -> None:
    assert 0 < TokenSettings().access_token_lifetime <= 900


def test_J6_issued_token_lives_exactly_the_policy_lifetime(keyset: KeySet) -> None:
    claims = _verifier(keyset, _policy(lifetime=300)).verify(_issue(keyset, _policy(lifetime=300)))
    assert claims["exp"] - claims["iat"] == 300


# ---------------------------------------------------------------------------------------------
# J7: malformed tokens are refused as invalid, never with another exception

MALFORMED = {
    "empty": "",
    "one segment": "eyJhbGciOiJSUzI1NiJ9",
    "two segments": "eyJhbGciOiJSUzI1NiJ9.e30",
    "four segments": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln.c2ln",
    "only dots": "..",
    "bad base64": "!!!.***.$$$",
    "bad base64 header": "e30=$.e30.c2ln",
    "header not json": f"{_b64(b'{not json')}.e30.c2ln",
    "header json list": f"{_segment(['alg', 'RS256'])}.e30.c2ln",
    "header json string": f"{_segment('RS256')}.e30.c2ln",
    "header not utf-8": f"{_b64(bytes([0xFF, 0xFE, 0xFD]))}.e30.c2ln",
    "deeply nested header": f"{_b64(b'[' * 5000)}.e30.c2ln",
    "non-ascii": "\u00e9t\u00e9.\u00e9t\u00e9.\u00e9t\u00e9",
    "nul bytes": "\x00.\x00.\x00",
    "huge garbage": "a" * 10_240,
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_J7_malformed_token_is_refused(keyset: KeySet, token: str) -> None:
    _refusal(_verifier(keyset), token)


@pytest.mark.parametrize("payload", [b"[1, 2, 3]", b'"a string"', b"42", b"null", b"{not json",
                                     bytes([0xFF, 0xFE])])
def test_J7_signed_payload_that_is_not_a_json_object_is_refused(keyset: KeySet,
                                                                payload: bytes) -> None:
    token = _forge(keyset, payload=payload)
    assert _refusal(_verifier(keyset), token).reason.startswith("malformed")


def test_J7_validly_signed_10kb_token_is_refused(keyset: KeySet) -> None:
    token = _forge(keyset, _claims(padding="x" * 10_240))
    assert len(token) > 10_240
    _refusal(_verifier(keyset), token)


@pytest.mark.parametrize(("claim", "value"), [
    ("exp", "9999999999"),
    ("exp", True),
    ("exp", float("inf")),
    ("exp", float("nan")),
    ("exp", 10**400),
    ("exp", [NOW + LIFETIME]),
    ("nbf", "0"),
    ("nbf", float("-inf")),
    ("iat", str(NOW)),
    ("iat", {"t": NOW}),
], ids=repr)
def test_J7_time_claim_that_is_not_a_number_is_refused(keyset: KeySet, claim: str,
                                                       value: Any) -> None:
    _refusal(_verifier(keyset), _forge(keyset, _claims(**{claim: value})))


@pytest.mark.parametrize(("claim", "value"), [
    ("sub", 1234567890),
    ("jti", 42),
    ("jti", ""),
    ("iss", ["https://login.example.com"]),
    ("aud", [1, 2]),
    ("aud", {"aud": AUDIENCE}),
], ids=repr)
def test_J7_claim_of_the_wrong_type_is_refused(keyset: KeySet, claim: str, value: Any) -> None:
    _refusal(_verifier(keyset), _forge(keyset, _claims(**{claim: value})))


@pytest.mark.parametrize(("value", "expected"), [
    ("Bearer abc.def.ghi", "abc.def.ghi"),
    ("bearer abc", "abc"),
    ("BEARER abc", "abc"),
    ("  Bearer   abc  ", "abc"),
    ("Basic dXNlcjpwYXNz", None),
    ("Token abc", None),
    ("Bearerabc", None),
    ("Bearer ", None),
    ("Bearer", None),
    ("", None),
    (None, None),
])
def test_J7_bearer_token_from_header(value: str | None, expected: str | None) -> None:
    assert bearer_token_from_header(value) == expected


# ---------------------------------------------------------------------------------------------
# J8: PyJWT's pitfalls closed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_J8_complete_token_signed_by_our_key_is_accepted(keysets: dict[str, KeySet],
                                                         algorithm: str) -> None:
    # The control for every forged refusal in this file: without its one defect, it passes.
    keyset = keysets[algorithm]
    assert _verifier(keyset).verify(_forge(keyset))["sub"] == ADA.sub


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "jti", "sub", "iat", "nbf"])
def test_J8_token_without_a_required_claim_is_refused(keyset: KeySet, claim: str) -> None:
    token = _forge(keyset, _claims(**{claim: MISSING}))
    assert _refusal(_verifier(keyset), token).reason == f"missing claim {claim}"


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "jti"])
def test_J8_token_with_a_null_required_claim_is_refused(keyset: KeySet, claim: str) -> None:
    _refusal(_verifier(keyset), _forge(keyset, _claims(**{claim: None})))


def _with_kid(keyset: KeySet, kid: str) -> KeySet:
    signing = replace(keyset.signing, kid=kid)
    return replace(keyset, signing=signing, keys=(signing,))


@pytest.mark.parametrize("kid", [
    "../../etc/passwd", "kid with spaces", "kid.with.dots", "k\u00efd", "kid\n", "kid;drop",
    "kid%00", "", "k" * 129,
], ids=repr)
def test_J8_kid_outside_the_strict_character_set_is_refused(keyset: KeySet, kid: str) -> None:
    # Even a kid our own key set holds: the character set is checked before any lookup.
    odd = _with_kid(keyset, kid)
    assert "kid" in _refusal(_verifier(odd), _forge(odd)).reason


@pytest.mark.parametrize("kid", [MISSING, None, 42, ["kid"]], ids=repr)
def test_J8_kid_that_is_not_a_string_is_refused(keyset: KeySet, kid: Any) -> None:
    _refusal(_verifier(keyset), _forge(keyset, headers={"kid": kid}))


def test_J8_longest_allowed_kid_is_accepted(keyset: KeySet) -> None:
    odd = _with_kid(keyset, "A-z_9" * 25 + "abc")
    _verifier(odd).verify(_forge(odd))


# ---------------------------------------------------------------------------------------------
# J9: one answer for every refusal


def _refused_tokens(keyset: KeySet) -> dict[str, Callable[[], str]]:
    header = {"alg": "none", "kid": keyset.signing.kid, "typ": ACCESS_TYPE}
    return {
        "alg none": lambda: f"{_segment(header)}.{_segment(_claims())}.",
        "unknown kid": lambda: _forge(keyset, headers={"kid": "unknown"}),
        "jku": lambda: _forge(keyset, headers={"jku": "https://evil.example/jwks.json"}),
        "typ JWT": lambda: _forge(keyset, headers={"typ": "JWT"}),
        "expired": lambda: _forge(keyset, _claims(exp=NOW - 3600)),
        "wrong issuer": lambda: _forge(keyset, _claims(iss="https://evil.example")),
        "wrong audience": lambda: _forge(keyset, _claims(aud="https://evil.example")),
        "missing jti": lambda: _forge(keyset, _claims(jti=MISSING)),
        "malformed": lambda: "not.a.token",
        "empty": lambda: "",
    }


def test_J9_every_refusal_has_the_same_public_answer(keyset: KeySet) -> None:
    verifier = _verifier(keyset)
    refusals = [_refusal(verifier, make()) for make in _refused_tokens(keyset).values()]
    answers = {(r.status, r.error, r.description, str(r)) for r in refusals}
    public = InvalidToken.PUBLIC_DESCRIPTION
    assert answers == {(401, "invalid_token", public, public)}


def test_J9_the_reason_is_only_in_reason(keyset: KeySet) -> None:
    verifier = _verifier(keyset)
    refusals = [_refusal(verifier, make()) for make in _refused_tokens(keyset).values()]
    reasons = [r.reason for r in refusals]
    assert len(set(reasons)) == len(reasons)  # our log can tell them apart, the client cannot
    assert {r.description for r in refusals} == {InvalidToken.PUBLIC_DESCRIPTION}
    assert all(r.log_detail == r.reason for r in refusals)


# ---------------------------------------------------------------------------------------------
# C5: an email only when the provider vouches for it


def test_C5_unverified_email_is_not_claimed(keyset: KeySet) -> None:
    unverified = Identity("google", "1", email="ada@example.com", email_verified=False)
    claims = _verifier(keyset).verify(_issue(keyset, identity=unverified))
    assert "email" not in claims
    assert "email_verified" not in claims


# The cache of verified tokens: fast on a hit, never a way around a check.


def test_a_verified_token_is_served_from_the_cache(keyset: KeySet) -> None:
    verifier = _verifier(keyset)
    token = _issue(keyset)
    first = verifier.verify(token)
    verifier._keys.clear()  # a second full verification would now fail: only a hit succeeds
    assert verifier.verify(token) == first


def test_a_tampered_token_never_hits_the_cache(keyset: KeySet) -> None:
    verifier = _verifier(keyset)
    token = _issue(keyset)
    verifier.verify(token)
    middle = len(token) - 20  # a character inside the signature, whose every bit counts
    flipped = "A" if token[middle] != "A" else "B"
    assert _refusal(verifier, token[:middle] + flipped + token[middle + 1:]).reason == (
        "bad signature")
    header, _payload, signature = token.split(".")
    forged = _segment({**jwt.decode(token, options={"verify_signature": False}),
                       "sub": "google:admin"})
    assert _refusal(verifier, f"{header}.{forged}.{signature}")


def test_J4_a_cached_token_is_refused_once_expired(keyset: KeySet) -> None:
    now = [float(NOW)]
    verifier = TokenVerifier(keyset, _policy(), clock=lambda: now[0])
    token = _issue(keyset)
    verifier.verify(token)
    now[0] = NOW + LIFETIME + LEEWAY + 1
    assert _refusal(verifier, token).reason == "expired"


def test_the_cache_is_bounded(keyset: KeySet) -> None:
    verifier = TokenVerifier(keyset, _policy(), clock=lambda: NOW, cache_size=3)
    for _ in range(10):
        verifier.verify(_issue(keyset))
    assert len(verifier._verified) == 3


def test_the_cache_is_bounded_by_memory(keyset: KeySet) -> None:
    tokens = [_issue(keyset) for _ in range(10)]
    budget = sum(entry_size(token) for token in tokens[:4])
    verifier = TokenVerifier(keyset, _policy(), clock=lambda: NOW, cache_bytes=budget)
    for token in tokens:
        verifier.verify(token)
    kept = list(verifier._verified)
    assert 3 <= len(kept) <= 4 and kept == tokens[-len(kept):]  # the most recent ones
    assert verifier.cached_bytes == sum(entry_size(token) for token in kept) <= budget
    nothing = TokenVerifier(keyset, _policy(), clock=lambda: NOW, cache_bytes=0)
    nothing.verify(tokens[0])
    assert not nothing._verified and nothing.cached_bytes == 0


def test_the_cache_forgets_what_expired_and_counts_it_out(keyset: KeySet) -> None:
    now = [float(NOW)]
    verifier = TokenVerifier(keyset, _policy(), clock=lambda: now[0])
    token = _issue(keyset)
    verifier.verify(token)
    assert verifier.cached_bytes == entry_size(token)
    now[0] = NOW + LIFETIME + LEEWAY + 1
    _refusal(verifier, token)
    assert verifier.cached_bytes == 0 and not verifier._verified


def test_the_cache_estimate_is_near_what_tracemalloc_measures(keyset: KeySet) -> None:
    tokens = [_issue(keyset, identity=Identity("google", str(n), name="Ada Lovelace",
                                                 email=f"user{n}@example.com",
                                                 email_verified=True)) for n in range(301)]
    verifier = TokenVerifier(keyset, _policy(), clock=lambda: NOW)
    verifier.verify_as_json(tokens[0])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for token in tokens[1:]:
            verifier.verify_as_json("".join(token))  # a string of its own, as a request brings
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimate = verifier.cached_bytes - entry_size(tokens[0])
    assert 0.75 < estimate / used < 1.25, (estimate, used)


def test_claims_from_the_cache_are_a_copy(keyset: KeySet) -> None:
    verifier = _verifier(keyset)
    token = _issue(keyset)
    verifier.verify(token)["sub"] = "google:someone-else"
    assert verifier.verify(token)["sub"] == ADA.sub


# Refusals stay cheap: the header is checked once per spelling, a bad signature is refused
# before the payload is even parsed, a good one is checked once, and neither shortcut lets
# anything through.


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_J1_bad_signature_is_refused_before_the_payload_is_read(
        keysets: dict[str, KeySet], algorithm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keyset = keysets[algorithm]
    verifier = _verifier(keyset)
    head, payload, signature = _issue(keyset).split(".")
    other = _issue(keyset, identity=Identity("google", "someone-else")).split(".")[2]
    parsed: list[str] = []
    real_payload = jose.signed_payload
    monkeypatch.setattr(jose, "signed_payload",
                        lambda token: (parsed.append(token), real_payload(token))[1])
    checks: list[str] = []
    real_verifies = jose._verifies
    monkeypatch.setattr(jose, "_verifies",
                        lambda *args: (checks.append("verify"), real_verifies(*args))[1])
    assert _refusal(verifier, f"{head}.{payload}.{other}").reason == "bad signature"
    assert parsed == [] and len(checks) == 1
    assert verifier.verify(f"{head}.{payload}.{signature}")["sub"] == ADA.sub
    assert len(parsed) == 1 and len(checks) == 2  # a good token: one signature check, one parse


def test_J7_J10_a_signature_spelled_another_way_is_refused(keyset: KeySet) -> None:
    """base64url has one canonical spelling of given bytes; the last character's unused bits
    set, or padding, make another token string with the same signature bytes."""
    verifier = _verifier(keyset)
    token = _issue(keyset)
    verifier.verify(_issue(keyset))  # its header is now known good: the signature is checked
    head, payload, signature = token.split(".")
    assert len(signature) % 4 != 0  # RS256: 256 bytes -> 342 characters, 4 unused bits
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(signature[-1])
    respelled = signature[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"[last + 1]
    assert base64.urlsafe_b64decode(respelled + "==") == base64.urlsafe_b64decode(
        signature + "==")
    assert _refusal(verifier, f"{head}.{payload}.{respelled}").reason == "malformed signature"
    assert _refusal(verifier, f"{token}==").reason == "not a JWS compact serialization"
    assert verifier.verify(token)["sub"] == ADA.sub


def test_J3_the_checked_header_cache_is_bounded_and_never_skips_a_check(keyset: KeySet) -> None:
    verifier = _verifier(keyset)
    for spaces in range(100):  # one header, spelled 100 ways: all valid, all signed
        header = _b64(json.dumps({"alg": keyset.signing.algorithm, "kid": keyset.signing.kid,
                                  "typ": ACCESS_TYPE}, indent=spaces).encode())
        signer = get_default_algorithms()[keyset.signing.algorithm]
        signing_input = f"{header}.{_segment(_claims())}"
        signature = signer.sign(signing_input.encode(), keyset.signing.private_key)
        token = f"{signing_input}.{_b64(signature)}"
        assert verifier.verify(token)["sub"] == ADA.sub
    assert len(verifier._headers) <= 64
    # A cached header is one that passed: the same header with an ID token's typ does not.
    assert _refusal(verifier, _forge(keyset, headers={"typ": "JWT"})).reason.startswith("typ")
    assert _refusal(verifier, _forge(keyset, headers={"kid": "other"})).reason == "unknown kid"


# J10: one token, one spelling. ECDSA's (r, s) verifies as (r, n - s) too, and Ed25519's S as
# S + L: the twin would be a second token string for the same token.


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_ORDER = 2**252 + 27742317777372353535851937790883648493


def _signature_of(token: str) -> bytes:
    encoded = token.rsplit(".", 1)[1]
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def _with_signature(token: str, signature: bytes) -> str:
    return f"{token.rsplit('.', 1)[0]}.{_b64(signature)}"


def test_J10_every_es256_token_we_issue_has_a_low_s(keysets: dict[str, KeySet]) -> None:
    # OpenSSL picks s or n - s alike: half of 40 signatures would be high without the rule.
    for n in range(40):
        token = _issue(keysets["ES256"], identity=Identity("google", str(n)))
        assert int.from_bytes(_signature_of(token)[32:], "big") <= P256_ORDER // 2


def test_J10_the_high_s_twin_of_an_es256_token_is_refused(keysets: dict[str, KeySet]) -> None:
    keyset = keysets["ES256"]
    token = _issue(keyset)
    signature = _signature_of(token)
    twin_s = P256_ORDER - int.from_bytes(signature[32:], "big")
    twin = _with_signature(token, signature[:32] + twin_s.to_bytes(32, "big"))
    key = jwt.PyJWK(keyset.signing.public_jwk())
    assert key.Algorithm.verify(twin.rsplit(".", 1)[0].encode(), key.key,
                                _signature_of(twin))  # a valid ECDSA signature all the same
    verifier = _verifier(keyset)
    assert verifier.verify(token)["sub"] == ADA.sub
    assert _refusal(verifier, twin).reason == "signature not in its canonical form"


def test_J10_an_eddsa_signature_with_s_above_the_group_order_is_refused(
        keysets: dict[str, KeySet]) -> None:
    keyset = keysets["EdDSA"]
    token = _issue(keyset)
    signature = _signature_of(token)
    s = int.from_bytes(signature[32:], "little") + ED25519_ORDER
    twin = _with_signature(token, signature[:32] + s.to_bytes(32, "little"))
    assert _refusal(_verifier(keyset), twin).reason == "signature not in its canonical form"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_json_answer_is_the_claims_with_no_closing_tag(keysets: dict[str, KeySet],
                                                           algorithm: str) -> None:
    """/verify's body is the payload as signed (no second encoding), and must still say
    exactly the claims, with "</" escaped as Tornado's json_encode escapes it."""
    keyset = keysets[algorithm]
    identity = Identity("google", "ada", email="ada@example.com", email_verified=True,
                        name="</script><script>alert(1)</script> Zoë")
    claims, body = _verifier(keyset).verify_as_json(_issue(keyset, identity=identity))
    assert json.loads(body) == claims
    assert claims["name"] == "</script><script>alert(1)</script> Zoë"
    assert b"</" not in body and body.isascii()
