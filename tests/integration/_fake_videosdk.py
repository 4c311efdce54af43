"""A fake of VideoSDK's REST API, for the reconciliation tests: a Starlette app on uvicorn.

It serves the documented shapes (docs/time.md cites them) from in-memory fixtures the test
fills, checks each request's token as VideoSDK documents it (HS256 signed with the
secret, the claims present, sent raw with no ``Bearer`` prefix), pages its lists
(``page``, ``perPage``, ``pageInfo``), and can be told to fail the next requests
(:meth:`FakeVideoSDK.fail`) or to answer them late (:meth:`FakeVideoSDK.stall`).
:func:`serve` runs it on a free loopback port, on a thread of the test process.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import jwt
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Json = dict[str, Any]


@attrs.define
class Seen:
    """One request the fake received, and what it answered."""

    path: str
    query: dict[str, str]
    authorization: str | None
    claims: Json | None
    status: int = 0


@attrs.define
class FakeVideoSDK:
    """The fake's fixtures, faults and the requests it saw; ``app`` serves them.

    ``rooms`` are the rooms it knows: a list asked for another ``roomId`` is answered
    ``unknown_room`` (VideoSDK answers 402 or 404). ``clock`` dates the token check.
    """

    api_key: str
    secret: str
    clock: Callable[[], float] = time.time
    unknown_room: int = 404
    rooms: set[str] = attrs.Factory(set)
    sessions: dict[str, Json] = attrs.Factory(dict)
    recordings: list[Json] = attrs.Factory(list)
    participant_recordings: list[Json] = attrs.Factory(list)
    track_recordings: list[Json] = attrs.Factory(list)
    hls: list[Json] = attrs.Factory(list)
    livestreams: list[Json] = attrs.Factory(list)
    merges: dict[str, Json] = attrs.Factory(dict)
    realtime_transcriptions: dict[str, Json] = attrs.Factory(dict)
    post_transcriptions: dict[str, Json] = attrs.Factory(dict)
    ai_sessions: dict[str, Json] = attrs.Factory(dict)
    seen: list[Seen] = attrs.Factory(list)
    faults: deque[tuple[int, str | None]] = attrs.Factory(deque)
    stalls: deque[float] = attrs.Factory(deque)
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def reset(self) -> None:
        """Forget every fixture, fault and request (between tests)."""
        fresh = FakeVideoSDK(self.api_key, self.secret)
        for a in attrs.fields(FakeVideoSDK):
            if a.name not in ("api_key", "secret", "lock"):
                setattr(self, a.name, getattr(fresh, a.name))

    def fail(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests ``status`` (with ``Retry-After`` if given)."""
        with self.lock:
            self.faults.extend([(status, retry_after)] * times)

    def stall(self, seconds: float, times: int = 1) -> None:
        """Answer the next ``times`` requests ``seconds`` late."""
        with self.lock:
            self.stalls.extend([seconds] * times)

    # -- fixtures in the documented shapes ----------------------------------------------

    def session(
        self,
        room: str,
        session_id: str,
        status: object = "ended",
        *,
        start: object = "2022-07-05T15:55:35.047Z",
        end: object = "2022-07-05T15:59:35.047Z",
        participants: list[Json] | None = None,
    ) -> Json:
        """A session (``GET /v2/sessions/{sessionId}``), its participants inside."""
        self.rooms.add(room)
        s = {
            "id": session_id,
            "roomId": room,
            "customRoomId": "testing-room",
            "start": start,
            "end": end,
            "participants": participants or [],
            "activeDuration": 0,
            "chatLink": "https://cdn.videosdk.live/chat.csv",
            "status": status,
            "links": {"get_room": "...", "get_session": "..."},
        }
        self.sessions[session_id] = s
        return s

    @staticmethod
    def participant(participant_id: str, *ends: object, name: object = "John") -> Json:
        """A participant with one timelog entry per end (None: still in)."""
        timelog = [{"start": "2022-07-05T15:55:36.000Z", "end": e} for e in ends]
        return {
            "_id": "p" + participant_id,
            "participantId": participant_id,
            "name": name,
            "timelog": timelog,
        }

    def recording(self, room: str, session_id: str, **fields: Any) -> Json:
        """A room recording (``GET /v2/recordings``): ``file`` holds its URL."""
        self.rooms.add(room)
        r = {
            "id": f"rec{len(self.recordings)}",
            "roomId": room,
            "sessionId": session_id,
            "createdAt": "2022-07-05T15:56:00.000Z",
            **fields,
        }
        self.recordings.append(r)
        return r

    @staticmethod
    def file(url: str, path: str = "/encoded/videos/1.mp4") -> Json:
        return {
            "meta": {"format": "mov,mp4"},
            "filePath": path,
            "size": 17023255,
            "type": "video",
            "userStorage": None,
            "fileUrl": url,
            "id": "f1",
        }

    def member_recording(
        self, room: str, session_id: str, participant_id: str, mode: str, **fields: Any
    ) -> Json:
        """A participant (``mode="participant"``) or track (``"track"``) recording."""
        self.rooms.add(room)
        r = {
            "id": f"prec{len(self.participant_recordings) + len(self.track_recordings)}",
            "sessionId": session_id,
            "participantId": participant_id,
            "mode": mode,
            "kind": "audio_video",
            "fileFormat": "webm",
            "start": "2022-07-05T15:56:00.000Z",
            "region": "in002",
            "roomId": room,
            "webhook": {"totalCount": 0, "successCount": 0, "data": []},
            **fields,
        }
        (self.track_recordings if mode == "track" else self.participant_recordings).append(r)
        return r

    def stream(self, what: str, room: str, session_id: str, **fields: Any) -> Json:
        """An HLS (``what="hls"``) or RTMP livestream (``"livestream"``) item."""
        self.rooms.add(room)
        items = self.hls if what == "hls" else self.livestreams
        s = {
            "id": f"{what}{len(items)}",
            "sessionId": session_id,
            "roomId": room,
            "start": "2022-07-05T15:56:00.000Z",
            **fields,
        }
        items.append(s)
        return s

    # -- the app --------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        def get(path: str, answer: Callable[[Request], Response]) -> Route:
            async def endpoint(request: Request) -> Response:
                return await self._answer(request, answer)

            return Route(path, endpoint, methods=["GET"])

        return Starlette(
            routes=[
                get("/v2/sessions/{sessionId}", self._session),
                get("/v2/sessions/{sessionId}/participants", self._participants),
                get("/v2/recordings", self._items(lambda: self.recordings)),
                get("/v2/recordings/participant", self._items(lambda: self.participant_recordings)),
                get("/v2/recordings/participant/track", self._items(lambda: self.track_recordings)),
                get("/v2/recordings/participant/merge", self._merge_list),
                get("/v2/recordings/participant/merge/{id}", self._one(lambda: self.merges)),
                get("/v2/hls/", self._items(lambda: self.hls)),
                get("/v2/livestreams/", self._items(lambda: self.livestreams)),
                get("/ai/v1/realtime-transcriptions/", self._transcription_list),
                get(
                    "/ai/v1/realtime-transcriptions/{id}",
                    self._one(lambda: self.realtime_transcriptions),
                ),
                get("/ai/v1/post-transcriptions/{id}", self._one(lambda: self.post_transcriptions)),
                get("/ai/v1/ai-deployment-sessions", self._ai_session_list),
                get("/ai/v1/ai-deployment-sessions/{id}", self._one(lambda: self.ai_sessions)),
            ]
        )

    async def _answer(self, request: Request, answer: Callable[[Request], Response]) -> Response:
        auth = request.headers.get("authorization")
        seen = Seen(request.url.path, dict(request.query_params), auth, None)
        with self.lock:
            self.seen.append(seen)
            fault = self.faults.popleft() if self.faults else None
            stall = self.stalls.popleft() if self.stalls else 0.0
        if stall:
            await asyncio.sleep(stall)
        if fault is not None:
            status, retry_after = fault
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            response: Response = JSONResponse({"message": "injected"}, status, headers)
        else:
            claims, problem = self._check_token(auth)
            seen.claims = claims
            response = (
                JSONResponse({"message": problem}, 401) if problem is not None else answer(request)
            )
        seen.status = response.status_code
        return response

    def _check_token(self, auth: str | None) -> tuple[Json | None, str | None]:
        """The token's claims, and what is wrong with it (None when nothing)."""
        if not auth:
            return None, "no Authorization header"
        if " " in auth:
            return None, "the token goes raw in Authorization, with no prefix"
        try:
            claims: Json = jwt.decode(
                auth,
                self.secret,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as e:
            return None, f"invalid token: {e}"
        now = self.clock()
        wanted = {"permissions": ["allow_join", "allow_mod"], "version": 2, "roles": ["crawler"]}
        problems = [f"claim {k}" for k, v in wanted.items() if claims.get(k) != v]
        problems += ["apikey"] if claims.get("apikey") != self.api_key else []
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            problems.append("iat and exp")
        elif not iat <= now + 1 < exp:
            problems.append(f"expired or not yet valid (iat {iat}, exp {exp}, now {now:.0f})")
        return claims, ("; ".join(problems) or None)

    @staticmethod
    def _page(request: Request, items: list[Json], key: str = "data", agent: bool = False) -> Json:
        """One page of ``items`` in VideoSDK's envelope (agent-cloud: no ``lastPage``)."""
        page = int(request.query_params.get("page", 1))
        per_page = int(request.query_params.get("perPage", 10 if agent else 20))
        chunk = items[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(items) // per_page))
        info: Json = (
            {"totalItems": len(items), "currentPage": page, "perPage": per_page, "total": last}
            if agent
            else {"currentPage": page, "perPage": per_page, "lastPage": last, "total": len(items)}
        )
        return {"pageInfo": info, key: chunk}

    def _unknown_room(self, request: Request) -> Response | None:
        room = request.query_params.get("roomId")
        if room is None or room in self.rooms:
            return None
        return JSONResponse({"message": "Room not found"}, self.unknown_room)

    def _session(self, request: Request) -> Response:
        s = self.sessions.get(request.path_params["sessionId"])
        if s is None:
            return JSONResponse({"message": "Session not found"}, 404)
        return JSONResponse(s)

    def _participants(self, request: Request) -> Response:
        s = self.sessions.get(request.path_params["sessionId"])
        if s is None:
            return JSONResponse({"message": "Session not found"}, 404)
        page = self._page(request, s["participants"])
        one = {k: s[k] for k in ("id", "roomId", "customRoomId", "links")}
        return JSONResponse(
            {"pageInfo": page["pageInfo"], "data": {**one, "participants": page["data"]}}
        )

    def _items(self, items: Callable[[], list[Json]]) -> Callable[[Request], Response]:
        def answer(request: Request) -> Response:
            refused = self._unknown_room(request)
            if refused is not None:
                return refused
            q = request.query_params
            chosen = [
                i
                for i in items()
                if all(
                    q.get(f) in (None, i.get(f)) for f in ("roomId", "sessionId", "participantId")
                )
            ]
            return JSONResponse(self._page(request, chosen))

        return answer

    def _one(self, items: Callable[[], dict[str, Json]]) -> Callable[[Request], Response]:
        def answer(request: Request) -> Response:
            item = items().get(request.path_params["id"])
            if item is None:
                return JSONResponse({"message": "Not found"}, 404)
            return JSONResponse(item)

        return answer

    def _merge_list(self, request: Request) -> Response:
        return JSONResponse(self._page(request, list(self.merges.values()), "recordings"))

    def _transcription_list(self, request: Request) -> Response:
        items = list(self.realtime_transcriptions.values())
        return JSONResponse(self._page(request, items, "transcriptions"))

    def _ai_session_list(self, request: Request) -> Response:
        return JSONResponse(self._page(request, list(self.ai_sessions.values()), agent=True))


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` on a free loopback port on a thread; its base URL while open."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake VideoSDK did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
