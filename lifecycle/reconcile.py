"""Ask VideoSDK's REST API what became of a resource: the provider side of reconciliation.

A :class:`Reconciler` answers, for one :class:`~lifecycle.ResourceStatus`, what the
provider says about that resource now, as the webhook this implies (or none) with the
reason and the evidence. :class:`VideoSDK` is the reconciler of VideoSDK's REST API, on
httpx and PyJWT (the ``reconcile`` extra): ``import lifecycle`` never imports this module.
docs/time.md says what each lifecycle is asked and which answer implies which webhook.

.. versionadded:: 0.3
"""

from __future__ import annotations

import email.utils
import random as _random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, urlencode

import attrs
import httpx
import jwt

from ._lifecycles import LIFECYCLES
from ._records import ResourceStatus
from .errors import InvalidArgument, ProviderError

__all__ = ["Answer", "Reconciler", "VideoSDK"]

TOKEN_LIFETIME = 24 * 3600
"""Seconds a minted token is valid (the server SDK's default)."""
REMINT_BEFORE = 60
"""A token is minted again this many seconds before it expires (as the server SDK does)."""
BACKOFF = 1.0
"""The first retry waits this many seconds, each next one twice as long ..."""
MAX_BACKOFF = 30.0
"""... up to this many, plus a jitter of up to :data:`JITTER` seconds."""
JITTER = 0.25
MAX_RETRY_AFTER = 60.0
"""A longer ``Retry-After`` is waited this long, then the request is tried again."""
MAX_PAGES = 1000
"""A list still paging after this many pages is an error, not an endless loop."""

NOT_FOUND = "not found"
STILL_RUNNING = "still running"


