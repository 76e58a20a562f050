"""What X's two sign-in protocols share in the stand-in: the test accounts as X describes them
(one numeric id, the same in API v2 and v1.1) and the pages shown in X's name."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from gateway.dev.standins.common import (
    DEV_ACCOUNTS,
    Avatar,
    DevUser,
    OAuth2ChooserHandler,
    make_avatar,
)

BRAND = "X"
CREATED_AT = "2010-06-01T12:00:00.000Z"


@dataclass(frozen=True)
class XAccount:
    """A test account as X describes it: a numeric id, the same in API v2 and v1.1."""

    key: str
    id: str
    name: str
    username: str
    email: str | None
    email_confirmed: bool
    avatar: Avatar  # X's profile images are https URLs on pbs.twimg.com

    def v2(self, fields: set[str], scope: frozenset[str], base_url: str) -> dict[str, Any]:
        """The API v2 user object with the requested `user.fields`."""
        user: dict[str, Any] = {"id": self.id, "name": self.name, "username": self.username}
        extra: dict[str, Any] = {"profile_image_url": self.avatar.url(base_url),
                                 "created_at": CREATED_AT, "description": "", "protected": False,
                                 "verified": False, "url": ""}
        if "users.email" in scope and self.email and self.email_confirmed:
            extra["confirmed_email"] = self.email
        user.update((name, value) for name, value in extra.items() if name in fields)
        return user

    def v1(self, include_email: bool, base_url: str) -> dict[str, Any]:
        """The API v1.1 user object (GET account/verify_credentials)."""
        profile: dict[str, Any] = {
            "id": int(self.id), "id_str": self.id, "name": self.name,
            "screen_name": self.username, "location": "", "description": "", "url": None,
            "protected": False, "verified": False, "followers_count": 0, "friends_count": 0,
            "created_at": "Tue Jun 01 12:00:00 +0000 2010",
            "profile_image_url": self.avatar.url(base_url),
            "profile_image_url_https": self.avatar.url(base_url),
            "default_profile_image": False,
        }
        if include_email:
            # "If the user does not have an email address on their account, or if the email
            # address is un-verified, null will be returned."
            profile["email"] = self.email if self.email and self.email_confirmed else None
        return profile


def _account(user: DevUser, colour: str) -> XAccount:
    digest = hashlib.sha256(b"x:" + user.key.encode()).digest()
    user_id = str(10**17 + int.from_bytes(digest[:7]))  # 18 digits, as recent X ids
    return XAccount(user.key, user_id, user.name, user.username, user.email, user.email_verified,
                    make_avatar("x", user, colour))


DEV_USERS: tuple[XAccount, ...] = tuple(
    _account(user, colour)
    for user, colour in zip(DEV_ACCOUNTS, ("#0f1419", "#1d9bf0", "#536471"), strict=True)
)


class XHandler(OAuth2ChooserHandler):
    """Base of the stand-in's endpoints: X's error page and account chooser."""

    brand = BRAND

    def account_detail(self, account: XAccount) -> str:
        return account.email if account.email and account.email_confirmed \
            else "@" + account.username
