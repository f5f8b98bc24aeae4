"""Real servers on loopback for the fork-hazard corpus, started and stopped by the tests:
PostgreSQL (Debian's package, with and without TLS), redis-server (Debian's), moto's S3 server
behind a keep-alive proxy, a keep-alive HTTP echo server and a line echo server.

`.ci/run` installs the Debian packages; a server whose binary is missing makes its cases skip
with the reason.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import http.server
import os
import pwd
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from tests.support.rie import free_port, wait_port

LOOPBACK = "127.0.0.1"


class _Echo(http.server.BaseHTTPRequestHandler):
    """GET /echo/T answers T; anything else (sentry's envelopes) 200 with an empty object.
    HTTP/1.1: connections stay open between requests, as real servers keep them."""

    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path
        self._answer(path[len("/echo/"):].encode() if path.startswith("/echo/") else b"{}")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Threading(socketserver.ThreadingMixIn):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client gone mid-request (a worker stopped, a connection shut down) is expected here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[misc]


class _HTTPServer(_Threading, http.server.HTTPServer):
    pass


class _LineEcho(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


class _TCPServer(_Threading, socketserver.TCPServer):
    pass


@contextlib.contextmanager
def _serving(server: socketserver.BaseServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def http_echo() -> Iterator[str]:
    """host:port of a keep-alive HTTP server answering GET /echo/T with T."""
    with _serving(_HTTPServer((LOOPBACK, 0), _Echo)) as address:
        yield address


@contextlib.contextmanager
def line_echo() -> Iterator[str]:
    """host:port of a TCP server that sends every line back on the same connection."""
    with _serving(_TCPServer((LOOPBACK, 0), _LineEcho)) as address:
        yield address


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te",
               "trailer", "upgrade", "proxy-connection"}


def _keep_alive_proxy(upstream: str) -> type[http.server.BaseHTTPRequestHandler]:
    """A reverse proxy handler that keeps its clients' connections open (HTTP/1.1, every answer
    with a Content-Length) whatever the upstream does, as S3's front ends do. moto's server
    answers HTTP/1.0 and closes each connection, which would hide the hazard."""
    host, port = upstream.rsplit(":", 1)

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream_conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                upstream_conn.request(self.command, self.path, body, headers)
                reply = upstream_conn.getresponse()
                data = reply.read()
            finally:
                upstream_conn.close()
            self.send_response(reply.status, reply.reason)
            for name, value in reply.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            declared = reply.getheader("Content-Length")
            self.send_header("Content-Length", declared if self.command == "HEAD" and declared
                             else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Proxy


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()




@contextlib.contextmanager
def moto_s3(objects: dict[str, bytes]) -> Iterator[str]:
    """host:port of moto's S3 server behind a keep-alive proxy, bucket `corpus` holding
    `objects`. (moto's own server closes every connection, which would hide the hazard: real S3
    keeps them.)"""
    import boto3

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p",
                                str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 30, process)
        proxy = _HTTPServer((LOOPBACK, 0), _keep_alive_proxy(f"{LOOPBACK}:{port}"))
        with _serving(proxy) as address:
            s3 = boto3.client("s3", endpoint_url=f"http://{address}", region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
            s3.create_bucket(Bucket="corpus")
            for key, body in objects.items():
                s3.put_object(Bucket="corpus", Key=key, Body=body)
            yield address
    finally:
        _stop(process)


def redis_binary() -> str | None:
    return shutil.which("redis-server")


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """host:port of a fresh redis-server, nothing saved to disk."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", LOOPBACK, "--save", "",
                                "--appendonly", "no", "--daemonize", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 15, process)
        yield f"{LOOPBACK}:{port}"
    finally:
        _stop(process)


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, str]]:
    """(DSN without TLS, DSN with TLS) of a fresh PostgreSQL cluster on loopback: trust auth,
    a self-signed certificate, ssl on (the plain DSN says sslmode=disable)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    user = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="forkric-pg-"))
    data = root / "data"
    os.chown(root, user.pw_uid, user.pw_gid)

    def as_postgres(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    port = free_port()
    try:
        as_postgres(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
        as_postgres("openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(data / "server.key"),
                    "-out", str(data / "server.crt"))
        os.chmod(data / "server.key", 0o600)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '{LOOPBACK}'\nport = {port}\n"
                       f"unix_socket_directories = '{root}'\nssl = on\nmax_connections = 200\n"
                       "fsync = off\n")
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "30",
                    "-l", str(root / "log"), "start")
        # No client certificate: libpq would look in $HOME/.postgresql, unreadable to uid 993.
        base = (f"host={LOOPBACK} port={port} user=postgres dbname=postgres connect_timeout=5 "
                "sslcert=/nonexistent/client.crt sslkey=/nonexistent/client.key")
        yield f"{base} sslmode=disable", f"{base} sslmode=require"
    finally:
        with contextlib.suppress(Exception):
            as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
