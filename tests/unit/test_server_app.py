"""The HTTP API in process: every route and every documented answer, through httpx's ASGI
transport (real uvicorn processes are tested in tests/integration/test_http.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette

from lifecycle import Engine
from lifecycle.server import ServerConfig, create_app, load_public_key, verify_signature
from lifecycle.stores.sqlite import SqliteStore

from support import ROOT, load_examples, public_pem, sign, signing_key

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IDS = {"meetingId": "m1", "sessionId": "s1"}
OTHER_IDS = {"meetingId": "m2", "sessionId": "s2"}

Start = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return signing_key()


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``app`` with the app's lifespan run around it (the ASGI transport runs
    requests only: without the lifespan no engine would be open)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            yield client


@pytest.fixture
async def start(tmp_path: Path, key: rsa.RSAPrivateKey) -> AsyncIterator[Start]:
    """Start apps (signed, with a token, on a SQLite file unless told); stop them after."""
    async with AsyncExitStack() as stack:

        async def starter(**options: Any) -> httpx.AsyncClient:
            settings: dict[str, Any] = {
                "db": str(tmp_path / "lifecycle.db"),
                "public_key": public_pem(key),
                "token": TOKEN,
            }
            if options.pop("signed", True) is False:
                settings.update(public_key=None, insecure_no_signature=True)
            app = create_app(ServerConfig(**{**settings, **options}))
            return await stack.enter_async_context(serving(app))

        yield starter


def body_of(webhook_type: str, **data: str) -> bytes:
    return orjson.dumps({"webhookType": webhook_type, "data": data})


SESSION = [
    body_of("session-started", **IDS),
    body_of("participant-joined", **IDS, participantId="p1"),
    body_of("participant-joined", **IDS, participantId="p2"),
    body_of("recording-starting", **IDS),
    body_of("recording-started", **IDS),
    body_of("recording-stopped", **OTHER_IDS),  # a gap: an anomaly
    body_of("hls-stopped", **IDS),  # a gap in another lifecycle
    b'{"webhookType": "recording-started", "data": {',  # malformed
]


async def feed(client: httpx.AsyncClient, bodies: list[bytes]) -> list[dict[str, Any]]:
    """Post unsigned bodies (the app runs with --insecure-no-signature); their answers."""
    answers = []
    for body in bodies:
        answer = await client.post("/webhooks", content=body)
        assert 200 == answer.status_code
        answers.append(answer.json())
    return answers


def error_of(answer: httpx.Response) -> tuple[int, str]:
    """Status and message of an error answer, which is always ``{"error": message}``."""
    assert "application/json" == answer.headers["content-type"]
    body = answer.json()
    assert ["error"] == list(body)
    return answer.status_code, body["error"]


async def events(client: httpx.AsyncClient) -> int:
    answer = await client.get("/healthz")
    assert 200 == answer.status_code
    count: int = answer.json()["events"]
    return count


async def all_pages(client: httpx.AsyncClient, path: str) -> tuple[list[Any], int]:
    """Every item of a paged endpoint following its ``next`` links; and the page count."""
    items: list[Any] = []
    pages = 0
    next_url: str | None = path
    while next_url is not None:
        answer = await client.get(next_url, headers=AUTH)
        assert 200 == answer.status_code
        items += answer.json()["items"]
        next_url = answer.json()["next"]
        pages += 1
    return items, pages


# -- POST /webhooks ------------------------------------------------------------------------


async def test_a_signed_webhook_is_stored_and_answered_with_its_outcome(
    start: Start, key: rsa.RSAPrivateKey
) -> None:
    """A signed example is answered 200 with the FeedResult, and stored."""
    client = await start()
    body = orjson.dumps(load_examples()[0])
    answer = await client.post("/webhooks", content=body, headers=sign(key, body))
    assert 200 == answer.status_code
    got = answer.json()
    assert (1, "applied") == (got["seq"], got["outcome"])
    assert {
        "seq",
        "outcome",
        "lifecycle",
        "key",
        "webhook_type",
        "before",
        "after",
        "missing",
        "warnings",
        "reason",
        "received_at",
    } == set(got)
    assert 1 == await events(client)


async def test_bad_signatures_are_refused_and_nothing_is_stored(
    start: Start, key: rsa.RSAPrivateKey
) -> None:
    """Missing, empty, non-base64 and wrong signatures: 401 naming why, nothing stored."""
    client = await start()
    body = SESSION[0]
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases = [
        ({}, "the videosdk-signature header is missing"),
        ({"videosdk-signature": ""}, "the videosdk-signature header is missing"),
        ({"videosdk-signature": "not base64!"}, "the videosdk-signature header is not base64"),
        (sign(other, body), "the signature does not match the body"),
        (sign(key, body + b" "), "the signature does not match the body"),
    ]
    for headers, message in cases:
        answer = await client.post("/webhooks", content=body, headers=headers)
        assert (401, message) == error_of(answer)
    assert 0 == await events(client)
    metrics = (await client.get("/metrics", headers=AUTH)).text
    assert 'lifecycle_webhooks_refused_total{reason="signature"} 5.0' in metrics.splitlines()


async def test_bodies_over_max_body_get_413(start: Start, key: rsa.RSAPrivateKey) -> None:
    """Over --max-body, announced by Content-Length or not, the answer is 413; nothing is fed;
    a body of exactly the limit is taken."""
    client = await start(max_body=1000)
    big = body_of("session-started", **IDS, pad="x" * 1000)

    async def chunks() -> AsyncIterator[bytes]:
        yield big[:500]
        yield big[500:]

    announced = await client.post("/webhooks", content=big, headers=sign(key, big))
    streamed = await client.post("/webhooks", content=chunks(), headers=sign(key, big))
    assert "content-length" not in streamed.request.headers
    for answer in (announced, streamed):
        assert (413, "the body is larger than 1000 bytes") == error_of(answer)
    assert 0 == await events(client)
    exact = big[:1000]  # not JSON, but within the limit: stored as malformed
    answer = await client.post("/webhooks", content=exact, headers=sign(key, exact))
    assert (200, "malformed") == (answer.status_code, answer.json()["outcome"])
    metrics = (await client.get("/metrics", headers=AUTH)).text
    assert 'lifecycle_webhooks_refused_total{reason="too_large"} 2.0' in metrics.splitlines()


async def test_malformed_and_unknown_payloads_are_stored_and_answered_200(
    start: Start, tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    """Bad JSON and unknown types: 200 with their outcome and reason, kept as they came."""
    client = await start()
    bodies = [
        b'{"webhookType": "recording-started", "data": {',
        b"\xff\xfe not json",
        b"",
        body_of("sip-call-started", callId="c1"),
    ]
    answers = [
        (await client.post("/webhooks", content=b, headers=sign(key, b))).json() for b in bodies
    ]
    assert ["malformed", "malformed", "malformed", "unknown_type"] == [
        a["outcome"] for a in answers
    ]
    assert all(a["reason"] for a in answers)
    kept, _ = await all_pages(client, "/anomalies")
    assert [a["seq"] for a in answers] == [a["seq"] for a in kept]
    with Engine.open(str(tmp_path / "lifecycle.db")) as engine:
        assert bodies == [r.payload for r in engine.log()]


# -- reads ---------------------------------------------------------------------------------


async def test_resources_filter_and_page(start: Start) -> None:
    """Filters narrow the list; pages put together give it whole, ``next`` null at the end."""
    client = await start(signed=False)
    await feed(client, SESSION)
    everything, _ = await all_pages(client, "/resources")
    assert [
        ("session", "started"),
        ("participant", "joined"),
        ("participant", "joined"),
        ("recording", "started"),
        ("recording", "stopped"),
        ("hls", "stopped"),
    ] == [(s["lifecycle"], s["state"]) for s in everything]
    assert all("history" not in s for s in everything)
    paged, pages = await all_pages(client, "/resources?limit=2")
    assert (everything, 4) == (paged, pages)  # 3 full pages, then an empty one
    first = (await client.get("/resources?limit=2&lifecycle=participant", headers=AUTH)).json()
    assert "/resources?limit=2&lifecycle=participant&offset=2" == first["next"]
    for query, expected in [
        ("lifecycle=participant", [("participant", "p1"), ("participant", "p2")]),
        ("meetingId=m2", [("recording", "s2")]),
        ("sessionId=s2", [("recording", "s2")]),
        ("state=stopped", [("recording", "s2"), ("hls", "s1")]),
        ("state=started&meetingId=m1", [("session", "s1"), ("recording", "s1")]),
        ("lifecycle=participant&offset=1", [("participant", "p2")]),
        ("lifecycle=transcription", []),
    ]:
        found, _ = await all_pages(client, f"/resources?{query}")
        assert (query, expected) == (
            query,
            [(s["lifecycle"], s["key"].get("participantId", s["key"]["sessionId"])) for s in found],
        )
    empty = (await client.get("/resources?limit=0", headers=AUTH)).json()
    assert {"items": [], "next": None} == empty


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/resources?limit=5000", "limit must be between 0 and 1000"),
        ("/resources?limit=-1", "limit must be between 0 and 1000"),
        ("/resources?offset=x", "offset must be an integer, not 'x'"),
        ("/resources?offset=99999999999999999999", "offset must be between 0 and"),
        ("/resources?lifecycle=door", "unknown lifecycle 'door'; known: session, "),
        ("/resources/door/m1", "unknown lifecycle 'door'; known: session, "),
        ("/anomalies?outcome=weird", "unknown outcome 'weird'; known: applied, "),
        ("/anomalies?lifecycle=door", "unknown lifecycle 'door'"),
        ("/anomalies?after=-3", "after must be between 0 and"),
        ("/anomalies?limit=1001", "limit must be between 0 and 1000"),
    ],
)
async def test_bad_arguments_get_400_naming_them(start: Start, path: str, message: str) -> None:
    """Each bad query argument is answered 400 with a message that names it."""
    client = await start(signed=False)
    status, error = error_of(await client.get(path, headers=AUTH))
    assert (400, True) == (status, error.startswith(message)), error


async def test_one_resource_with_its_history(start: Start) -> None:
    """A resource by its key values, with its history; 404 for an unknown key or the wrong
    number of key values."""
    client = await start(signed=False)
    await feed(client, SESSION)
    status = (await client.get("/resources/recording/m1/s1", headers=AUTH)).json()
    assert ("recording", IDS, "started") == (status["lifecycle"], status["key"], status["state"])
    assert ["recording-starting", "recording-started"] == [
        h["webhook_type"] for h in status["history"]
    ]
    participant = await client.get("/resources/participant/m1/s1/p2", headers=AUTH)
    assert "joined" == participant.json()["state"]
    for path, message in [
        ("/resources/recording/m1/nope", "no recording m1/nope"),
        (
            "/resources/recording/m1",
            "no such path: recording is keyed by meetingId/sessionId, 2 values, not 1",
        ),
        (
            "/resources/recording/m1/s1/x",
            "no such path: recording is keyed by meetingId/sessionId, 2 values, not 3",
        ),
    ]:
        assert (404, message) == error_of(await client.get(path, headers=AUTH))


async def test_anomalies_filter_and_page(start: Start) -> None:
    """Anomalies in feed order, filtered, paged by ``after``; ``next`` null at the end."""
    client = await start(signed=False)
    answers = await feed(client, SESSION)
    expected = [a["seq"] for a in answers if a["outcome"] != "applied"]
    everything, _ = await all_pages(client, "/anomalies")
    assert expected == [a["seq"] for a in everything]
    assert [6, 7, 8] == expected
    paged, pages = await all_pages(client, "/anomalies?limit=1")
    assert (everything, 4) == (paged, pages)
    first = (await client.get("/anomalies?limit=1", headers=AUTH)).json()
    assert "/anomalies?limit=1&after=6" == first["next"]
    for query, seqs in [
        ("outcome=gap", [6, 7]),
        ("outcome=malformed", [8]),
        ("lifecycle=hls", [7]),
        ("meetingId=m2", [6]),
        ("sessionId=s1", [7]),
        ("after=6", [7, 8]),
        ("outcome=illegal", []),
    ]:
        found, _ = await all_pages(client, f"/anomalies?{query}")
        assert (query, seqs) == (query, [a["seq"] for a in found])


async def test_a_session_with_everything_in_it(start: Start) -> None:
    """A session's own status and its resources grouped by lifecycle; 404 when unknown."""
    client = await start(signed=False)
    await feed(client, SESSION)
    session = (await client.get("/sessions/s1", headers=AUTH)).json()
    assert ("s1", "m1", "started") == (
        session["sessionId"],
        session["meetingId"],
        session["session"]["state"],
    )
    assert {"participant": ["p1", "p2"], "recording": ["s1"], "hls": ["s1"]} == {
        lc: [r["key"].get("participantId", r["key"]["sessionId"]) for r in found]
        for lc, found in session["resources"].items()
    }
    without_session = (await client.get("/sessions/s2", headers=AUTH)).json()
    assert ("m2", None) == (without_session["meetingId"], without_session["session"])
    assert (404, "no session nope") == error_of(await client.get("/sessions/nope", headers=AUTH))


