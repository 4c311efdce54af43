"""lifecycle.reconcile.VideoSDK against a fake of VideoSDK's REST API on a loopback port.

Time is a fake clock that the client's sleeps move on, so that waits (backoff, Retry-After,
the rate cap) are asserted exactly and cost nothing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import attrs
import httpx
import jwt
import pytest
from _fake_videosdk import FakeVideoSDK, Json, serve
from hypothesis import event, given
from hypothesis import strategies as st

from lifecycle import (
    LIFECYCLES,
    Event,
    HistoryEntry,
    InvalidArgument,
    LifecycleError,
    Outcome,
    ProviderError,
    ResourceStatus,
    parse_event,
)
from lifecycle.reconcile import Answer, Reconciler, VideoSDK

from support import ROOT, Clock

API_KEY = "test-api-key"
SECRET = "test-secret-of-32-bytes-or-more-0123456789"  # HS256 wants 32 bytes
ROOM = "jvsg-8rjn-j304"
SID = "613731342f27f56e4fc4b6d0"
PID = "abcd"
URL = "https://cdn.videosdk.live/encoded/videos/62d148951a1eb20029fc9b05.mp4"
JITTER = 0.125  # the jitter with random() == 0.5
ENDED = "2022-07-05T16:00:00.000Z"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeVideoSDK, str]]:
    fake = FakeVideoSDK(API_KEY, SECRET)
    with serve(fake.app) as url:
        yield fake, url


class Time:
    """A fake clock (epoch seconds, starting now) and a sleep that records and moves it."""

    def __init__(self) -> None:
        self.clock = Clock(float(int(datetime.now(UTC).timestamp())))
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def fake_time() -> Time:
    return Time()


@pytest.fixture
def fake(server: tuple[FakeVideoSDK, str], fake_time: Time) -> FakeVideoSDK:
    """The fake, emptied, on the test's clock."""
    server[0].reset()
    server[0].clock = fake_time.clock
    return server[0]


@pytest.fixture
def make(
    server: tuple[FakeVideoSDK, str], fake: FakeVideoSDK, fake_time: Time
) -> Iterator[Callable[..., VideoSDK]]:
    """Build clients on the fake's URL and the test's clock; closed after the test."""
    made: list[VideoSDK] = []

    def maker(**kw: Any) -> VideoSDK:
        options: dict[str, Any] = {
            "clock": fake_time.clock,
            "sleep": fake_time.sleep,
            "random": lambda: 0.5,
            "base_url": server[1],
            **kw,
        }
        key, secret = options.pop("api_key", API_KEY), options.pop("secret", SECRET)
        client = VideoSDK(key, secret, **options)
        made.append(client)
        return client

    yield maker
    for client in made:
        client.close()


def status_of(
    lifecycle: str, *key: str, data: Json | None = None, history: tuple[str, ...] = ()
) -> ResourceStatus:
    """A resource in its lifecycle's first state after idle, as the engine would give it."""
    fields = LIFECYCLES[lifecycle].definition.key_fields
    entries = tuple(
        HistoryEntry(i + 1, w, Outcome.APPLIED, datetime(2022, 7, 5, tzinfo=UTC))
        for i, w in enumerate(history)
    )
    return ResourceStatus(
        lifecycle,
        key,
        LIFECYCLES[lifecycle].entry_state,
        datetime(2022, 7, 5, tzinfo=UTC),
        {**dict(zip(fields, key, strict=True)), **(data or {})},
        entries,
    )


def names_the_resource(webhook: Json, status: ResourceStatus) -> Event:
    """The webhook parses, and names ``status``'s resource; its event."""
    event = parse_event(webhook)
    assert isinstance(event, Event)
    fields = LIFECYCLES[status.lifecycle].definition.key_fields
    assert (status.lifecycle, status.key) == (
        event.lifecycle,
        tuple(webhook["data"][f] for f in fields),
    )
    return event


# -- one case per mapping ---------------------------------------------------------------

Setup = Callable[[FakeVideoSDK], object]


@attrs.frozen
class Case:
    id: str
    status: ResourceStatus
    setup: Setup
    webhook: Json | None
    reason: str


def nothing(fake: FakeVideoSDK) -> None:
    fake.rooms.add(ROOM)


def hook(webhook_type: str, **data: Any) -> Json:
    return {"webhookType": webhook_type, "data": data}


