"""Signing in to the web UI: the API key pasted once, kept in an encrypted cookie.

The browser's EventSource cannot send `Authorization`, so the UI keeps the key in a
session cookie instead: encrypted and signed (Fernet) with a secret of the deployment
(`ui.secret` in the data directory, made on first use, readable by its owner only),
HttpOnly (no script reads it) and SameSite=Strict (no other site sends it). Every request
verifies the key again with the API's own `ApiKeys.verify`, so a revoked key signs the
page out at once. Each session has a CSRF token, sent back in every form.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request
from fastapi.responses import Response

from api.http.dependencies import api_keys
from infra.keys import ApiKey, KeyRefused

COOKIE = "heddle_ui"
SIGN_IN_COOKIE = "heddle_ui_sign_in"
"""The CSRF token of the sign-in form (there is no session yet to hold it)."""
SECRET_FILE = "ui.secret"
SESSION_SECONDS = 12 * 3600
PATH = "/ui"


class SignInFirst(Exception):
    """The page needs a signed-in visitor: the UI answers with the sign-in page."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class BadForm(Exception):
    """A form came back without this session's CSRF token."""


@dataclass(frozen=True)
class Visitor:
    """Who is signed in: the key (its tenant, actor, scopes and roles) and the CSRF token
    of their session."""

    key: ApiKey
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.key.allows("write")

    @property
    def is_admin(self) -> bool:
        return self.key.allows("admin")


class Sessions:
    """Seals and opens session cookies with the deployment's UI secret."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SECRET_FILE
        self._cipher: Fernet | None = None

    def cipher(self) -> Fernet:
        """The Fernet of `ui.secret`, made (owner-readable only) when there is none."""
        if self._cipher is None:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileExistsError):  # another process made it first
                    descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(descriptor, "wb") as file:
                        file.write(Fernet.generate_key())
            self._cipher = Fernet(self.path.read_bytes().strip())
        return self._cipher

    def start(self, request: Request, response: Response, secret: str) -> None:
        """Sign the browser in with the API key `secret` (already verified)."""
        sealed = {"key": secret, "csrf": new_token()}
        token = self.cipher().encrypt(json.dumps(sealed).encode()).decode()
        set_cookie(request, response, COOKIE, token, SESSION_SECONDS)
        response.delete_cookie(SIGN_IN_COOKIE, path=PATH)

    def end(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")

    async def visitor(self, request: Request) -> Visitor:
        """The signed-in visitor, their key verified again (kept in `request.state` for
        the error pages); `SignInFirst` otherwise."""
        token = request.cookies.get(COOKIE)
        if not token:
            raise SignInFirst()
        try:
            sealed = json.loads(self.cipher().decrypt(token.encode(), ttl=SESSION_SECONDS))
            key = await api_keys(request).verify(sealed["key"])
        except (InvalidToken, ValueError, KeyError, TypeError):
            raise SignInFirst("your session ended: sign in again") from None
        except KeyRefused as refused:
            raise SignInFirst(f"{refused}: sign in with another key") from None
        request.state.key_id = key.id  # for the request log
        visitor = Visitor(key=key, csrf=str(sealed["csrf"]))
        request.state.visitor = visitor
        return visitor


def new_token() -> str:
    """A fresh CSRF token."""
    return secrets.token_urlsafe(24)


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """A cookie for the UI's pages only, out of reach of scripts and of other sites (and
    only over HTTPS when the page came over HTTPS)."""
    response.set_cookie(
        name, value, max_age=max_age, path=PATH, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def check_csrf(expected: str, sent: object) -> None:
    """`BadForm` unless the form sent back the token it was given."""
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(expected, sent):
        raise BadForm()