async def test_a_session_is_paged(start: Start) -> None:
    """A big session comes in pages of ``limit`` resources, each with the session's own
    status, that together hold every resource once (it came whole, megabytes at once)."""
    client = await start(signed=False)
    await feed(client, SESSION)
    whole = (await client.get("/sessions/s1?limit=1000", headers=AUTH)).json()
    assert whole["next"] is None
    seen: list[tuple[str, str]] = []
    url: str | None = "/sessions/s1?limit=2"
    while url is not None:
        page = (await client.get(url, headers=AUTH)).json()
        assert ("m1", "started") == (page["meetingId"], page["session"]["state"])
        seen += [(lc, str(r["key"])) for lc, rs in page["resources"].items() for r in rs]
        url = page["next"]
    expected = [(lc, str(r["key"])) for lc, rs in whole["resources"].items() for r in rs]
    assert sorted(expected) == sorted(seen)
    assert len(seen) == len(set(seen)) == 4
    assert 400 == (await client.get("/sessions/s1?limit=1001", headers=AUTH)).status_code


async def test_metrics_count_webhooks_resources_and_requests(start: Start) -> None:
    """/metrics counts fed webhooks by type and outcome, resources by state, and requests."""
    client = await start(signed=False)
    await feed(
        client,
        [body_of("hls-starting", **IDS)] * 2 + [body_of("hls-stopped", **IDS), b"nope"],
    )
    await client.get("/nope")
    await client.request("PROPFIND", "/webhooks")  # a method HTTP itself does not define
    await client.request("FOO-1", "/webhooks")
    text = (await client.get("/metrics", headers=AUTH)).text
    for line in [
        'lifecycle_webhooks_total{outcome="applied",webhook_type="hls-starting"} 1.0',
        'lifecycle_webhooks_total{outcome="duplicate",webhook_type="hls-starting"} 1.0',
        'lifecycle_webhooks_total{outcome="gap",webhook_type="hls-stopped"} 1.0',
        'lifecycle_webhooks_total{outcome="malformed",webhook_type="other"} 1.0',
        'lifecycle_resources{lifecycle="hls",state="stopped"} 1.0',
        'lifecycle_resources{lifecycle="hls",state="starting"} 0.0',
        'lifecycle_request_duration_seconds_count{method="POST",route="/webhooks",'
        'status="200"} 4.0',
        'lifecycle_request_duration_seconds_count{method="GET",route="unmatched",status="404"} 1.0',
        'lifecycle_request_duration_seconds_count{method="other",route="/webhooks",'
        'status="405"} 2.0',
    ]:
        assert line in text.splitlines()


