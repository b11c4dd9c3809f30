"""Bearer-token authentication for the Serve apps.

The token is read where the replica runs (a mounted secret file, or an environment variable on the
node), so it never travels through Ray's deployment configs or logs. The check reads only the
headers, before any byte of the body, and compares in constant time.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from ray_ser.config_types import ConfigError
from ray_ser.serve.http import ClientError

if TYPE_CHECKING:
    from ray_ser.config import ServeConfig

__all__ = ["TokenSource", "TokenGate", "MissingToken"]


class MissingToken(ConfigError):
    """A token is required but none was found; the message names where it was looked for, never a value."""


@dataclass(frozen=True)
class TokenSource:
    """Where the token lives: a file (wins) or an environment variable, and whether one is required."""

    env: str
    file: str | None
    required: bool

    @classmethod
    def from_config(cls, serve: ServeConfig) -> TokenSource:
        return cls(serve.token_env, serve.token_file, serve.require_token)

    def where(self) -> str:
        return f"serve.token_file ({self.file})" if self.file else f"${self.env}"

    def resolve(self) -> str | None:
        """The token, or None (no auth) when none is configured and none is required."""
        token = None
        if self.file:
            try:
                token = Path(self.file).expanduser().read_text().strip()
            except OSError as exc:
                raise MissingToken(f"serve.token_file cannot be read ({type(exc).__name__})") from None
        else:
            token = os.environ.get(self.env, "").strip()
        if not token:
            if self.required:
                raise MissingToken(f"serve.require_token is set but {self.where()} holds no token")
            return None
        return token


class TokenGate:
    """Admits a request whose Authorization header carries the token; open when there is no token."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def __repr__(self) -> str:  # never show the token, even in a debugger or a log line
        return f"TokenGate(enabled={self.enabled})"

    def check(self, headers: Mapping[str, str]) -> None:
        """Return if admitted; otherwise ClientError 401 (no token sent, or the wrong one)."""
        if self._token is None:
            return
        scheme, _, given = (headers.get("authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ClientError(401, "this endpoint needs `Authorization: Bearer <token>`",
                              {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise ClientError(401, "the bearer token is not valid",
                              {"WWW-Authenticate": 'Bearer error="invalid_token"'})
