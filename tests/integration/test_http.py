"""`lifecycle serve` for real: uvicorn on a loopback port, driven with httpx."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle import Engine, Outcome
from lifecycle import strategies as vs
from lifecycle._simulate import stream

from support import (
    ROOT,
    Server,
    load_examples,
    postgres_or_skip,
    public_pem,
    reset_postgres,
    sign,
    signing_key,
)

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    """The test's own signing key pair (the provider's stand-in)."""
    return signing_key()


@pytest.fixture
def public_pem_file(key: rsa.RSAPrivateKey, tmp_path: Path) -> Path:
    path = tmp_path / "videosdk-public.pem"
    path.write_bytes(public_pem(key))
    return path


@pytest.fixture
def start(tmp_path: Path, public_pem_file: Path) -> Iterator[Callable[..., Server]]:
    """Start servers (signed, with a token, on a SQLite file unless told); stop them after."""
    started: list[Server] = []

    def starter(
        *args: str, db: str | None = None, signed: bool = True, env: dict[str, str] | None = None
    ) -> Server:
        base = ["--db", db or str(tmp_path / "lifecycle.db"), "--token", TOKEN]
        base += ["--public-key", str(public_pem_file)] if signed else ["--insecure-no-signature"]
        server = Server(tmp_path, [*base, *args], env or {})
        started.append(server)
        return server

    yield starter
    for server in started:
        server.stop()


def post(client: httpx.Client, key: rsa.RSAPrivateKey, body: bytes) -> httpx.Response:
    return client.post("/webhooks", content=body, headers=sign(key, body))


def lines(payloads: Iterable[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(p) for p in payloads]


def all_pages(client: httpx.Client, path: str) -> list[dict[str, Any]]:
    """Every item of a paged endpoint, following its next links."""
    items: list[dict[str, Any]] = []
    next_url: str | None = path
    while next_url is not None:
        page = client.get(next_url, headers=AUTH).raise_for_status().json()
        items += page["items"]
        next_url = page["next"]
    return items


def summary(r: Any) -> tuple[Any, ...]:
    return (
        r.seq,
        r.outcome.value,
        r.lifecycle,
        r.webhook_type,
        r.before,
        r.after,
        list(r.missing),
        list(r.warnings),
    )


def test_signed_examples_are_classified_as_the_engine_does(
    start: Callable[..., Server],
    key: rsa.RSAPrivateKey,
) -> None:
    """The 41 signed examples get 200 and the in-memory engine's outcomes, in order."""
    server, memory = start(), Engine()
    with httpx.Client(base_url=server.url) as client:
        for body in lines(load_examples()):
            answer = post(client, key, body)
            assert 200 == answer.status_code
            got = answer.json()
            assert summary(memory.feed(body)) == (
                got["seq"],
                got["outcome"],
                got["lifecycle"],
                got["webhook_type"],
                got["before"],
                got["after"],
                got["missing"],
                got["warnings"],
            )
        served = all_pages(client, "/resources?limit=3")
        assert [(s.lifecycle, s.state) for s in memory.resources()] == [
            (s["lifecycle"], s["state"]) for s in served
        ]
        assert [a.seq for a in memory.anomalies()] == [
            a["seq"] for a in all_pages(client, "/anomalies?limit=4")
        ]


def test_a_body_signed_by_openssl_is_accepted(
    start: Callable[..., Server],
    key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """`openssl dgst -sha256 -sign` (the README's way) makes a signature the server takes."""
    private = tmp_path / "private.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    body = lines(load_examples())[0]
    signed = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(private)],
        input=body,
        capture_output=True,
        check=True,
    ).stdout
    server = start()
    answer = httpx.post(
        f"{server.url}/webhooks",
        content=body,
        headers={"videosdk-signature": base64.b64encode(signed).decode()},
    )
    assert (200, "applied") == (answer.status_code, answer.json()["outcome"])