@attrs.frozen
class Answer:
    """What the provider says about one resource.

    ``webhook`` is the payload this answer implies, as VideoSDK would have sent it
    (``{"webhookType": ..., "data": {...}}``: the resource's key fields, and what the
    REST answer gives, such as ``fileUrl``), or None when it implies nothing. ``reason``
    says why in a few words (``"recording stopped"``, ``"still running"``,
    ``"not found"``, ``"unknown status 'x'"`` ...). ``evidence`` is what was asked and
    answered, JSON-ready: the lifecycle, the key and each exchange (``method``, ``path``
    with its query, HTTP ``status``, JSON ``body``), so that a replay needs no API call.

    .. versionadded:: 0.3
    """

    webhook: dict[str, Any] | None
    reason: str
    evidence: dict[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class Reconciler(Protocol):
    """Anything that tells what the provider says about a resource.

    ``ask`` answers one resource; it raises :class:`~lifecycle.ProviderError` when the
    provider could not be asked (credentials refused, every retry failed), and answers
    ``webhook=None`` when the answer implies nothing.

    .. versionadded:: 0.3
    """

    def ask(self, status: ResourceStatus) -> Answer: ...


class _NotFound(Exception):  # noqa: N818 - a signal inside ask, never raised out of it
    """The provider knows no such room, session or resource (402 or 404)."""


Exchange = dict[str, Any]
Log = list[Exchange]


def _segment(value: str) -> str:
    """``value`` as one path segment: every reserved character escaped, ``.`` and ``..``
    too (a client would otherwise remove them as dot segments)."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if set(value) <= {"."} else quoted


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _unwrap(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A single object's body: itself, or its ``data`` when it is wrapped in one
    (``{"code": 200, "data": {...}}``, as the active-HLS answer is)."""
    inner = body.get("data")
    if isinstance(inner, Mapping) and "id" not in body and "status" not in body:
        return inner
    return body


def _message(body: object) -> str:
    """The provider's error message, looked for where the server SDK looks."""
    if isinstance(body, Mapping):
        for k in ("message", "error", "msg", "statusMessage"):
            if isinstance(body.get(k), str):
                return f": {body[k]}"
    return ""


def _webhook_type(status: ResourceStatus, state: str) -> str:
    """The webhook type that brings ``status``'s lifecycle to ``state``: the one under the
    prefix its own history used (``agent-session-`` is an alias), else the one named after
    the lifecycle."""
    types = [w for w, t in LIFECYCLES[status.lifecycle].definition.webhooks.items() if t == state]
    used = {h.webhook_type.rpartition("-")[0] for h in status.history}
    for w in types:
        if w.removesuffix(f"-{state}") in used:
            return w
    preferred = f"{status.lifecycle}-{state}"
    return preferred if preferred in types else types[0]


def _implies(
    status: ResourceStatus, state: str, fields: Mapping[str, object] | None = None
) -> Answer:
    """The answer that implies the webhook moving ``status``'s resource to ``state``,
    with its key fields and the non-null ``fields`` the REST answer gave."""
    ids = dict(zip(LIFECYCLES[status.lifecycle].definition.key_fields, status.key, strict=True))
    more = {k: v for k, v in (fields or {}).items() if v is not None and k not in ids}
    data = {**ids, **more}
    webhook = {"webhookType": _webhook_type(status, state), "data": data}
    return Answer(webhook, f"{status.lifecycle} {state}")


def _unknown(value: object) -> Answer:
    return Answer(None, f"unknown status {value!r}")


def _unknown_end() -> Answer:
    return Answer(None, "no end in the answer: running or not is unknown")


def _latest(items: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The item that started last (by ``start``, else ``createdAt``; ties: the later one)."""
    order = sorted(
        range(len(items)),
        key=lambda i: (str(items[i].get("start") or items[i].get("createdAt") or ""), i),
    )
    return items[order[-1]]


def _in_room(obj: Mapping[str, Any], meeting_id: str) -> bool:
    """Whether an answer about a session belongs to the room the webhooks named (an
    answer that gives no room is taken to)."""
    rooms = [obj.get(k) for k in ("roomId", "customRoomId", "meetingId")]
    given = [r for r in rooms if isinstance(r, str)]
    return not given or meeting_id in given


def _sent_failed(item: Mapping[str, Any], failed_type: str) -> bool:
    """Whether the item's webhook summary (``webhook.data[].type``) lists its failure."""
    summary = item.get("webhook")
    sent = summary.get("data") if isinstance(summary, Mapping) else None
    if not isinstance(sent, list):
        return False
    return any(isinstance(s, Mapping) and s.get("type") == failed_type for s in sent)


def _file_details(item: Mapping[str, Any]) -> list[dict[str, str]]:
    """A participant or track recording's ``files[]`` as a webhook's ``fileDetails``."""
    files = item.get("files")
    details = []
    for f in files if isinstance(files, list) else ():
        if isinstance(f, Mapping) and isinstance(f.get("fileUrl"), str):
            detail = {"filePath": f.get("filePath"), "fileUrl": f["fileUrl"]}
            details.append({k: v for k, v in detail.items() if isinstance(v, str)})
    return details


@attrs.frozen
class _Recorder:
    """How one recorder-like lifecycle is asked: a list endpoint filtered by its key."""

    path: str
    query: tuple[tuple[str, str], ...]
    """(query parameter, key field) pairs."""
    match: tuple[tuple[str, str], ...]
    """(item field, key field) pairs an item must not contradict."""
    has_files: bool
    """Its items carry the output files; without one, an ended item is not 'stopped'."""


_MEETING = (("roomId", "meetingId"), ("sessionId", "sessionId"))
_PARTICIPANT = (*_MEETING, ("participantId", "participantId"))
_RECORDERS = {
    "recording": _Recorder("/v2/recordings", _MEETING, _MEETING, True),
    "participant-recording": _Recorder(
        "/v2/recordings/participant", _PARTICIPANT, _PARTICIPANT, True
    ),
    "participant-track-recording": _Recorder(
        "/v2/recordings/participant/track", _PARTICIPANT, (*_PARTICIPANT, ("kind", "kind")), True
    ),
    "hls": _Recorder("/v2/hls/", _MEETING, _MEETING, False),
    "livestream": _Recorder("/v2/livestreams/", _MEETING, _MEETING, False),
}


class VideoSDK:
    """The :class:`Reconciler` of VideoSDK's REST API.

    ``api_key`` and ``secret`` are the account's API key and secret: each request carries
    a token signed with the secret (HS256; claims ``apikey``, ``permissions``
    ``["allow_join", "allow_mod"]``, ``version`` 2, ``roles`` ``["crawler"]``, ``iat``,
    ``exp`` 24 hours later; minted again a minute before it expires), sent raw in the
    ``Authorization`` header, with no ``Bearer`` prefix.

    At most ``rate`` requests a second are sent (a token bucket holding one request, so
    requests are spaced ``1 / rate`` seconds apart; None: no cap). A 429, a 5xx or a
    network error (a GET's) is tried again up to ``retries`` times, after ``Retry-After``
    when the answer has one (at most :data:`MAX_RETRY_AFTER` seconds), else after 1, 2,
    4 ... seconds (at most :data:`MAX_BACKOFF`) and a jitter of up to 0.25 s. ``timeout``
    bounds each request, in seconds. Lists are read ``per_page`` items a page.

    ``client`` is an ``httpx.Client`` to send with (it is not closed by :meth:`close`);
    one is made otherwise. ``clock`` (epoch seconds: it dates the tokens and fills the
    bucket), ``sleep`` and ``random`` (in [0, 1): the jitter) are there for tests.

    Raises :class:`~lifecycle.InvalidArgument` for a setting that cannot work: an empty
    key or secret, ``rate``, ``timeout`` or ``per_page`` not above zero, negative
    ``retries``.

    .. versionadded:: 0.3
    """

    def __init__(
        self,
        api_key: str,
        secret: str,
        base_url: str = "https://api.videosdk.live",
        *,
        rate: float | None = 5.0,
        timeout: float = 10.0,
        retries: int = 3,
        per_page: int = 20,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not api_key or not secret:
            raise InvalidArgument("VideoSDK needs an API key and its secret")
        if rate is not None and not rate > 0:
            raise InvalidArgument(f"rate must be above 0 requests a second (or None), not {rate}")
        if not timeout > 0:
            raise InvalidArgument(f"timeout must be above 0 seconds, not {timeout}")
        if retries < 0:
            raise InvalidArgument(f"retries must be 0 or more, not {retries}")
        if per_page < 1:
            raise InvalidArgument(f"per_page must be 1 or more, not {per_page}")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.rate = rate
        self.timeout = timeout
        self.retries = retries
        self.per_page = per_page
        self._secret = secret
        self._own_client = client is None
        self._client = httpx.Client() if client is None else client
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._lock = threading.Lock()
        self._tokens = 1.0
        self._filled_at: float | None = None
        self._jwt: str | None = None
        self._jwt_expires = 0.0

    def __repr__(self) -> str:
        return f"VideoSDK(api_key={self.api_key!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the HTTP client this reconciler made (not one it was given)."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> VideoSDK:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- asking ---------------------------------------------------------------------

    def ask(self, status: ResourceStatus) -> Answer:
        """What VideoSDK says about ``status``'s resource, and the webhook it implies.

        Raises :class:`~lifecycle.ProviderError` when VideoSDK refuses the credentials
        (401, 403), answers another 4xx (but 402 and 404, answered as ``"not found"``)
        or something that is not JSON, or keeps failing after every retry; and
        :class:`~lifecycle.InvalidArgument` for a lifecycle it does not know or a key of
        the wrong length.
        """
        lc = LIFECYCLES.get(status.lifecycle)
        if lc is None:
            raise InvalidArgument(f"no lifecycle named {status.lifecycle!r}")
        fields = lc.definition.key_fields
        if len(status.key) != len(fields):
            raise InvalidArgument(f"{status.lifecycle} resources are keyed by {', '.join(fields)}")
        ids = dict(zip(fields, status.key, strict=True))
        log: Log = []
        try:
            answer = self._ask(status, ids, log)
        except _NotFound:
            answer = Answer(None, NOT_FOUND)
        evidence = {"lifecycle": status.lifecycle, "key": list(status.key), "exchanges": log}
        return attrs.evolve(answer, evidence=evidence)

    def _ask(self, status: ResourceStatus, ids: dict[str, str], log: Log) -> Answer:
        name = status.lifecycle
        if name == "session":
            return self._session(status, ids, log)
        if name == "participant":
            return self._participant(status, ids, log)
        if name in _RECORDERS:
            return self._recorder(status, ids, _RECORDERS[name], log)
        if name == "transcription":
            return self._transcription(status, ids, log)
        if name == "merge-recording":
            return self._merge_recording(status, ids, log)
        if name == "ai-deployment-session":
            return self._ai_deployment_session(status, ids, log)
        if name == "resource":
            return Answer(None, "no REST status for resources")
        return Answer(None, f"no REST status for {name} resources")

    def _session(self, status: ResourceStatus, ids: dict[str, str], log: Log) -> Answer:
        body = _unwrap(self._get(f"/v2/sessions/{_segment(ids['sessionId'])}", {}, log))
        if not _in_room(body, ids["meetingId"]):
            return Answer(None, f"{NOT_FOUND}: the session belongs to room {body.get('roomId')!r}")
        value = body.get("status")
        if value == "ended":
            times = {"start": _text(body.get("start")), "end": _text(body.get("end"))}
            return _implies(status, "ended", times)
        if value == "ongoing":
            return Answer(None, STILL_RUNNING)
        return _unknown(value)

    def _participant(self, status: ResourceStatus, ids: dict[str, str], log: Log) -> Answer:
        def participants(body: Mapping[str, Any]) -> list[Any]:
            # `data` is one object holding `participants`; an array of such objects
            # (the active-participants form) is read too
            data = body.get("data")
            found: list[Any] = []
            for session in [data] if isinstance(data, Mapping) else data or ():
                if isinstance(session, Mapping) and _in_room(session, ids["meetingId"]):
                    people = session.get("participants")
                    found += people if isinstance(people, list) else []
            return found

        path = f"/v2/sessions/{_segment(ids['sessionId'])}/participants"
        mine = [
            p
            for p in self._list(path, {}, log, participants)
            if p.get("participantId") == ids["participantId"]
        ]
        if not mine:
            return Answer(None, NOT_FOUND)
        timelog = [t for p in mine for t in p.get("timelog") or () if isinstance(t, Mapping)]
        if not timelog:
            return Answer(None, "no timelog in the answer")
        if any(t.get("end") is None for t in timelog):
            return Answer(None, "still in the session")
        name = next((n for p in mine if isinstance(n := p.get("name"), str)), None)
        return _implies(status, "left", {"participantName": name})

    def _recorder(
        self, status: ResourceStatus, ids: dict[str, str], how: _Recorder, log: Log
    ) -> Answer:
        query = {param: ids[f] for param, f in how.query}
        items = [
            item
            for item in self._list(how.path, query, log)
            if all(item.get(k) in (None, ids[f]) for k, f in how.match)
            and not (status.lifecycle == "participant-recording" and item.get("mode") == "track")
        ]
        if not items:
            return Answer(None, NOT_FOUND)
        item = _latest(items)
        if _sent_failed(item, _webhook_type(status, "failed")):
            return _implies(status, "failed")
        if item.get("end", ...) is None:  # null while it runs
            return Answer(None, STILL_RUNNING)
        if not how.has_files:
            return _implies(status, "stopped") if "end" in item else _unknown_end()
        extra: dict[str, object]
        if status.lifecycle == "recording":
            file = item.get("file")
            file = file if isinstance(file, Mapping) else {}
            extra = {"filePath": _text(file.get("filePath")), "fileUrl": _text(file.get("fileUrl"))}
            done = extra["fileUrl"] is not None
        else:
            extra = {"fileDetails": _file_details(item)}
            if status.lifecycle == "participant-recording":
                extra["fileFormat"] = _text(item.get("fileFormat"))
            done = bool(extra["fileDetails"])
        if done:
            return _implies(status, "stopped", extra)
        if "end" not in item:
            return Answer(None, "no end and no file yet")
        return Answer(None, "ended without a file: the REST API does not say whether it failed")

    def _transcription(self, status: ResourceStatus, ids: dict[str, str], log: Log) -> Answer:
        kind = status.data.get("type")
        kinds = [kind] if kind in ("realtime", "post") else ["realtime", "post"]
        for k in kinds:
            try:
                body = self._get(f"/ai/v1/{k}-transcriptions/{_segment(ids['id'])}", {}, log)
            except _NotFound:
                continue
            body = _unwrap(body)
            value = body.get("status")
            if value == "running":
                return Answer(None, STILL_RUNNING)
            if value != "completed":
                return _unknown(value)
            where = body
            if k == "realtime":  # its room and session sit in the extension's config
                ext = body.get("extension")
                config = ext.get("extensionConfig") if isinstance(ext, Mapping) else None
                where = config if isinstance(config, Mapping) else {}
            meeting = _text(where.get("roomId")) or _text(status.data.get("meetingId"))
            session = _text(where.get("sessionId")) or _text(status.data.get("sessionId"))
            fields = {"type": k, "meetingId": meeting, "sessionId": session}
            return _implies(status, "stopped", fields)
        return Answer(None, NOT_FOUND)

    def _merge_recording(self, status: ResourceStatus, ids: dict[str, str], log: Log) -> Answer:
        path = f"/v2/recordings/participant/merge/{_segment(ids['id'])}"
        body = _unwrap(self._get(path, {}, log))
        value = body.get("status")
        if value not in ("completed", "failed"):
            return _unknown(value)
        meeting = _text(body.get("meetingId")) or _text(status.data.get("meetingId"))
        session = _text(body.get("sessionId")) or _text(status.data.get("sessionId"))
        return _implies(status, str(value), {"meetingId": meeting, "sessionId": session})

    def _ai_deployment_session(
        self, status: ResourceStatus, ids: dict[str, str], log: Log
    ) -> Answer:
        path = f"/ai/v1/ai-deployment-sessions/{_segment(ids['sessionId'])}"
        value = _unwrap(self._get(path, {}, log)).get("status")
        word = value.lower() if isinstance(value, str) else None
        if word in ("completed", "stopped"):
            return _implies(status, "stopped")
        if word == "failed":
            return _implies(status, "failed")
        if word in ("queued", "running", "stopping"):
            return Answer(None, STILL_RUNNING)
        return _unknown(value)

    # -- HTTP -----------------------------------------------------------------------

    def _list(
        self,
        path: str,
        query: Mapping[str, str],
        log: Log,
        items: Callable[[Mapping[str, Any]], Iterable[Any]] | str = "data",
    ) -> list[Mapping[str, Any]]:
        """Every item of a paged list: ``items`` is the list's key in the body
        (``data``, ``transcriptions``, ``recordings`` ...) or a function finding it.

        A page says whether another follows by ``pageInfo.lastPage`` (or
        ``pagination.totalPages``); without either, by ``pageInfo.totalItems``, else by
        being full. An answer with no page information is one page.
        """
        found: list[Mapping[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            body = self._get(path, {**query, "page": page, "perPage": self.per_page}, log)
            got = body.get(items) if isinstance(items, str) else items(body)
            got = [i for i in got if isinstance(i, Mapping)] if isinstance(got, list) else []
            found += got
            if not got or not _more_pages(body, page, len(found), len(got), self.per_page):
                return found
        raise ProviderError(f"GET {path}: still paging after {MAX_PAGES} pages")

    def _get(self, path: str, query: Mapping[str, str | int], log: Log) -> Mapping[str, Any]:
        """GET ``path``'s JSON object, retried, rate-capped, logged to ``log``.

        Raises :class:`_NotFound` for 402 and 404, :class:`ProviderError` when no useful
        answer comes.
        """
        target = f"{path}?{urlencode(query)}" if query else path
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            self._wait_for_rate()
            try:
                response = self._client.get(
                    self.base_url + target,
                    headers={"Authorization": self._token(), "Accept": "application/json"},
                    timeout=self.timeout,
                )
            except httpx.TransportError as e:
                if last:
                    raise ProviderError(
                        f"GET {target}: {type(e).__name__} {e} (after {attempt + 1} attempts)"
                    ) from e
                self._sleep(self._backoff(attempt))
                continue
            code = response.status_code
            if code == 429 or code >= 500:
                if last:
                    raise ProviderError(
                        f"GET {target}: {code}{_message(_body(response))} "
                        f"(after {attempt + 1} attempts)",
                        code,
                    )
                wait = _retry_after(response, self._clock())
                self._sleep(self._backoff(attempt) if wait is None else wait)
                continue
            body = _body(response)
            log.append({"method": "GET", "path": target, "status": code, "body": body})
            if code in (401, 403):
                raise ProviderError(
                    f"GET {target}: {code}{_message(body)}: VideoSDK refused the API key or "
                    "its token (check the key and secret)",
                    code,
                )
            if code in (402, 404):
                raise _NotFound
            if code >= 300:
                raise ProviderError(f"GET {target}: {code}{_message(body)}", code)
            if not isinstance(body, Mapping):
                raise ProviderError(
                    f"GET {target}: {code} with a body that is no JSON object", code
                )
            return body
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        return min(MAX_BACKOFF, BACKOFF * 2.0**attempt) + JITTER * self._random()

    def _wait_for_rate(self) -> None:
        """Take the bucket's one token, waiting until it is there again."""
        if self.rate is None:
            return
        with self._lock:
            now = self._clock()
            at = now if self._filled_at is None else self._filled_at
            if now > at:
                self._tokens = min(1.0, self._tokens + (now - at) * self.rate)
                at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self._filled_at = at
                return
            at += (1.0 - self._tokens) / self.rate  # when the token is back
            self._tokens, self._filled_at = 0.0, at
        self._sleep(at - now)

    def _token(self) -> str:
        """The current token, minted again :data:`REMINT_BEFORE` seconds before expiry."""
        with self._lock:
            now = self._clock()
            if self._jwt is None or now >= self._jwt_expires - REMINT_BEFORE:
                iat = int(now)
                claims = {
                    "apikey": self.api_key,
                    "permissions": ["allow_join", "allow_mod"],
                    "version": 2,
                    "roles": ["crawler"],
                    "iat": iat,
                    "exp": iat + TOKEN_LIFETIME,
                }
                self._jwt = jwt.encode(claims, self._secret, algorithm="HS256")
                self._jwt_expires = iat + TOKEN_LIFETIME
            return self._jwt


def _body(response: httpx.Response) -> Any:
    """The response's JSON, or its text (at most 2,000 characters) when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text[:2000]


def _retry_after(response: httpx.Response, now: float) -> float | None:
    """Seconds ``Retry-After`` asks to wait (a number or an HTTP date), capped; None
    when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _more_pages(body: Mapping[str, Any], page: int, seen: int, got: int, per_page: int) -> bool:
    """Whether another page follows ``page``."""

    def number(v: object) -> int | None:
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    info = body.get("pageInfo")
    paging = body.get("pagination")
    if isinstance(info, Mapping):
        last = number(info.get("lastPage"))
        if last is not None:
            return (number(info.get("currentPage")) or page) < last
    if isinstance(paging, Mapping):
        pages = number(paging.get("totalPages"))
        if pages is not None:
            return (number(paging.get("page")) or page) < pages
    if isinstance(info, Mapping):  # agent-cloud lists give no lastPage
        total = number(info.get("totalItems"))
        if total is not None:
            return seen < total
        return got >= per_page
    return False
