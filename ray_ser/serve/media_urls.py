"""Which media URLs the speech-LLM server may fetch: none by default, and never a file or a private address.

An OpenAI chat request can name its audio by URL (``audio_url``, ``image_url``, ...), which vLLM
then fetches from inside the cluster. Unchecked, any client could make the server read its own
files or reach private services (SSRF). The rule here: ``data:`` URLs (inline media) always pass;
``http(s)`` URLs pass only when their host is listed in serve.llm_allowed_media_domains and every
address it resolves to is public; every other scheme (``file://`` included) is refused. vLLM is
also told not to follow redirects (ray_ser/serve/llm_app.py), so a listed host cannot bounce the
fetch elsewhere. Plain Python, no Ray.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

__all__ = ["MediaUrlRefused", "media_urls", "check_media_url", "check_media_urls"]

Resolver = Callable[[str], list[str]]


class MediaUrlRefused(ValueError):
    """A media URL the server will not fetch; the message says why."""


def _resolve(host: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def media_urls(payload: Any, depth: int = 0) -> Iterator[str]:
    """Every string under a ``url`` or ``*_url`` key, anywhere in a request body (dicts and lists)."""
    if depth > 64:
        raise MediaUrlRefused("the request nests too deeply")
    if isinstance(payload, dict):
        for key, value in payload.items():
            if isinstance(value, str) and (key == "url" or str(key).endswith("_url")):
                yield value
            else:
                yield from media_urls(value, depth + 1)
    elif isinstance(payload, (list, tuple)):
        for value in payload:
            yield from media_urls(value, depth + 1)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_media_url(url: str, allowed_domains: Sequence[str], resolve: Resolver = _resolve) -> None:
    """Return if the server may fetch url; otherwise MediaUrlRefused naming the reason."""
    if url.lstrip()[:5].lower() == "data:":
        return
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise MediaUrlRefused(f"{scheme or 'scheme-less'} media URLs are not fetched; send the audio inline "
                              "(input_audio, or a data: URL)")
    host = (parts.hostname or "").lower().rstrip(".")
    allowed = {d.lower().rstrip(".") for d in allowed_domains}
    if not host or host not in allowed:
        listed = "no domain is listed" if not allowed else f"{host or 'this host'} is not listed"
        raise MediaUrlRefused(f"media URLs are fetched only from serve.llm_allowed_media_domains, and {listed}; "
                              "send the audio inline (input_audio, or a data: URL)")
    try:
        addresses = [host] if _is_ip(host) else resolve(host)
    except OSError:
        raise MediaUrlRefused(f"media host {host} does not resolve") from None
    if not addresses or not all(_public(a) for a in addresses):
        raise MediaUrlRefused(f"media host {host} resolves to a private or reserved address")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def check_media_urls(payload: Any, allowed_domains: Sequence[str], resolve: Resolver = _resolve) -> None:
    """Check every media URL of a request body (check_media_url)."""
    for url in media_urls(payload):
        check_media_url(url, allowed_domains, resolve)