MEETING = {"meetingId": ROOM, "sessionId": SID}
MEMBER = {**MEETING, "participantId": PID}
TRACK_FILES = [{"filePath": "/t/a.webm", "fileUrl": URL}]
TRANSCRIPTION = {
    "id": "40b0a4ed",
    "status": "completed",
    "recordingId": "65d303d6",
    "transcriptionFilePaths": {"txt": "https://cdn.videosdk.live/t.txt"},
    "start": "2022-07-05T15:56:00.000Z",
    "end": ENDED,
}
REALTIME = {
    **TRANSCRIPTION,
    "extension": {
        "enabled": True,
        "provider": "videosdk",
        "extensionConfig": {"roomId": ROOM, "sessionId": SID},
    },
}
POST = {**TRANSCRIPTION, "roomId": ROOM, "sessionId": SID}
MERGE = {
    "id": "bf37fabb",
    "channel1": [{"recordingId": "r1", "participantId": PID}],
    "start": "2022-07-05T15:56:00.000Z",
    "end": ENDED,
    "status": "completed",
    "meetingId": ROOM,
    "sessionId": SID,
    "file": {"meta": {"format": "mp3"}, "type": "audio", "fileUrl": URL, "id": "f2"},
}
AGENT = {"sessionId": "session-5bf1", "deploymentId": "2f5f787c", "tag": "v1.0", "duration": 56}


def failed_summary(webhook_type: str) -> Json:
    return {"totalCount": 1, "successCount": 1, "data": [{"type": webhook_type, "success": True}]}