async def test_health_and_the_openapi_document(start: Start) -> None:
    """/healthz counts the events; /openapi.json is docs/openapi.json; neither needs a token."""
    client = await start(signed=False)
    assert {"status": "ok", "events": 0} == (await client.get("/healthz")).json()
    await feed(client, SESSION[:2])
    assert {"status": "ok", "events": 2} == (await client.get("/healthz")).json()
    kept = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert kept == (await client.get("/openapi.json")).json()


async def test_healthz_does_not_wait_behind_reads(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads that hold the reader's thread (half a second each, two queued) do not delay
    /healthz, which asks the writer (it waited behind them: 3.7 s behind ten big pages)."""
    client = await start(signed=False)
    await feed(client, SESSION[:1])
    read = SqliteStore.resources

    def slow(store: SqliteStore, query: Any) -> Any:
        time.sleep(0.5)
        return read(store, query)

    monkeypatch.setattr(SqliteStore, "resources", slow)
    reads = [asyncio.create_task(client.get("/resources", headers=AUTH)) for _ in range(2)]
    await asyncio.sleep(0.05)
    began = time.monotonic()
    health = await client.get("/healthz")
    took = time.monotonic() - began
    assert (200, True) == (health.status_code, took < 0.4), took
    assert [200, 200] == [r.status_code for r in await asyncio.gather(*reads)]


# -- tokens, unknown paths, methods ---------------------------------------------------------

READS = ["/resources", "/resources/session/m1/s1", "/anomalies", "/sessions/s1", "/metrics"]


async def test_reads_need_the_bearer_token(start: Start) -> None:
    """With a token set, reads without it, with another, or in another scheme get 401 and a
    WWW-Authenticate challenge; /healthz, /openapi.json and webhooks need none."""
    client = await start(signed=False)
    await feed(client, SESSION[:1])
    for path in READS:
        for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}]:
            answer = await client.get(path, headers=headers)
            assert (401, "a valid bearer token is required") == error_of(answer)
            assert 'Bearer realm="lifecycle"' == answer.headers["www-authenticate"]
        assert 200 == (await client.get(path, headers=AUTH)).status_code
    for path in ["/healthz", "/openapi.json"]:
        assert 200 == (await client.get(path)).status_code


async def test_without_a_token_reads_are_open(start: Start) -> None:
    """Without a token (loopback only), every read answers without Authorization."""
    client = await start(signed=False, token=None)
    await feed(client, SESSION[:1])
    for path in READS:
        assert 200 == (await client.get(path)).status_code


async def test_unknown_paths_and_methods_are_json_errors(start: Start) -> None:
    """404 for a path no route has, 405 (with Allow) for a method a route does not take."""
    client = await start(signed=False)
    assert (404, "Not Found") == error_of(await client.get("/nope", headers=AUTH))
    assert (404, "Not Found") == error_of(await client.post("/", headers=AUTH))
    for method, path, allowed in [
        ("GET", "/webhooks", {"POST"}),
        ("DELETE", "/webhooks", {"POST"}),
        ("POST", "/resources", {"GET", "HEAD"}),
        ("PUT", "/healthz", {"GET", "HEAD"}),
    ]:
        answer = await client.request(method, path, headers=AUTH)
        assert (405, "Method Not Allowed") == error_of(answer)
        assert allowed == set(answer.headers["allow"].split(", "))


async def test_an_unexpected_error_is_a_json_500(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bug in a handler is answered 500 with the same error shape, and raised on."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Engine, "state_counts", broken)
    app = create_app(ServerConfig(db=str(tmp_path / "x.db"), insecure_no_signature=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
            answer = await client.get("/metrics")
    assert (500, "internal server error") == error_of(answer)


async def test_an_in_memory_database_reads_what_was_fed(start: Start) -> None:
    """On ``memory://`` and ``sqlite://`` the reads see the webhooks fed (one engine)."""
    for db in ["memory://", "sqlite://"]:
        client = await start(signed=False, db=db)
        await feed(client, SESSION[:2])
        assert 2 == await events(client)
        found, _ = await all_pages(client, "/resources")
        assert 2 == len(found)


# -- a failing store -------------------------------------------------------------------------


class Database:
    """Every SQLite connection the stores open, which the test can make refuse writes or cut."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connections: list[sqlite3.Connection] = []
        self.read_only = False
        connect = SqliteStore._connect

        def recording(store: SqliteStore) -> sqlite3.Connection:
            conn = connect(store)
            conn.execute(f"PRAGMA query_only = {int(self.read_only)}")
            self.connections.append(conn)
            return conn

        monkeypatch.setattr(SqliteStore, "_connect", recording)

    def refuse_writes(self, refuse: bool) -> None:
        """Make the database refuse writes (SQLite's ``query_only``), or take them again."""
        self.read_only = refuse
        for conn in self.connections:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed after a failure
                conn.execute(f"PRAGMA query_only = {int(refuse)}")

    def cut(self) -> None:
        """Close every connection under its store, as a lost connection does."""
        for conn in self.connections:
            conn.close()


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Database:
    return Database(monkeypatch)


async def test_a_store_failure_is_503_and_the_retry_is_stored_once(
    start: Start, database: Database, tmp_path: Path
) -> None:
    """While the database refuses writes, a webhook is answered 503 with Retry-After and not
    stored, and /healthz says unavailable; once it takes writes again, the provider's retry
    is stored, once."""
    client = await start(signed=False)
    await feed(client, SESSION[:1])
    database.refuse_writes(True)
    for _ in range(2):
        answer = await client.post("/webhooks", content=SESSION[1])
        assert (503, "the store is unavailable; retry later") == error_of(answer)
        assert "5" == answer.headers["retry-after"]
    assert 503 == (await client.get("/healthz")).status_code  # the writer cannot write
    database.refuse_writes(False)
    assert 1 == await events(client)
    retried = await client.post("/webhooks", content=SESSION[1])
    assert (200, 2, "applied") == (
        retried.status_code,
        retried.json()["seq"],
        retried.json()["outcome"],
    )
    metrics = (await client.get("/metrics", headers=AUTH)).text
    assert 'lifecycle_webhooks_refused_total{reason="store_unavailable"} 2.0' in metrics
    with Engine.open(str(tmp_path / "lifecycle.db")) as engine:
        assert SESSION[:2] == [r.payload for r in engine.log()]


async def test_a_lost_connection_is_503_for_reads_then_they_recover(
    start: Start, database: Database
) -> None:
    """A read on a lost connection is answered 503 with Retry-After; the next read
    reconnects. /healthz retries on a fresh connection before it says unavailable: a
    lost connection to a database that is there is ok at once (it said 503 once)."""
    client = await start(signed=False)
    await feed(client, SESSION[:1])
    database.cut()
    answer = await client.get("/resources", headers=AUTH)
    assert (503, "the store is unavailable") == error_of(answer)
    assert "5" == answer.headers["retry-after"]
    assert 200 == (await client.get("/resources", headers=AUTH)).status_code
    database.cut()
    health = await client.get("/healthz")
    assert (200, {"status": "ok", "events": 1}) == (health.status_code, health.json())


# -- verify_signature ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def public_key(key: rsa.RSAPrivateKey) -> rsa.RSAPublicKey:
    return load_public_key(public_pem(key))


def signature_of(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return sign(key, body)["videosdk-signature"]


def test_a_signature_of_the_body_verifies(
    key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey
) -> None:
    """The signature of the very bytes verifies, given as text or bytes."""
    body = SESSION[0]
    header = signature_of(key, body)
    assert verify_signature(public_key, header, body)
    assert verify_signature(public_key, header.encode(), body)


@pytest.mark.parametrize("around", [" ", "\t", "\r\n", "  \n "])
def test_whitespace_around_a_signature_is_not_part_of_it(
    key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey, around: str
) -> None:
    """A valid signature followed or preceded by whitespace (a proxy's or a sender's
    padding) still verifies: base64 holds no whitespace."""
    body = SESSION[0]
    header = signature_of(key, body)
    assert verify_signature(public_key, header + around, body)
    assert verify_signature(public_key, (around + header).encode(), body)
    assert not verify_signature(public_key, around, body)


def test_a_signature_of_other_bytes_or_by_another_key_does_not(
    key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey
) -> None:
    """Another body (even the same JSON re-serialized) or another key: False."""
    body = SESSION[0]
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    reserialized = json.dumps(json.loads(body)).encode()
    assert reserialized != body
    assert not verify_signature(public_key, signature_of(key, body), body + b" ")
    assert not verify_signature(public_key, signature_of(key, body), reserialized)
    assert not verify_signature(public_key, signature_of(other, body), body)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        b"",
        "not base64!",
        "==",
        "é",
        "c2lnbmF0dXJl",  # base64, but not a signature
        "AAAA" * 64,  # too short for the key
        base64.b64encode(b"\xff" * 256),  # the key's size, larger than its modulus
    ],
)
def test_a_missing_or_malformed_header_does_not_verify(
    public_key: rsa.RSAPublicKey, header: str | bytes | None
) -> None:
    """Missing, empty, non-base64 or short or garbage signatures: False, never an exception."""
    assert not verify_signature(public_key, header, SESSION[0])


@pytest.fixture
def private_pem_file(key: rsa.RSAPrivateKey, tmp_path: Path) -> Path:
    path = tmp_path / "private.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_a_signature_made_by_openssl_verifies(
    public_key: rsa.RSAPublicKey, private_pem_file: Path
) -> None:
    """``openssl dgst -sha256 -sign`` (the README's way) makes a signature that verifies."""
    body = SESSION[0]
    signed = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(private_pem_file)],
        input=body,
        capture_output=True,
        check=True,
    ).stdout
    assert verify_signature(public_key, base64.b64encode(signed), body)
    assert not verify_signature(public_key, base64.b64encode(signed), body[:-1])


