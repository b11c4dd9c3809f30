"""Real faults for the reliability tests: an HTTP proxy in front of the real moto S3 server that makes
chosen objects fail for a while, and a way to find and kill Ray's worker processes."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class FaultyS3:
    """``http://127.0.0.1:<port>`` forwarding every request to moto, except that a read (GET or HEAD) of a
    faulty key, or a PUT under a faulty prefix, answers ``500 InternalError`` while it has failures left.
    Everything goes over real HTTP: pyarrow's AWS SDK, boto3 and the Ray workers reach it as they would S3."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.failures: dict[str, int] = {}   # "/bucket/key" -> reads still to fail
        self.write_failures: dict[str, int] = {}  # "/bucket/prefix" -> writes (PUT) still to fail
        self.failed: dict[str, int] = {}     # "/bucket/key" -> reads failed so far
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes | None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    data = b""
                    while True:  # HTTP/1.1 chunked: <hex size>[;ext]\r\n<data>\r\n ... 0\r\n\r\n
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            def _forward(self) -> None:
                body = self._body()
                path = self.path.split("?", 1)[0]
                if (self.command in ("GET", "HEAD") and proxy._should_fail(path)) or \
                        (self.command == "PUT" and proxy._should_fail_write(path)):
                    payload = b"" if self.command == "HEAD" else (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InternalError</Code>"
                        b"<Message>injected fault</Message></Error>")
                    self.send_response(500)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    # A HEAD's Content-Length is the object's size, not its (empty) body's.
                    if key.lower() not in _HOP_BY_HOP and (key.lower() != "content-length" or self.command == "HEAD"):
                        self.send_header(key, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _should_fail(self, path: str) -> bool:
        with self._lock:
            left = self.failures.get(path, 0)
            if left <= 0:
                return False
            self.failures[path] = left - 1
            self.failed[path] = self.failed.get(path, 0) + 1
            return True

    def _should_fail_write(self, path: str) -> bool:
        with self._lock:
            for prefix, left in self.write_failures.items():
                if path.startswith(prefix) and left > 0:
                    self.write_failures[prefix] = left - 1
                    self.failed[prefix] = self.failed.get(prefix, 0) + 1
                    return True
            return False

    def fail_writes(self, bucket: str, prefix: str, times: int) -> None:
        """The next `times` PUTs of keys under s3://bucket/prefix fail."""
        with self._lock:
            self.write_failures[f"/{bucket}/{prefix}"] = times

    def fail(self, bucket: str, key: str, times: int) -> None:
        """The next `times` reads of s3://bucket/key fail."""
        with self._lock:
            self.failures[f"/{bucket}/{key}"] = times

    def heal(self) -> None:
        with self._lock:
            self.failures.clear()
            self.write_failures.clear()

    def __enter__(self) -> FaultyS3:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def worker_pids(root_pid: int, title_fragment: str) -> list[int]:
    """Pids of the processes under root_pid (a driver and the local Ray cluster it started) whose title holds
    title_fragment: Ray titles an actor's worker process after its class, e.g. 'MapBatches(AsrStage)'."""
    import psutil

    found = []
    for child in psutil.Process(root_pid).children(recursive=True):
        try:
            if title_fragment in " ".join(child.cmdline()):
                found.append(child.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