CASES = [
    # session: GET /v2/sessions/{sessionId}
    Case(
        "session-ended",
        status_of("session", ROOM, SID),
        lambda f: f.session(ROOM, SID, "ended", end=ENDED),
        hook("session-ended", **MEETING, start="2022-07-05T15:55:35.047Z", end=ENDED),
        "session ended",
    ),
    Case(
        "session-ongoing",
        status_of("session", ROOM, SID),
        lambda f: f.session(ROOM, SID, "ongoing", end=None),
        None,
        "still running",
    ),
    Case(
        "session-unknown-status",
        status_of("session", ROOM, SID),
        lambda f: f.session(ROOM, SID, "Paused"),
        None,
        "unknown status 'Paused'",
    ),
    Case("session-not-found", status_of("session", ROOM, SID), nothing, None, "not found"),
    Case(
        "session-of-another-room",
        status_of("session", ROOM, SID),
        lambda f: f.session("other-room", SID, "ended"),
        None,
        "not found: the session belongs to room 'other-room'",
    ),
    # participant: GET /v2/sessions/{sessionId}/participants, paged
    Case(
        "participant-left",
        status_of("participant", ROOM, SID, PID),
        lambda f: f.session(ROOM, SID, participants=[f.participant(PID, ENDED, ENDED)]),
        hook("participant-left", **MEMBER, participantName="John"),
        "participant left",
    ),
    Case(
        "participant-rejoined",
        status_of("participant", ROOM, SID, PID),
        lambda f: f.session(ROOM, SID, "ongoing", participants=[f.participant(PID, ENDED, None)]),
        None,
        "still in the session",
    ),
    Case(
        "participant-not-in-session",
        status_of("participant", ROOM, SID, PID),
        lambda f: f.session(ROOM, SID, participants=[f.participant("other", ENDED)]),
        None,
        "not found",
    ),
    Case(
        "participant-session-not-found",
        status_of("participant", ROOM, SID, PID),
        nothing,
        None,
        "not found",
    ),
    # recording: GET /v2/recordings?roomId&sessionId
    Case(
        "recording-stopped",
        status_of("recording", ROOM, SID),
        lambda f: f.recording(ROOM, SID, file=f.file(URL, "/encoded/videos/62d1.mp4")),
        hook("recording-stopped", **MEETING, filePath="/encoded/videos/62d1.mp4", fileUrl=URL),
        "recording stopped",
    ),
    Case(
        "recording-running",
        status_of("recording", ROOM, SID),
        lambda f: f.recording(ROOM, SID, start="2022-07-05T15:56:00.000Z", end=None),
        None,
        "still running",
    ),
    Case(
        "recording-restarted",  # the latest recording of the session counts
        status_of("recording", ROOM, SID),
        lambda f: [
            f.recording(ROOM, SID, start="2022-07-05T15:58:00.000Z", end=None),
            f.recording(ROOM, SID, start="2022-07-05T15:56:00.000Z", end=ENDED, file=f.file(URL)),
        ],
        None,
        "still running",
    ),
    Case(
        "recording-failed",
        status_of("recording", ROOM, SID),
        lambda f: f.recording(ROOM, SID, end=None, webhook=failed_summary("recording-failed")),
        hook("recording-failed", **MEETING),
        "recording failed",
    ),
    Case(
        "recording-ended-without-file",
        status_of("recording", ROOM, SID),
        lambda f: f.recording(ROOM, SID, end=ENDED),
        None,
        "ended without a file: the REST API does not say whether it failed",
    ),
    Case(
        "recording-none-in-session",
        status_of("recording", ROOM, SID),
        lambda f: f.recording(ROOM, "another-session", file=f.file(URL)),
        None,
        "not found",
    ),
    # participant-recording: GET /v2/recordings/participant?roomId&sessionId&participantId
    Case(
        "participant-recording-stopped",
        status_of("participant-recording", ROOM, SID, PID),
        lambda f: f.member_recording(
            ROOM, SID, PID, "participant", end=ENDED, files=[{"meta": {}, **TRACK_FILES[0]}]
        ),
        hook("participant-recording-stopped", **MEMBER, fileDetails=TRACK_FILES, fileFormat="webm"),
        "participant-recording stopped",
    ),
    Case(
        "participant-recording-running",
        status_of("participant-recording", ROOM, SID, PID),
        lambda f: f.member_recording(ROOM, SID, PID, "participant", end=None, files=[]),
        None,
        "still running",
    ),
    Case(
        "participant-recording-of-another",
        status_of("participant-recording", ROOM, SID, PID),
        lambda f: f.member_recording(ROOM, SID, "other", "participant", end=ENDED),
        None,
        "not found",
    ),
    # participant-track-recording: GET /v2/recordings/participant/track, by kind
    Case(
        "participant-track-recording-stopped",
        status_of("participant-track-recording", ROOM, SID, PID, "audio"),
        lambda f: [
            f.member_recording(ROOM, SID, PID, "track", kind="video", end=None),
            f.member_recording(ROOM, SID, PID, "track", kind="audio", end=ENDED, files=TRACK_FILES),
        ],
        hook(
            "participant-track-recording-stopped", **MEMBER, kind="audio", fileDetails=TRACK_FILES
        ),
        "participant-track-recording stopped",
    ),
    Case(
        "participant-track-recording-running",
        status_of("participant-track-recording", ROOM, SID, PID, "video"),
        lambda f: f.member_recording(ROOM, SID, PID, "track", kind="video", end=None),
        None,
        "still running",
    ),
    Case(
        "participant-track-recording-failed",
        status_of("participant-track-recording", ROOM, SID, PID, "audio"),
        lambda f: f.member_recording(
            ROOM,
            SID,
            PID,
            "track",
            kind="audio",
            end=ENDED,
            webhook=failed_summary("participant-track-recording-failed"),
        ),
        hook("participant-track-recording-failed", **MEMBER, kind="audio"),
        "participant-track-recording failed",
    ),
    # hls and livestream: GET /v2/hls/, /v2/livestreams/ ?roomId&sessionId
    Case(
        "hls-stopped",
        status_of("hls", ROOM, SID),
        lambda f: f.stream("hls", ROOM, SID, end=ENDED, playbackHlsUrl="https://cdn/x.m3u8"),
        hook("hls-stopped", **MEETING),
        "hls stopped",
    ),
    Case(
        "hls-live",
        status_of("hls", ROOM, SID),
        lambda f: f.stream("hls", ROOM, SID, end=None),
        None,
        "still running",
    ),
    Case(
        "hls-failed",
        status_of("hls", ROOM, SID),
        lambda f: f.stream("hls", ROOM, SID, end=None, webhook=failed_summary("hls-failed")),
        hook("hls-failed", **MEETING),
        "hls failed",
    ),
    Case(
        "livestream-stopped",
        status_of("livestream", ROOM, SID),
        lambda f: f.stream("livestream", ROOM, SID, end=ENDED, outputs=[]),
        hook("livestream-stopped", **MEETING),
        "livestream stopped",
    ),
    Case(
        "livestream-live",
        status_of("livestream", ROOM, SID),
        lambda f: f.stream("livestream", ROOM, SID, end=None),
        None,
        "still running",
    ),
    Case("livestream-not-found", status_of("livestream", ROOM, SID), nothing, None, "not found"),
    # transcription: GET /ai/v1/{realtime,post}-transcriptions/{id}, by data["type"]
    Case(
        "transcription-realtime-completed",
        status_of("transcription", "40b0a4ed", data={"type": "realtime"}),
        lambda f: f.realtime_transcriptions.update({"40b0a4ed": REALTIME}),
        hook("transcription-stopped", id="40b0a4ed", type="realtime", **MEETING),
        "transcription stopped",
    ),
    Case(
        "transcription-realtime-running",
        status_of("transcription", "40b0a4ed", data={"type": "realtime"}),
        lambda f: f.realtime_transcriptions.update({"40b0a4ed": {**REALTIME, "status": "running"}}),
        None,
        "still running",
    ),
    Case(
        "transcription-post-completed",
        status_of("transcription", "40b0a4ed", data={"type": "post"}),
        lambda f: f.post_transcriptions.update({"40b0a4ed": POST}),
        hook("transcription-stopped", id="40b0a4ed", type="post", **MEETING),
        "transcription stopped",
    ),
    Case(
        "transcription-post-asked-as-realtime",  # a post one is not looked for as realtime
        status_of("transcription", "40b0a4ed", data={"type": "realtime"}),
        lambda f: f.post_transcriptions.update({"40b0a4ed": POST}),
        None,
        "not found",
    ),
    Case(
        "transcription-untyped",  # no type: realtime is asked, then post
        status_of("transcription", "40b0a4ed"),
        lambda f: f.post_transcriptions.update({"40b0a4ed": POST}),
        hook("transcription-stopped", id="40b0a4ed", type="post", **MEETING),
        "transcription stopped",
    ),
    Case(
        "transcription-unknown-status",
        status_of("transcription", "40b0a4ed", data={"type": "post"}),
        lambda f: f.post_transcriptions.update({"40b0a4ed": {**POST, "status": "failed"}}),
        None,
        "unknown status 'failed'",
    ),
    # merge-recording: GET /v2/recordings/participant/merge/{id}
    Case(
        "merge-recording-completed",
        status_of("merge-recording", "bf37fabb"),
        lambda f: f.merges.update({"bf37fabb": MERGE}),
        hook("merge-recording-completed", id="bf37fabb", **MEETING),
        "merge-recording completed",
    ),
    Case(
        "merge-recording-failed",
        status_of("merge-recording", "bf37fabb"),
        lambda f: f.merges.update({"bf37fabb": {**MERGE, "status": "failed"}}),
        hook("merge-recording-failed", id="bf37fabb", **MEETING),
        "merge-recording failed",
    ),
    Case(
        "merge-recording-unknown-status",
        status_of("merge-recording", "bf37fabb"),
        lambda f: f.merges.update({"bf37fabb": {**MERGE, "status": "in-progress"}}),
        None,
        "unknown status 'in-progress'",
    ),
    Case(
        "merge-recording-not-found",
        status_of("merge-recording", "bf37fabb"),
        nothing,
        None,
        "not found",
    ),
    # ai-deployment-session: GET /ai/v1/ai-deployment-sessions/{sessionId}
    Case(
        "ai-deployment-session-completed",
        status_of("ai-deployment-session", "session-5bf1"),
        lambda f: f.ai_sessions.update({"session-5bf1": {**AGENT, "status": "completed"}}),
        hook("ai-deployment-session-stopped", sessionId="session-5bf1"),
        "ai-deployment-session stopped",
    ),
    Case(
        "ai-deployment-session-failed-as-agent-session",  # the alias its history used
        status_of("ai-deployment-session", "session-5bf1", history=("agent-session-started",)),
        lambda f: f.ai_sessions.update({"session-5bf1": {**AGENT, "status": "Failed"}}),
        hook("agent-session-failed", sessionId="session-5bf1"),
        "ai-deployment-session failed",
    ),
    Case(
        "ai-deployment-session-running",
        status_of("ai-deployment-session", "session-5bf1"),
        lambda f: f.ai_sessions.update({"session-5bf1": {**AGENT, "status": "Running"}}),
        None,
        "still running",
    ),
    Case(
        "ai-deployment-session-unknown-status",
        status_of("ai-deployment-session", "session-5bf1"),
        lambda f: f.ai_sessions.update({"session-5bf1": {**AGENT, "status": "exploded"}}),
        None,
        "unknown status 'exploded'",
    ),
    Case(
        "ai-deployment-session-not-found",
        status_of("ai-deployment-session", "session-5bf1"),
        nothing,
        None,
        "not found",
    ),
    # resource: no REST endpoint
    Case(
        "resource",
        status_of("resource", "abcdef98"),
        nothing,
        None,
        "no REST status for resources",
    ),
]