async def test_overdue_resources_are_listed_and_counted(start: Start, tmp_path: Path) -> None:
    """Resources that entered their states an hour ago: GET /resources?overdue=true lists
    those past their deadline, the longest overdue first, with the deadline; /metrics
    counts them by lifecycle and state."""
    hour_ago = time.time() - 3600
    with Engine.open(str(tmp_path / "lifecycle.db"), clock=lambda: hour_ago) as engine:
        engine.feed(body_of("recording-stopping", **IDS))  # 900 s
        engine.feed(body_of("hls-started", **OTHER_IDS))  # 180 s
        engine.feed(body_of("participant-joined", **IDS, participantId="p1"))  # none
    client = await start(signed=False)
    page = (await client.get("/resources?overdue=true", headers=AUTH)).json()
    assert [("hls", "hls.started", 180), ("recording", "recording.stopping", 900)] == [
        (i["lifecycle"], i["deadline"], i["seconds"]) for i in page["items"]
    ]
    assert page["items"][1]["due_at"].startswith(
        datetime.fromtimestamp(hour_ago + 900, UTC).isoformat()[:19]
    )
    only = (await client.get("/resources?overdue=true&lifecycle=recording", headers=AUTH)).json()
    assert ["recording"] == [i["lifecycle"] for i in only["items"]]
    first = (await client.get("/resources?overdue=true&limit=1", headers=AUTH)).json()
    assert "/resources?overdue=true&limit=1&offset=1" == first["next"]
    assert 400 == (await client.get("/resources?overdue=maybe", headers=AUTH)).status_code
    metrics = (await client.get("/metrics", headers=AUTH)).text.splitlines()
    assert 'lifecycle_overdue_resources{lifecycle="recording",state="stopping"} 1.0' in metrics
    assert 'lifecycle_overdue_resources{lifecycle="participant",state="joined"} 0.0' in metrics
