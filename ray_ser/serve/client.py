"""The HTTP client of the annotate endpoint (`ray-ser query`): standard library only, no Ray."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["query", "content_type_of"]

_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg",
          ".opus": "audio/ogg", ".m4a": "audio/mp4", ".webm": "audio/webm"}


def content_type_of(path: str | Path) -> str:
    return _TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def query(path: str | Path, url: str = "http://127.0.0.1:8000", token: str | None = None,
          transcript: str | None = None, speaker: str | None = None, token_env: str = "RAY_SER_TOKEN",
          timeout_s: float = 120.0) -> tuple[int, dict]:
    """POST one audio file to URL/v1/annotate; returns (HTTP status, JSON body).

    The file goes as the raw body; with a transcript or a speaker, as JSON with audio_base64. The token
    is `token`, else $token_env when set.
    """
    data = Path(path).read_bytes()
    if transcript is None and speaker is None:
        body, content_type = data, content_type_of(path)
    else:
        fields = {"audio_base64": base64.b64encode(data).decode(), "transcript": transcript, "speaker": speaker}
        body = json.dumps({k: v for k, v in fields.items() if v is not None}).encode()
        content_type = "application/json"
    headers = {"Content-Type": content_type}
    token = token or os.environ.get(token_env)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url.rstrip("/") + "/v1/annotate", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:  # Serve's own proxy answers some conditions (backpressure, timeouts) in plain text
            return err.code, {"error": raw.decode(errors="replace").strip()[:300]}