def test_every_lifecycle_has_cases() -> None:
    """Each lifecycle of the registry is asked in at least one case."""
    assert set(LIFECYCLES) == {c.status.lifecycle for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_answer_implies_its_webhook(
    case: Case, fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """What the fake says of a resource implies the expected webhook (or none), and why."""
    case.setup(fake)
    answer = make().ask(case.status)
    assert (case.webhook, case.reason) == (answer.webhook, answer.reason)
    if answer.webhook is not None:
        names_the_resource(answer.webhook, case.status)
    # the evidence is every exchange the fake saw, JSON-ready
    exchanges = answer.evidence["exchanges"]
    assert [s.path for s in fake.seen] == [e["path"].partition("?")[0] for e in exchanges]
    assert [s.status for s in fake.seen] == [e["status"] for e in exchanges]
    assert answer.evidence == json.loads(json.dumps(answer.evidence))
    assert (case.status.lifecycle, list(case.status.key)) == (
        answer.evidence["lifecycle"],
        answer.evidence["key"],
    )


@pytest.mark.parametrize("refusal", [402, 404])
@pytest.mark.parametrize("lifecycle", ["recording", "hls", "participant-recording"])
def test_an_unknown_room_is_not_found(
    refusal: int, lifecycle: str, fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """A list asked for a room VideoSDK does not know (402 or 404) answers "not found"."""
    fake.unknown_room = refusal
    key = (ROOM, SID, PID) if lifecycle == "participant-recording" else (ROOM, SID)
    answer = make().ask(status_of(lifecycle, *key))
    assert (None, "not found") == (answer.webhook, answer.reason)
    assert [refusal] == [e["status"] for e in answer.evidence["exchanges"]]
    assert {"message": "Room not found"} == answer.evidence["exchanges"][0]["body"]


def test_evidence_keeps_the_path_with_its_query_and_the_body(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """Each exchange keeps method, path and query, status and the JSON body as sent."""
    item = fake.recording(ROOM, SID, file=fake.file(URL))
    answer = make().ask(status_of("recording", ROOM, SID))
    page_info = {"currentPage": 1, "perPage": 20, "lastPage": 1, "total": 1}
    assert [
        {
            "method": "GET",
            "path": f"/v2/recordings?roomId={ROOM}&sessionId={SID}&page=1&perPage=20",
            "status": 200,
            "body": {"pageInfo": page_info, "data": [item]},
        }
    ] == answer.evidence["exchanges"]


def test_an_unknown_status_is_kept_verbatim(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """A status value no document names is in the reason and the evidence as sent."""
    fake.session(ROOM, SID, "ÉNDED ")
    answer = make().ask(status_of("session", ROOM, SID))
    assert "unknown status 'ÉNDED '" == answer.reason
    assert "ÉNDED " == answer.evidence["exchanges"][0]["body"]["status"]


def test_ids_are_escaped_in_paths(fake: FakeVideoSDK, make: Callable[..., VideoSDK]) -> None:
    """Reserved characters and dot segments of an id reach the API as the id."""
    for sid in ("a?b#c&d=e%20 é", ".", ".."):
        fake.session(ROOM, sid, "ended")
        answer = make().ask(status_of("session", ROOM, sid))
        assert "session ended" == answer.reason, sid


# -- the token ----------------------------------------------------------------------


def test_the_token_is_raw_hs256_with_the_documented_claims(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """Authorization is the bare token; HS256 over the secret; claims as VideoSDK's."""
    fake.session(ROOM, SID, "ongoing")
    make().ask(status_of("session", ROOM, SID))
    [seen] = fake.seen
    assert seen.authorization is not None
    assert 200 == seen.status
    assert "HS256" == jwt.get_unverified_header(seen.authorization)["alg"]
    now = int(fake_time.clock.now)
    assert {
        "apikey": API_KEY,
        "permissions": ["allow_join", "allow_mod"],
        "version": 2,
        "roles": ["crawler"],
        "iat": now,
        "exp": now + 24 * 3600,
    } == jwt.decode(seen.authorization, SECRET, algorithms=["HS256"])


def test_the_token_is_reused_then_minted_again_a_minute_before_it_expires(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """One token serves until 60 s before its exp; the next request carries a new one."""
    fake.session(ROOM, SID, "ongoing")
    client = make()
    start = int(fake_time.clock.now)
    for advance in (0, 3600, 24 * 3600 - 61 - 3600, 1):
        fake_time.clock.advance(advance)
        client.ask(status_of("session", ROOM, SID))
    tokens = [s.authorization for s in fake.seen]
    assert [200] * 4 == [s.status for s in fake.seen]
    assert tokens[0] == tokens[1] == tokens[2] != tokens[3]
    claims = [s.claims for s in fake.seen]
    assert [start, start, start, start + 24 * 3600 - 60] == [c and c["iat"] for c in claims]


def test_refused_credentials_raise_provider_error_at_once(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """A wrong secret is answered 401: ProviderError, with no retry and no wait."""
    fake.session(ROOM, SID, "ended")
    with pytest.raises(ProviderError, match="401: invalid token") as caught:
        make(secret=SECRET.upper()).ask(status_of("session", ROOM, SID))
    assert 401 == caught.value.status
    assert isinstance(caught.value, LifecycleError)
    assert isinstance(caught.value, OSError)
    assert [401] == [s.status for s in fake.seen]
    assert [] == fake_time.waits


def test_a_forbidden_answer_raises_provider_error(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """403 is refused credentials too."""
    fake.fail(403)
    with pytest.raises(ProviderError) as caught:
        make().ask(status_of("session", ROOM, SID))
    assert 403 == caught.value.status
    assert 1 == len(fake.seen)


def test_another_client_error_raises_provider_error(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """A 400 is no answer about the resource: ProviderError, not retried."""
    fake.fail(400, times=5)
    with pytest.raises(ProviderError, match="400: injected"):
        make().ask(status_of("session", ROOM, SID))
    assert 1 == len(fake.seen)


# -- retries, backoff, Retry-After, timeouts ----------------------------------------------


def test_a_5xx_is_retried_after_a_backoff(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """Two 5xx, then the answer: waits of 1 s and 2 s, each with its jitter."""
    fake.session(ROOM, SID, "ended")
    fake.fail(503)
    fake.fail(500)
    answer = make().ask(status_of("session", ROOM, SID))
    assert "session ended" == answer.reason
    assert [503, 500, 200] == [s.status for s in fake.seen]
    assert [1 + JITTER, 2 + JITTER] == fake_time.waits
    assert [200] == [e["status"] for e in answer.evidence["exchanges"]]


def test_5xx_forever_raises_provider_error_after_the_retries(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """With retries=3: four attempts, waits of 1, 2, 4 s (plus jitter), then ProviderError."""
    fake.fail(500, times=100)
    with pytest.raises(ProviderError, match=r"500: injected \(after 4 attempts\)") as caught:
        make().ask(status_of("session", ROOM, SID))
    assert 500 == caught.value.status
    assert 4 == len(fake.seen)
    assert [1 + JITTER, 2 + JITTER, 4 + JITTER] == fake_time.waits


def test_the_backoff_is_capped_and_retries_may_be_off(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """Waits double up to 30 s; retries=0 tries once and waits for nothing."""
    fake.fail(502, times=100)
    with pytest.raises(ProviderError):
        make(retries=6, random=lambda: 0.0).ask(status_of("session", ROOM, SID))
    assert [1, 2, 4, 8, 16, 30] == fake_time.waits
    fake.seen.clear()
    fake_time.waits.clear()
    with pytest.raises(ProviderError):
        make(retries=0).ask(status_of("session", ROOM, SID))
    assert (1, []) == (len(fake.seen), fake_time.waits)


@pytest.mark.parametrize(
    ("retry_after", "wait"), [("3", 3.0), ("0.5", 0.5), ("600", 60.0), ("soon", 1 + JITTER)]
)
def test_429_honours_retry_after(
    retry_after: str,
    wait: float,
    fake: FakeVideoSDK,
    make: Callable[..., VideoSDK],
    fake_time: Time,
) -> None:
    """A 429's Retry-After is waited (at most 60 s); an unreadable one is the backoff."""
    fake.session(ROOM, SID, "ended")
    fake.fail(429, times=2, retry_after=retry_after)
    answer = make(rate=None).ask(status_of("session", ROOM, SID))
    assert "session ended" == answer.reason
    assert [wait, wait if retry_after != "soon" else 2 + JITTER] == fake_time.waits


def test_429_retry_after_as_a_date(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """Retry-After may be an HTTP date: the wait is the time until then."""
    fake.session(ROOM, SID, "ended")
    then = datetime.fromtimestamp(fake_time.clock.now + 7, UTC)
    fake.fail(429, retry_after=format_datetime(then, usegmt=True))
    make().ask(status_of("session", ROOM, SID))
    assert [pytest.approx(7.0)] == fake_time.waits


def test_429_without_retry_after_backs_off(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """A 429 with no Retry-After waits as a 5xx does; 429 forever raises with status 429."""
    fake.session(ROOM, SID, "ended")
    fake.fail(429, times=2)
    make().ask(status_of("session", ROOM, SID))
    assert [1 + JITTER, 2 + JITTER] == fake_time.waits
    fake.fail(429, times=100)
    with pytest.raises(ProviderError) as caught:
        make(retries=1).ask(status_of("session", ROOM, SID))
    assert 429 == caught.value.status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_network_errors_are_retried_then_raise(
    make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """A refused connection is retried with backoff, then ProviderError with no status."""
    client = make(base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ProviderError, match="ConnectError") as caught:
        client.ask(status_of("session", ROOM, SID))
    assert caught.value.status is None
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert [1 + JITTER, 2 + JITTER, 4 + JITTER] == fake_time.waits


def test_a_slow_answer_times_out_and_is_retried(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """An answer later than ``timeout`` is a network error: retried, then answered."""
    fake.session(ROOM, SID, "ended")
    fake.stall(1.0)
    answer = make(timeout=0.1).ask(status_of("session", ROOM, SID))
    assert "session ended" == answer.reason
    assert [1 + JITTER] == fake_time.waits
    assert 2 == len(fake.seen)


def test_an_answer_that_is_no_json_object_raises(make: Callable[..., VideoSDK]) -> None:
    """A 200 whose body is not a JSON object is no answer: ProviderError."""
    client = make(
        client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<"))),
    )
    with pytest.raises(ProviderError, match="no JSON object"):
        client.ask(status_of("session", ROOM, SID))


# -- the rate cap ---------------------------------------------------------------------


def test_requests_are_spaced_by_the_rate(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """At 5 requests/s, back-to-back requests wait 0.2 s each (the first none)."""
    fake.session(ROOM, SID, "ongoing")
    client = make()
    for _ in range(5):
        client.ask(status_of("session", ROOM, SID))
    assert [pytest.approx(0.2)] * 4 == fake_time.waits
    assert 5 == len(fake.seen)


def test_time_that_passed_fills_the_bucket(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """Requests already 1/rate apart wait for nothing; part of the gap is not waited again."""
    fake.session(ROOM, SID, "ongoing")
    client = make(rate=2.0)
    for _ in range(3):
        client.ask(status_of("session", ROOM, SID))
        fake_time.clock.advance(0.5)
    assert [] == fake_time.waits
    client.ask(status_of("session", ROOM, SID))
    fake_time.clock.advance(0.2)
    client.ask(status_of("session", ROOM, SID))
    assert [pytest.approx(0.3)] == fake_time.waits


def test_no_rate_means_no_wait(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK], fake_time: Time
) -> None:
    """rate=None sends at once."""
    fake.session(ROOM, SID, "ongoing")
    client = make(rate=None)
    for _ in range(5):
        client.ask(status_of("session", ROOM, SID))
    assert [] == fake_time.waits


# -- pagination -----------------------------------------------------------------------


def test_participants_are_found_on_a_later_page(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """45 participants at 20 a page: the one asked about, on page 3, is found."""
    people = [fake.participant(f"p{i}", ENDED) for i in range(44)]
    fake.session(ROOM, SID, participants=[*people, fake.participant(PID, ENDED, name="Last")])
    answer = make().ask(status_of("participant", ROOM, SID, PID))
    assert hook("participant-left", **MEMBER, participantName="Last") == answer.webhook
    assert [("1", "20"), ("2", "20"), ("3", "20")] == [
        (s.query["page"], s.query["perPage"]) for s in fake.seen
    ]


def test_the_latest_recording_is_found_across_pages(
    fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """Five recordings, two a page: all three pages are read, the latest one counts."""
    for minute in (56, 50, 52, 58, 54):
        url = f"https://cdn.videosdk.live/{minute}.mp4"
        fake.recording(ROOM, SID, start=f"2022-07-05T15:{minute}:00.000Z", file=fake.file(url))
    answer = make(per_page=2).ask(status_of("recording", ROOM, SID))
    assert answer.webhook is not None
    assert "https://cdn.videosdk.live/58.mp4" == answer.webhook["data"]["fileUrl"]
    assert ["1", "2", "3"] == [s.query["page"] for s in fake.seen]


@pytest.mark.parametrize("count", [0, 1, 9, 10, 11, 25])
@pytest.mark.parametrize(
    ("path", "key", "fill"),
    [
        ("/ai/v1/ai-deployment-sessions", "data", "ai_sessions"),  # no lastPage
        ("/ai/v1/realtime-transcriptions/", "transcriptions", "realtime_transcriptions"),
        ("/v2/recordings/participant/merge", "recordings", "merges"),
    ],
)
def test_lists_are_read_whole_whatever_their_key_and_page_info(
    count: int, path: str, key: str, fill: str, fake: FakeVideoSDK, make: Callable[..., VideoSDK]
) -> None:
    """Every item of every page, in order, with no page asked past the last."""
    items = {f"i{n:02}": {"id": f"i{n:02}"} for n in range(count)}
    getattr(fake, fill).update(items)
    log: list[dict[str, Any]] = []
    found = make(per_page=10)._list(path, {}, log, key)
    assert list(items.values()) == found
    assert max(1, -(-count // 10)) == len(fake.seen)
    assert len(fake.seen) == len(log)


def test_a_list_that_never_ends_raises(make: Callable[..., VideoSDK]) -> None:
    """A server that always says there is a next page is stopped after MAX_PAGES."""

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        return httpx.Response(
            200, json={"pageInfo": {"currentPage": page, "lastPage": 10**9}, "data": [{"id": page}]}
        )

    client = make(rate=None, client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(ProviderError, match="still paging after 1000 pages"):
        client._list("/v2/hls/", {}, [], "data")


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"api_key": ""},
        {"secret": ""},
        {"rate": 0},
        {"rate": -1.0},
        {"timeout": 0},
        {"retries": -1},
        {"per_page": 0},
    ],
)
def test_settings_that_cannot_work_are_refused(bad: dict[str, Any]) -> None:
    """Each raises InvalidArgument naming the setting."""
    args = {"api_key": API_KEY, "secret": SECRET, **bad}
    with pytest.raises(InvalidArgument):
        VideoSDK(args.pop("api_key"), args.pop("secret"), **args)


def test_a_status_of_no_known_lifecycle_or_key_is_refused(make: Callable[..., VideoSDK]) -> None:
    """An unknown lifecycle or a key of the wrong length is InvalidArgument, asked nothing."""
    client = make()
    with pytest.raises(InvalidArgument, match="no lifecycle named 'meeting'"):
        client.ask(attrs.evolve(status_of("session", ROOM, SID), lifecycle="meeting"))
    with pytest.raises(InvalidArgument, match="keyed by meetingId, sessionId"):
        client.ask(attrs.evolve(status_of("session", ROOM, SID), key=(ROOM,)))


def test_videosdk_is_a_reconciler() -> None:
    """The protocol is what the engine will ask for."""
    with VideoSDK(API_KEY, SECRET) as client:
        assert isinstance(client, Reconciler)
        assert API_KEY in repr(client)
        assert SECRET not in repr(client)
    assert Answer(None, "x") == Answer(None, "x", {})


def test_importing_lifecycle_imports_no_http_client() -> None:
    """``import lifecycle`` loads neither this module, httpx nor PyJWT."""
    code = (
        "import sys, lifecycle; "
        "print(sorted({'httpx', 'jwt', 'lifecycle.reconcile'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "[]" == out.stdout.strip()


# -- property: every implied webhook names the resource asked about -----------------------

key_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00/"),
    min_size=1,
    max_size=12,
)
odd = st.one_of(st.none(), st.integers(), st.text(max_size=8), st.booleans())


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy`` five times in six, else an odd value (of another type, or null)."""
    return st.integers(0, 5).flatmap(lambda n: strategy if n else odd)


STATUSES = {
    "session": ["ended", "ongoing"],
    "transcription": ["completed", "running", "failed"],
    "merge-recording": ["completed", "failed"],
    "ai-deployment-session": ["completed", "Stopped", "failed", "running"],
}


@st.composite
def worlds(draw: st.DrawFn) -> tuple[ResourceStatus, Callable[[FakeVideoSDK], None]]:
    """A resource of any lifecycle, and what the fake says of it (documented or odd)."""
    name = draw(st.sampled_from(sorted(LIFECYCLES)))
    d = LIFECYCLES[name].definition
    key = tuple(draw(key_text) for _ in d.key_fields)
    ids = dict(zip(d.key_fields, key, strict=True))
    data = (
        {"type": draw(st.sampled_from(["realtime", "post", "x"]))}
        if name == "transcription"
        else {}
    )
    history = draw(st.sampled_from([(), ("agent-session-started",)])) if "ai" in name else ()
    status = status_of(name, *key, data=data, history=history)
    room, sid = ids.get("meetingId", "r"), ids.get("sessionId", "s")
    statuses = st.sampled_from(STATUSES.get(name, ["ended"]))
    ends = maybe(st.just(ENDED))
    items = st.lists(
        st.fixed_dictionaries(
            {
                "start": maybe(st.just(ENDED)),
                "end": ends,
                "file": maybe(
                    st.fixed_dictionaries({"fileUrl": maybe(st.just(URL)), "filePath": odd})
                ),
                "files": maybe(
                    st.lists(
                        st.fixed_dictionaries({"fileUrl": maybe(st.just(URL)), "filePath": odd}),
                        max_size=2,
                    )
                ),
                "fileFormat": odd,
                "kind": maybe(st.just(ids.get("kind", "audio"))),
                "participantId": maybe(st.just(ids.get("participantId", "p"))),
                "webhook": st.sampled_from([failed_summary(f"{name}-failed"), None, None, None]),
            }
        ),
        max_size=3,
    )
    world = draw(
        st.fixed_dictionaries(
            {
                "known": maybe(st.just(True)).map(bool),
                "status": maybe(statuses),
                "start": odd,
                "end": ends,
                "room": maybe(st.just(room)).map(
                    lambda r: r if isinstance(r, str) else "elsewhere"
                ),
                "people": st.lists(
                    st.builds(
                        FakeVideoSDK.participant,
                        st.sampled_from([ids.get("participantId", "p"), "other"]),
                        ends,
                        name=odd,
                    ),
                    max_size=3,
                ),
                "items": items,
                "extension": maybe(
                    st.fixed_dictionaries(
                        {
                            "extensionConfig": maybe(
                                st.fixed_dictionaries({"roomId": odd, "sessionId": odd})
                            )
                        }
                    )
                ),
            }
        )
    )

    def setup(fake: FakeVideoSDK) -> None:
        if not world["known"]:
            return
        w = world
        one = {
            "id": key[0],
            "status": w["status"],
            "meetingId": w["start"],
            "roomId": w["end"],
            "sessionId": w["start"],
            "extension": w["extension"],
        }
        fake.session(
            w["room"], sid, w["status"], start=w["start"], end=w["end"], participants=w["people"]
        )
        for item in w["items"]:
            fields = {k: v for k, v in item.items() if v is not None or k == "end"}
            fake.recording(room, sid, **fields)
            fake.member_recording(room, sid, ids.get("participantId", "p"), "participant", **fields)
            fake.member_recording(room, sid, ids.get("participantId", "p"), "track", **fields)
            fake.stream("hls", room, sid, **fields)
            fake.stream("livestream", room, sid, **fields)
        for store in (
            fake.merges,
            fake.realtime_transcriptions,
            fake.post_transcriptions,
            fake.ai_sessions,
        ):
            store[key[0]] = one

    return status, setup


@given(world=worlds())
def test_any_implied_webhook_parses_and_names_the_resource_asked_about(
    world: tuple[ResourceStatus, Callable[[FakeVideoSDK], None]],
    server: tuple[FakeVideoSDK, str],
) -> None:
    """Whatever the API answers, an implied webhook parses with parse_event, belongs to the
    lifecycle asked about, names its key, and carries no field of a wrong type."""
    fake = server[0]
    fake.reset()
    fake_time = Time()
    fake.clock = fake_time.clock
    status, setup = world
    setup(fake)
    with VideoSDK(
        API_KEY, SECRET, server[1], clock=fake_time.clock, sleep=fake_time.sleep
    ) as client:
        answer = client.ask(status)
    assert answer.evidence == json.loads(json.dumps(answer.evidence))
    assert answer.reason
    event(answer.webhook["webhookType"] if answer.webhook else f"{status.lifecycle}: no webhook")
    if answer.webhook is None:
        return
    parsed = names_the_resource(answer.webhook, status)
    assert answer.webhook["webhookType"] in LIFECYCLES[status.lifecycle].definition.webhooks
    assert [] == [w for w in parsed.warnings if "timestamp" not in w]