def test_bad_signatures_are_refused_and_nothing_is_stored(
    start: Callable[..., Server],
    key: rsa.RSAPrivateKey,
) -> None:
    """Missing, non-base64 and wrong signatures get 401; the store stays empty."""
    server = start()
    body = lines(load_examples())[0]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with httpx.Client(base_url=server.url) as client:
        cases = {
            "missing": {},
            "not base64": {"videosdk-signature": "not base64!"},
            "other key": sign(other, body),
            "other body": sign(key, body + b" "),
        }
        for name, headers in cases.items():
            answer = client.post("/webhooks", content=body, headers=headers)
            assert (name, 401) == (name, answer.status_code)
            assert "signature" in answer.json()["error"]
        assert 0 == client.get("/healthz").json()["events"]
        assert 200 == post(client, key, body).status_code
        assert 1 == client.get("/healthz").json()["events"]


def test_oversized_bodies_get_413(start: Callable[..., Server], key: rsa.RSAPrivateKey) -> None:
    """Above --max-body, with or without a Content-Length, the answer is 413 and nothing is fed."""
    server = start("--max-body", "1000")
    big = orjson.dumps(
        {
            "webhookType": "session-started",
            "data": {"meetingId": "m", "sessionId": "s", "pad": "x" * 1000},
        }
    )

    def chunks() -> Iterator[bytes]:
        yield big[:500]
        yield big[500:]

    with httpx.Client(base_url=server.url) as client:
        assert 413 == post(client, key, big).status_code
        answer = client.post("/webhooks", content=chunks(), headers=sign(key, big))
        assert 413 == answer.status_code
        assert "1000 bytes" in answer.json()["error"]
        assert 0 == client.get("/healthz").json()["events"]


def test_malformed_and_unknown_payloads_are_stored_and_answered_200(
    start: Callable[..., Server],
    key: rsa.RSAPrivateKey,
    tmp_path: Path,
) -> None:
    """Bad JSON and unknown types: 200 with their outcome and reason, kept as they came."""
    server = start()
    bodies = [
        b'{"webhookType": "recording-started", "data": {',
        b"\xff\xfe not json",
        b'{"webhookType": "sip-call-started", "data": {"callId": "c1"}}',
    ]
    with httpx.Client(base_url=server.url) as client:
        answers = [post(client, key, b).json() for b in bodies]
        assert ["malformed", "malformed", "unknown_type"] == [a["outcome"] for a in answers]
        assert all(a["reason"] for a in answers)
        kept = all_pages(client, "/anomalies")
        assert [a["seq"] for a in answers] == [a["seq"] for a in kept]
    server.stop()
    with Engine.open(str(tmp_path / "lifecycle.db")) as engine:
        assert bodies == [r.payload for r in engine.log()]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_concurrent_shuffled_stream_ends_in_the_engines_states(
    start: Callable[..., Server],
    key: rsa.RSAPrivateKey,
    store: str,
) -> None:
    """1,000 shuffled events sent 32 at a time: each outcome and every final state is what
    the in-memory engine gives for the same events in the server's sequence order."""
    bodies = lines(stream(40, seed=4, shuffle=0.3, duplicate=0.05))[:1000]
    assert len(bodies) == 1000
    db = None
    if store == "postgresql":
        db = postgres_or_skip()
        reset_postgres(db)
    server = start(db=db)

    async def send_all() -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:

            async def one(body: bytes) -> dict[str, Any]:
                async with gate:
                    answer = await client.post("/webhooks", content=body, headers=sign(key, body))
                    assert 200 == answer.status_code
                    return {**answer.json(), "body": body}

            return await asyncio.gather(*(one(b) for b in bodies))

    answers = sorted(asyncio.run(send_all()), key=lambda a: a["seq"])
    assert list(range(1, 1001)) == [a["seq"] for a in answers]
    memory = Engine()
    for a in answers:
        r = memory.feed(a["body"])
        assert (r.outcome.value, r.before, r.after) == (a["outcome"], a["before"], a["after"])
    with httpx.Client(base_url=server.url) as client:
        served = all_pages(client, "/resources?limit=1000")
    assert sorted((s.lifecycle, "/".join(s.key), s.state) for s in memory.resources()) == sorted(
        (s["lifecycle"], "/".join(s["key"].values()), s["state"]) for s in served
    )


