"""What verifying a token seen for the first time costs, in one process, against its floor.

    .venv/bin/python bench/cold_verify.py [--tokens 3000] [--runs 5]

For each algorithm: the time per token of `TokenVerifier.verify` over distinct tokens with the
verified cache off (every token is new), and, measured in the same run, the signature check
alone on the same tokens (`jwt.PyJWK`'s algorithm, what any verifier must do). The ratio of the
two is what everything else costs (header, claims, JSON); 1.0 would be the signature only.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jwt

from gateway.identity import Identity
from gateway.jose import check_signature
from gateway.keys import load_keyset
from gateway.tokens import TokenIssuer, TokenPolicy, TokenVerifier

ISSUER = "https://login.example.com"


def per_token_us(tokens: list[str], check: Callable[[str], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        for token in tokens:
            check(token)
        timings.append((time.perf_counter() - started) / len(tokens) * 1e6)
    return statistics.median(timings)


def _signature_only(token: str, *, key: jwt.PyJWK) -> None:
    check_signature(token, key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    policy = TokenPolicy(ISSUER, (ISSUER,), lifetime=900, leeway=30)
    print("| algorithm | verify, new token (us) | signature alone (us) | verify / signature |")
    print("|---|---|---|---|")
    for algorithm in ("RS256", "ES256", "EdDSA"):
        with tempfile.TemporaryDirectory() as keys_dir:
            keyset = load_keyset(Path(keys_dir), algorithm, generate_if_empty=True)
        issuer = TokenIssuer(keyset, policy)
        tokens = [issuer.issue_access_token(
            Identity("google", str(n), email="ada@example.com", email_verified=True,
                     name="Ada Lovelace"), ISSUER) for n in range(args.tokens)]
        key = jwt.PyJWK(keyset.signing.public_jwk())

        # A verifier that remembers one token: every token of the list is new to it.
        verifier = TokenVerifier(keyset, policy, cache_size=1)
        cold = per_token_us(tokens, verifier.verify, args.runs)
        floor = per_token_us(tokens, functools.partial(_signature_only, key=key), args.runs)
        print(f"| {algorithm} | {cold:.1f} | {floor:.1f} | {cold / floor:.2f} |")


if __name__ == "__main__":
    main()
