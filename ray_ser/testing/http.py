"""HTTP as clients send it, for the Serve tests and bench/serve_latency.py: plain requests, and a raw socket
for what HTTP clients will not do politely (a chunked body that never ends, a Content-Length with no body)."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    text: str
    headers: dict[str, str]

    @property
    def json(self):
        return json.loads(self.text)


def call(url: str, body: bytes | None = None, content_type: str | None = "audio/wav", method: str | None = None,
         token: str | None = None, headers: dict | None = None, timeout: float = 120) -> Reply:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    sent = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method or ("POST" if body is not None else "GET"), parts.path or "/", body=body, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, response.read().decode(errors="replace"),
                     {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def _read_reply(sock: socket.socket, deadline: float) -> Reply:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock, deadline)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {data[:200]!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = _recv(sock, deadline)
        if not chunk:
            break
        body += chunk
    return Reply(int(lines[0].split()[1]), body.decode(errors="replace"), headers)


def _recv(sock: socket.socket, deadline: float) -> bytes:
    ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        raise TimeoutError("no response in time")
    return sock.recv(65536)


def _head(url: str, extra: dict[str, str]) -> tuple[socket.socket, bytes]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}", *(f"{k}: {v}" for k, v in
                                                                                       extra.items())]
    return sock, ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_endless_chunked(url: str, headers: dict[str, str], chunk_size: int = 64 * 1024,
                         total: int = 256 * 1024 * 1024, timeout: float = 60) -> tuple[Reply, int]:
    """Send a chunked body of up to `total` bytes, stopping as soon as the server answers.
    Returns the reply and how many body bytes had been sent by then."""
    sock, head = _head(url, {**headers, "Transfer-Encoding": "chunked"})
    deadline = time.monotonic() + timeout
    piece = f"{chunk_size:x}\r\n".encode() + b"\x00" * chunk_size + b"\r\n"
    sent = 0
    try:
        sock.sendall(head)
        sock.setblocking(False)
        pending = b""
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                break
            if writable:
                pending = pending or piece
                try:
                    n = sock.send(pending)
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
                pending = pending[n:]
                if not pending:
                    sent += chunk_size
        sock.setblocking(True)
        return _read_reply(sock, deadline), sent
    finally:
        sock.close()


def post_declared_length(url: str, headers: dict[str, str], declared: int, timeout: float = 30) -> Reply:
    """Send headers declaring `declared` body bytes, and no body: the answer must come without it."""
    sock, head = _head(url, {**headers, "Content-Length": str(declared)})
    try:
        sock.sendall(head)
        return _read_reply(sock, time.monotonic() + timeout)
    finally:
        sock.close()