class HeldWebhook:
    """A signed webhook the server has begun to read and waits to finish.

    Its head goes out with ``Expect: 100-continue``; the server's ``100 Continue`` comes
    back only once the request is in its handler, reading the body: from then on the
    request is in flight on the server, and stays so until :meth:`finish` sends the body.
    """

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body = body
        self.headers = headers
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def hold(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = [
            "POST /webhooks HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            f"Content-Length: {len(self.body)}",
            "Expect: 100-continue",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        self._stream = reader, writer

    async def finish(self) -> tuple[int, dict[str, Any]]:
        """Send the body; the answer's status and JSON (a reset or a cut answer raises)."""
        assert self._stream is not None
        reader, writer = self._stream
        writer.write(self.body)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        assert length is not None, head
        answer = json.loads(await reader.readexactly(int(length[1])))
        writer.close()
        return int(head.split(b" ", 2)[1]), answer


async def until_refused(port: int) -> None:
    """Return once the server accepts no new connection (it has begun to stop)."""
    async with asyncio.timeout(30):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except (ConnectionRefusedError, ConnectionResetError):  # reset: closed as it came
                return
            writer.close()
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_every_acknowledged_webhook_survives_a_stop(
    start: Callable[..., Server],
    key: rsa.RSAPrivateKey,
    tmp_path: Path,
    sig: int,
) -> None:
    """Stopped under load once 50 webhooks were answered (gracefully or killed), then
    restarted: every webhook answered 200 is in the store, and the store is consistent.
    After a SIGTERM, every request in flight when it came is answered 200 and stored."""
    server = start()
    signed = [(b, sign(key, b)) for b in lines(stream(30, seed=9))[:600]]  # CPU work, done first
    held = [HeldWebhook(b, h) for b, h in signed[:8]] if sig == signal.SIGTERM else []
    load = signed[len(held) :]

    async def send_all() -> tuple[list[int], list[int], list[tuple[int, dict[str, Any]]]]:
        acked: list[int] = []
        statuses: list[int] = []
        enough = asyncio.Event()
        gate = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

            async def one(body: bytes, headers: dict[str, str]) -> None:
                async with gate:
                    try:
                        answer = await client.post("/webhooks", content=body, headers=headers)
                    except httpx.TransportError:  # sent as it stopped: refused or never read
                        return
                statuses.append(answer.status_code)
                if answer.status_code == 200:
                    acked.append(answer.json()["seq"])
                    if len(acked) >= 50:
                        enough.set()

            await asyncio.gather(*(h.hold(server.port) for h in held))
            sending = [asyncio.create_task(one(b, h)) for b, h in load]
            async with asyncio.timeout(60):
                await enough.wait()
            server.proc.send_signal(sig)
            finished = []
            if held:
                await until_refused(server.port)
                finished = await asyncio.gather(*(h.finish() for h in held))
            await asyncio.gather(*sending)
        return acked, statuses, finished

    acked, statuses, finished = asyncio.run(send_all())
    server.stop()
    assert len(acked) >= 50
    assert {200} == set(statuses)
    assert [200] * len(held) == [status for status, _ in finished]
    again = start()
    with httpx.Client(base_url=again.url) as client:
        stored = {a["seq"] for a in all_pages(client, "/anomalies?limit=1000")}
        events = client.get("/healthz").json()["events"]
    with Engine.open(str(tmp_path / "lifecycle.db")) as engine:
        logged = {r.seq: r.payload for r in engine.log()}
        assert set(acked) <= set(logged)
        assert [h.body for h in held] == [logged.get(answer["seq"]) for _, answer in finished]
        assert {a.seq for a in engine.anomalies()} == stored
        assert engine.rebuild() == []
    assert events == max(logged)


def test_read_endpoints_need_the_token(start: Callable[..., Server]) -> None:
    """Without or with a wrong bearer token, reads get 401; /healthz and webhooks do not."""
    server = start(signed=False)
    with httpx.Client(base_url=server.url) as client:
        for path in [
            "/resources",
            "/anomalies",
            "/sessions/s1",
            "/resources/session/m/s",
            "/metrics",
        ]:
            assert 401 == client.get(path).status_code
            assert 401 == client.get(path, headers={"Authorization": "Bearer nope"}).status_code
            assert client.get(path, headers=AUTH).status_code in (200, 404)
        assert 200 == client.get("/healthz").status_code
        assert 200 == client.post("/webhooks", content=b"{}").status_code


def test_status_session_and_errors(start: Callable[..., Server]) -> None:
    """One resource with its history, a whole session, and named 400/404 errors."""
    server = start(signed=False)
    ids = {"meetingId": "m1", "sessionId": "s1"}
    events = [
        {"webhookType": "session-started", "data": ids},
        {"webhookType": "participant-joined", "data": {**ids, "participantId": "p1"}},
        {"webhookType": "participant-joined", "data": {**ids, "participantId": "p2"}},
        {"webhookType": "recording-starting", "data": ids},
        {"webhookType": "recording-started", "data": ids},
    ]
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        for body in lines(events):
            assert 200 == client.post("/webhooks", content=body).status_code
        status = client.get("/resources/recording/m1/s1").json()
        assert ("started", ["recording-starting", "recording-started"]) == (
            status["state"],
            [h["webhook_type"] for h in status["history"]],
        )
        session = client.get("/sessions/s1").json()
        assert ("m1", "started") == (session["meetingId"], session["session"]["state"])
        assert {"participant": ["p1", "p2"], "recording": ["s1"]} == {
            lc: [r["key"].get("participantId", r["key"]["sessionId"]) for r in found]
            for lc, found in session["resources"].items()
        }
        for path, status_code, words in [
            ("/resources/recording/m1/nope", 404, "no recording m1/nope"),
            ("/resources/recording/m1", 404, "meetingId/sessionId"),
            ("/resources/door/m1", 400, "unknown lifecycle 'door'"),
            ("/resources?limit=5000", 400, "limit"),
            ("/resources?offset=x", 400, "offset must be an integer"),
            ("/anomalies?outcome=weird", 400, "unknown outcome 'weird'"),
            ("/sessions/nope", 404, "no session nope"),
        ]:
            answer = client.get(path)
            assert (path, status_code) == (path, answer.status_code)
            assert words in answer.json()["error"]
        started = all_pages(client, "/resources?state=started&meetingId=m1")
        assert ["session", "recording"] == [s["lifecycle"] for s in started]


def test_metrics_count_webhooks_and_resources(start: Callable[..., Server]) -> None:
    """/metrics counts fed webhooks by type and outcome, and resources by state."""
    server = start(signed=False)
    ids = {"meetingId": "m1", "sessionId": "s1"}
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        for body in lines(
            [{"webhookType": "hls-starting", "data": ids}] * 2
            + [{"webhookType": "hls-stopped", "data": ids}]
        ):
            client.post("/webhooks", content=body)
        client.post("/webhooks", content=b"nope")
        text = client.get("/metrics").text
    for line in [
        'lifecycle_webhooks_total{outcome="applied",webhook_type="hls-starting"} 1.0',
        'lifecycle_webhooks_total{outcome="duplicate",webhook_type="hls-starting"} 1.0',
        'lifecycle_webhooks_total{outcome="gap",webhook_type="hls-stopped"} 1.0',
        'lifecycle_webhooks_total{outcome="malformed",webhook_type="other"} 1.0',
        'lifecycle_resources{lifecycle="hls",state="stopped"} 1.0',
        'lifecycle_resources{lifecycle="hls",state="starting"} 0.0',
    ]:
        assert line in text.splitlines()
    assert (
        'lifecycle_request_duration_seconds_count{method="POST",route="/webhooks",'
        'status="200"} 4.0' in text
    )


def test_redelivery_window_over_http(start: Callable[..., Server]) -> None:
    """With --redelivery-window, a resent body after a leave is a redelivery, not a rejoin."""
    server = start("--redelivery-window", "60", signed=False)
    who = {"meetingId": "m1", "sessionId": "s1", "participantId": "p1"}
    joined, left = lines(
        [
            {"webhookType": "participant-joined", "data": who},
            {"webhookType": "participant-left", "data": who},
        ]
    )
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        answers = [client.post("/webhooks", content=b).json() for b in (joined, left, joined)]
        assert [("applied", []), ("applied", []), ("duplicate", ["redelivery"])] == [
            (a["outcome"], a["warnings"]) for a in answers
        ]
        assert "left" == client.get("/resources/participant/m1/s1/p1").json()["state"]


def test_logs_are_json_lines_without_bodies(start: Callable[..., Server]) -> None:
    """Each request logs one JSON line (method, path, status, ms); no payload text at info."""
    server = start(signed=False)
    body = orjson.dumps(
        {"webhookType": "session-started", "data": {"meetingId": "m-secret-42", "sessionId": "s"}}
    )
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        client.post("/webhooks", content=body)
        client.get("/resources")
    server.stop()
    records = [json.loads(line) for line in server.log.read_text().splitlines()]
    requests = [r for r in records if r["message"] == "request"]
    assert [("POST", "/webhooks", 200, "applied"), ("GET", "/resources", 200, None)] == [
        (r["method"], r["path"], r["status"], r.get("outcome"))
        for r in requests
        if r["path"] != "/healthz"
    ]
    assert all(r["ms"] >= 0 for r in requests)
    assert "m-secret-42" not in server.log.read_text()


def test_a_lost_database_answers_503_and_the_retry_is_stored(
    start: Callable[..., Server],
) -> None:
    """PostgreSQL connections killed under the server: 503 (retry later), then the
    provider's retry of the same webhook is stored once."""
    url = postgres_or_skip()
    reset_postgres(url)
    import psycopg

    server = start(db=url, signed=False)
    body = orjson.dumps(
        {"webhookType": "session-started", "data": {"meetingId": "m1", "sessionId": "s1"}}
    )
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        assert 200 == client.post("/webhooks", content=lines(load_examples())[0]).status_code
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        first = client.post("/webhooks", content=body)
        assert 503 == first.status_code
        assert "retry" in first.json()["error"]
        retried = client.post("/webhooks", content=body)
        assert (200, "applied") == (retried.status_code, retried.json()["outcome"])
    with Engine.open(url) as engine:
        assert [Outcome.APPLIED, Outcome.APPLIED] == [r.outcome for r in engine.log()]


def test_openapi_document_is_served_and_kept_in_docs(start: Callable[..., Server]) -> None:
    """/openapi.json is the document in docs/openapi.json."""
    server = start(signed=False)
    kept = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert kept == httpx.get(f"{server.url}/openapi.json").json()


def test_schemathesis_finds_no_failure(start: Callable[..., Server], tmp_path: Path) -> None:
    """schemathesis, driven by the OpenAPI document, finds no server error or schema
    violation on any endpoint but the change feed's: an event stream never ends and a
    long poll may hold each request a minute (test_feed_http covers them)."""
    server = start(signed=False)
    with httpx.Client(base_url=server.url, headers=AUTH) as client:  # something to find
        for body in lines(load_examples()):
            client.post("/webhooks", content=body)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            "30",
            "--exclude-path-regex",
            "^/changes",
            "--seed",
            str(random.Random(7).randrange(10**6)),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert 0 == run.returncode, run.stdout[-4000:] + run.stderr[-2000:]


def test_settings_that_cannot_work_are_refused(public_pem_file: Path) -> None:
    """No key without --insecure-no-signature, both at once, a bad or non-RSA key, a public
    address without a token: each a ConfigError naming the problem, before anything runs."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from lifecycle.server import ConfigError, ServerConfig, create_app

    pem = public_pem_file.read_bytes()
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for config, words in [
        (ServerConfig(), "--insecure-no-signature"),
        (ServerConfig(public_key=pem, insecure_no_signature=True), "contradict"),
        (ServerConfig(public_key=b"not a key"), "not a PEM public key"),
        (ServerConfig(public_key=ec_pem), "must be an RSA key"),
        (ServerConfig(public_key=pem, host="0.0.0.0"), "without a token"),
        (ServerConfig(public_key=pem, max_body=0), "--max-body"),
        (ServerConfig(public_key=pem, redelivery_window=-1), "--redelivery-window"),
    ]:
        with pytest.raises(ConfigError, match=words):
            create_app(config)
    for ok in [
        ServerConfig(public_key=pem, host="0.0.0.0", token="t"),
        ServerConfig(public_key=pem, host="0.0.0.0", public_read=True),
        ServerConfig(insecure_no_signature=True, host="::1"),
    ]:
        create_app(ok)


def as_body(payload: Any) -> bytes:
    """A fed payload as an HTTP body: bytes as they are, text encoded, the rest as JSON."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)


@pytest.fixture(scope="module")
def shared(
    key: rsa.RSAPrivateKey,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, Engine]]:
    """One signed server for the properties, and an in-memory engine fed what it was fed."""
    tmp = tmp_path_factory.mktemp("shared")
    pem = tmp / "public.pem"
    pem.write_bytes(public_pem(key))
    server = Server(tmp, ["--db", str(tmp / "lifecycle.db"), "--public-key", str(pem)])
    yield server, Engine()
    server.stop()


@given(stream=vs.streams())
@settings(max_examples=25, deadline=None)
def test_any_stream_is_answered_as_the_engine_classifies_it(
    shared: tuple[Server, Engine],
    key: rsa.RSAPrivateKey,
    stream: list[Any],
) -> None:
    """Whatever the signed bodies, each is answered 200 with the seq, outcome, state change
    and warnings the in-memory engine gives the same bytes."""
    server, memory = shared
    with httpx.Client(base_url=server.url) as client:
        for body in map(as_body, stream):
            answer = post(client, key, body)
            assert 200 == answer.status_code
            got, r = answer.json(), memory.feed(body)
            assert (r.seq, r.outcome.value, r.before, r.after, list(r.warnings)) == (
                got["seq"],
                got["outcome"],
                got["before"],
                got["after"],
                got["warnings"],
            )


@given(body=st.binary(max_size=300), signature=st.binary(min_size=1, max_size=300))
@settings(max_examples=50, deadline=None)
def test_no_forged_signature_gets_in(
    shared: tuple[Server, Engine],
    body: bytes,
    signature: bytes,
) -> None:
    """A signature not made with the key is refused (401), whatever the body and bytes."""
    server, _ = shared
    with httpx.Client(base_url=server.url) as client:
        before = client.get("/healthz").json()["events"]
        answer = client.post(
            "/webhooks",
            content=body,
            headers={"videosdk-signature": base64.b64encode(signature).decode()},
        )
        assert 401 == answer.status_code
        assert before == client.get("/healthz").json()["events"]


def test_two_receivers_share_one_postgresql_state(
    start: Callable[..., Server],
    key: rsa.RSAPrivateKey,
) -> None:
    """Two servers on one PostgreSQL database, fed concurrently: every event logged once,
    the log replays to the same outcomes, and a redelivery to the other receiver is caught."""
    url = postgres_or_skip()
    reset_postgres(url)
    servers = [start("--redelivery-window", "300", db=url) for _ in range(2)]
    bodies = lines(stream(20, seed=11, shuffle=0.2))[:600]

    async def send_all() -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(16)
        clients = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers]

        async def one(i: int, body: bytes) -> dict[str, Any]:
            async with gate:
                answer = await clients[i % 2].post(
                    "/webhooks", content=body, headers=sign(key, body)
                )
                assert 200 == answer.status_code
                return dict(answer.json())

        try:
            return await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        finally:
            for client in clients:
                await client.aclose()

    answers = asyncio.run(send_all())
    with Engine.open(url) as engine:
        logged = engine.log()
        assert sorted(a["seq"] for a in answers) == [r.seq for r in logged]
        replay = Engine(redelivery_window=300)
        for r in logged:
            again = replay.feed(r.payload)
            assert (r.outcome, r.after, r.warnings) == (again.outcome, again.after, again.warnings)
        assert engine.rebuild() == []
    with httpx.Client(base_url=servers[1].url) as client:  # receiver 0 had the first body
        again = post(client, key, bodies[0]).json()
    assert ("duplicate", ["redelivery"]) == (again["outcome"], again["warnings"])
