"""Attacks on the input surface, against a real `avmon serve` with real targets on
loopback (DESIGN.md section 8): a real redis-server as the injection target, a listener
that records who connected, an HTTP server that redirects and serves HLS.

Loopback has many addresses: the allowed web server listens on 127.0.0.2, the recorder
("an internal host") on 127.0.0.3. Each attempt is refused with a 422 naming ``url``, or
-- where only the connection can refuse it -- the recorder records no connection.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import ClipFactory
from tests.integration.cluster import RedisServer
from tests.integration.service_proc import EventFeed, Hooks, Service, free_port, wait_for

WEB = "127.0.0.2"
INTERNAL = "127.0.0.3"
PASSWORD = "S3cretPW9"
TOKEN = "T0kenXYZ7"


class Recorder:
    """A TCP listener on an internal address that records every connection."""

    def __init__(self, host: str = INTERNAL) -> None:
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[float, Any]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.seen.append((time.time(), peer))
            conn.close()

    def close(self) -> None:
        self.sock.close()


class Web:
    """An allowed HTTP server: redirects (``/go?to=URL``), an HLS playlist whose second
    segment is on the internal host, and one real MPEG-TS segment."""

    def __init__(self, segment: bytes, internal: str) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path.startswith("/go?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path[len("/go?to=") :])
                    self.end_headers()
                    return
                if self.path == "/live.m3u8":
                    body = (
                        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n"
                        "#EXT-X-MEDIA-SEQUENCE:0\n"
                        "#EXTINF:4.0,\nseg0.ts\n"
                        f"#EXTINF:4.0,\n{internal}/seg1.ts\n#EXT-X-ENDLIST\n"
                    ).encode()
                    kind = "application/vnd.apple.mpegurl"
                elif self.path == "/seg0.ts":
                    body, kind = segment, "video/mp2t"
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((WEB, 0), Handler)
        self.base = f"http://{WEB}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("target"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def web(make_clip: ClipFactory, recorder: Recorder) -> Iterator[Web]:
    clip, _ = make_clip("", duration=4.0, size="320x180")
    w = Web(clip.read_bytes(), f"http://{INTERNAL}:{recorder.port}")
    yield w
    w.close()


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.server.shutdown()


@pytest.fixture(scope="module")
def lax(tmp_path_factory: pytest.TempPathFactory, hooks: Hooks) -> Iterator[Service]:
    """The worst case an operator can configure: all of loopback allowed. Only the URL
    checks stand between a caller and the Redis next door."""
    svc = Service(
        tmp_path_factory.mktemp("lax"),
        AVMON_SOURCE_ALLOWLIST="127.0.0.0/8",
        AVMON_SOURCE_TIMEOUT_S="1",
        AVMON_NO_SIGNAL_S="1",
        AVMON_WEBHOOK_URLS=hooks.url,
        AVMON_WEBHOOK_SECRET="whsecret",
        AVMON_MAX_STREAMS="40",
        AVMON_MAX_SSE_SUBSCRIBERS="2",
    )
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Only the web server's address is allowed; the rest of loopback is internal."""
    svc = Service(
        tmp_path_factory.mktemp("strict"),
        AVMON_SOURCE_ALLOWLIST=f"{WEB}/32",
        AVMON_SOURCE_TIMEOUT_S="2",
        AVMON_NO_SIGNAL_S="1",
    )
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The default policy: no allowlist, the built-in denylist."""
    svc = Service(tmp_path_factory.mktemp("default"), AVMON_SOURCE_ALLOWLIST="")
    yield svc
    svc.stop()


def _post(svc: Service, url: str, name: str = "attack") -> httpx.Response:
    return httpx.post(f"{svc.base}/api/v1/streams", json={"name": name, "url": url}, timeout=10)


def _refused_naming_url(r: httpx.Response) -> None:
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["detail"]] == [["body", "url"]], r.text


# ---------------------------------------------------------------- CR/LF injection
INJECT = "\r\nINCR avmon_injected\r\n"
INJECT_ENCODED = "%0d%0aINCR%20avmon_injected%0d%0a"


def _injections(port: int) -> list[str]:
    out = []
    for scheme in ("rtsp", "http", "rtmp", "udp"):
        for payload in (INJECT, INJECT_ENCODED, "\n", "%0A", "%00", "\t", " ", "%20", "%09"):
            host = f"127.0.0.1:{port}"
            out += [
                f"{scheme}://{host}/live{payload}",  # path
                f"{scheme}://{host}/live?x=1{payload}",  # query
                f"{scheme}://u{payload}:p@{host}/live",  # user-info
                f"{scheme}://{host}{payload}/live",  # after the port
                f"{scheme}://{host}/live#{payload}",  # fragment
            ]
    return out


def test_crlf_in_any_part_of_any_scheme_is_refused_and_reaches_nothing(
    lax: Service, target: RedisServer
) -> None:
    r = redis.Redis(port=target.port)
    urls = _injections(target.port)
    for i, url in enumerate(urls):
        resp = _post(lax, url, name=f"inj-{i}")
        _refused_naming_url(resp)
        assert "control characters" in resp.text or "malformed" in resp.text, resp.text
    time.sleep(2.0)  # long enough for a reconnect, had anything been registered
    assert r.get("avmon_injected") is None
    assert httpx.get(f"{lax.base}/api/v1/streams", timeout=10).json() == []


def test_udp_url_options_that_size_buffers_or_pick_interfaces_are_refused(lax: Service) -> None:
    for query in ("fifo_size=100000000", "buffer_size=1000000000", "localaddr=10.0.0.1"):
        _refused_naming_url(_post(lax, f"udp://239.1.1.1:5000?{query}"))


# ---------------------------------------------------------------- address forms
def _forms(port: int) -> list[str]:
    return [
        f"http://[::ffff:{INTERNAL}]:{port}/",  # IPv4-mapped IPv6
        f"http://[::ffff:7f00:3]:{port}/",  # the same, in hex
        f"http://2130706435:{port}/",  # decimal 127.0.0.3
        f"http://0x7f000003:{port}/",  # hex
        f"http://0177.0.0.3:{port}/",  # octal
        f"http://127.3:{port}/",  # short form
        f"http://0.0.0.0:{port}/",
        f"http://[::]:{port}/",
        f"http://localhost:{port}/",  # a name resolving to a denied address
        f"rtsp://[::ffff:{INTERNAL}]:{port}/live",
        f"rtmp://2130706435:{port}/live",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
    ]


@pytest.mark.parametrize("policy", ["default", "strict"])
def test_denied_address_in_any_form_is_refused_and_never_contacted(
    policy: str, request: pytest.FixtureRequest, recorder: Recorder
) -> None:
    svc: Service = request.getfixturevalue(policy)
    before = len(recorder.seen)
    for i, url in enumerate(_forms(recorder.port)):
        resp = _post(svc, url, name=f"form-{i}")
        _refused_naming_url(resp)
        assert "refused by policy" in resp.text, resp.text
    time.sleep(1.0)
    assert recorder.seen[before:] == []


def test_refusals_read_the_same_whether_a_port_is_open_or_not(
    strict: Service, recorder: Recorder
) -> None:
    closed = free_port()
    open_ = _post(strict, f"rtsp://{INTERNAL}:{recorder.port}/x", name="p1").json()
    shut = _post(strict, f"rtsp://{INTERNAL}:{closed}/x", name="p2").json()
    unresolvable = _post(strict, "rtsp://no-such-host.invalid/x", name="p3").json()
    assert open_["detail"][0]["msg"] == shut["detail"][0]["msg"]
    assert open_["detail"][0]["msg"] == unresolvable["detail"][0]["msg"]


# ---------------------------------------------------------------- connect-time refusals
def test_redirect_chain_to_an_internal_host_is_not_followed(
    strict: Service, web: Web, recorder: Recorder
) -> None:
    before = len(recorder.seen)
    internal = f"http://{INTERNAL}:{recorder.port}/x"
    hop2 = f"{web.base}/go?to={internal}"
    url = f"{web.base}/go?to={hop2}"
    resp = _post(strict, url, name="redirect")
    assert resp.status_code == 201, resp.text  # the registered host is allowed
    sid = resp.json()["id"]
    assert wait_for(lambda: sum(p.startswith("/go") for p in web.requests) >= 4, 20)
    stream = httpx.get(f"{strict.base}/api/v1/streams/{sid}", timeout=10).json()
    assert stream["state"] in ("reconnecting", "down"), stream
    assert recorder.seen[before:] == []
    assert httpx.delete(f"{strict.base}/api/v1/streams/{sid}", timeout=10).status_code == 204


def test_hls_segment_on_an_internal_host_is_never_fetched(
    strict: Service, web: Web, recorder: Recorder
) -> None:
    before = len(recorder.seen)
    resp = _post(strict, f"{web.base}/live.m3u8", name="hls")
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    # The allowed segment is decoded (frames reach the detectors) ...
    assert wait_for(
        lambda: httpx.get(f"{strict.base}/api/v1/streams/{sid}", timeout=10).json()["frames"] > 0,
        30,
    ), web.requests
    # ... and the playlist is read more than once, but the internal segment never.
    assert wait_for(lambda: web.requests.count("/live.m3u8") >= 2, 30), web.requests
    assert recorder.seen[before:] == []
    assert httpx.delete(f"{strict.base}/api/v1/streams/{sid}", timeout=10).status_code == 204


# ---------------------------------------------------------------- secrets
def test_credentials_never_leave_in_any_output(lax: Service, hooks: Hooks) -> None:
    feed = EventFeed(lax.base)
    dead = free_port()  # nothing listens: the stream goes down, no_signal is raised
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{dead}/live?token={TOKEN}&channel=1"
    resp = _post(lax, url, name="secret-cam")
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    assert resp.json()["url"] == f"rtsp://admin:***@127.0.0.1:{dead}/live?token=***&channel=1"
    assert wait_for(lambda: any(e[2]["type"] == "no_signal" for e in feed.events), 20)
    assert wait_for(lambda: hooks.bodies, 10)
    seen = [
        resp.text,
        httpx.get(f"{lax.base}/api/v1/streams", timeout=10).text,
        httpx.get(f"{lax.base}/api/v1/streams/{sid}", timeout=10).text,
        httpx.get(f"{lax.base}/api/v1/defects", timeout=10).text,
        httpx.get(f"{lax.base}/api/v1/cluster", timeout=10).text,
        httpx.get(f"{lax.base}/metrics", timeout=10).text,
        json.dumps([e[2] for e in feed.events]),
        *(b.decode() for b in hooks.bodies),
        lax.log.read_text(),
    ]
    feed.close()
    for text in seen:
        assert PASSWORD not in text and TOKEN not in text, text[:2000]
    assert httpx.delete(f"{lax.base}/api/v1/streams/{sid}", timeout=10).status_code == 204


# ---------------------------------------------------------------- limits
def test_a_10_mb_body_gets_413(lax: Service) -> None:
    big = b'{"name": "big", "url": "' + b"a" * 10_000_000 + b'"}'
    r = httpx.post(
        f"{lax.base}/api/v1/streams",
        content=big,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413, r.text[:200]


def test_a_chunked_body_over_the_limit_gets_413(lax: Service) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "big", "url": "'
        for _ in range(200):
            yield b"a" * 10_000
        yield b'"}'

    r = httpx.post(
        f"{lax.base}/api/v1/streams",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413, r.text[:200]


def test_stream_over_max_streams_gets_429(lax: Service) -> None:
    ids = []
    try:
        for i in range(40):
            r = _post(lax, f"rtsp://127.0.0.1:{free_port()}/x", name=f"cap-{i}")
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        r = _post(lax, "rtsp://127.0.0.1:9/x", name="one-too-many")
        assert r.status_code == 429 and "AVMON_MAX_STREAMS" in r.text
    finally:
        for sid in ids:
            httpx.delete(f"{lax.base}/api/v1/streams/{sid}", timeout=10)


def test_sse_subscriber_over_the_limit_gets_429(lax: Service) -> None:
    feeds = [urllib.request.urlopen(lax.base + "/api/v1/events", timeout=10) for _ in range(2)]
    try:
        r = httpx.get(f"{lax.base}/api/v1/events", timeout=10)
        assert r.status_code == 429 and "AVMON_MAX_SSE_SUBSCRIBERS" in r.text
    finally:
        for f in feeds:
            f.close()


def test_no_traceback_in_the_logs(lax: Service, strict: Service, default: Service) -> None:
    for svc in (lax, strict, default):
        assert "Traceback" not in Path(svc.log).read_text()
