"""One cattrs converter: webhook payloads to event objects and back.

Payloads are checked once by :func:`inspect_data`, which both the converter and the
engine's hot path use: key fields must be non-empty strings (else
:class:`InvalidEvent`); a known field of the wrong type is not an error, it is kept as
received in ``extra`` with a warning naming it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Union

import attrs
import orjson
from cattrs import Converter
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.strategies import configure_tagged_union

from . import _events as ev
from ._lifecycles import WEBHOOK_TYPES
from .errors import DefinitionError, InvalidEvent

__all__ = [
    "AnyEvent",
    "converter",
    "decode",
    "dump_event",
    "encode_payload",
    "inspect_data",
    "parse_event",
]

Payload = Mapping[str, Any] | str | bytes | bytearray | memoryview
TAG, ALIAS = "webhookType", "type"
MAX_KEY_LENGTH = 100
"""The most characters a key field may hold: every key fits a database index (a
PostgreSQL B-tree row holds about 2.7 kB; four key fields of 100 characters, each at
most 6 bytes once escaped in JSON, stay under it)."""
MAX_DEPTH = 100
"""How deep ``data`` may nest objects and arrays (``data`` itself is level 1): stores and
pages write ``data`` back as JSON, nested a few levels further, and orjson stops at 254.
A body of at most ``2 * MAX_DEPTH`` bytes cannot nest deeper: the common case is free."""
_BASE = {"extra", "envelope", "tag_key", "warnings"}


def camel(name: str) -> str:
    """``playback_hls_url`` -> ``playbackHlsUrl``."""
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _type_name(v: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), type(v).__name__
    )


def parse_time(text: str) -> datetime | None:
    """An aware ``datetime`` (naive times are taken as UTC), or None if invalid."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def format_time(t: datetime) -> str:
    """VideoSDK's form: milliseconds and a numeric offset."""
    return t.isoformat(timespec="milliseconds" if t.microsecond % 1000 == 0 else "auto")


def _check_string(v: object) -> str | None:
    return None if isinstance(v, str) else f"expected a string, got {_type_name(v)}"


def _check_time(v: object) -> str | None:
    if not isinstance(v, str):
        return f"expected a timestamp string, got {_type_name(v)}"
    return None if parse_time(v) is not None else f"not a valid timestamp {v!r}, kept as text"


def _check_files(v: object) -> str | None:
    problem = "expected a list of {filePath, fileUrl} objects"
    if not isinstance(v, list):
        return problem
    for f in v:  # loops, not nested generators: this runs on every recording event
        if not isinstance(f, dict):
            return problem
        path, url = f.get("filePath"), f.get("fileUrl")
        if (path is not None and not isinstance(path, str)) or (
            url is not None and not isinstance(url, str)
        ):
            return problem
    return None


_CHECKS: dict[object, Callable[[object], str | None]] = {
    str: _check_string,
    str | None: _check_string,
    ev.Timestamp: _check_time,
    tuple[ev.FileDetail, ...] | None: _check_files,
}
"""How a ``data`` field of each type the event classes use is checked."""


@attrs.frozen
class _Spec:
    """What the converter and the engine check in the ``data`` of one webhook type."""

    webhook_type: str
    key: tuple[str, ...]
    checks: Mapping[str, Callable[[object], str | None]]
    wire: frozenset[str]
    getter: Callable[[Mapping[str, Any]], Any] = attrs.field(eq=False, repr=False)
    single: bool = False


def _spec(cls: type[ev.Event], key: tuple[str, ...]) -> _Spec:
    attrs.resolve_types(cls, globals(), vars(ev))
    checks = {}
    for a in attrs.fields(cls):
        if a.name in _BASE:
            continue
        check = _CHECKS.get(a.type)
        if check is None:
            raise DefinitionError(
                f"{cls.__name__}.{a.name}: no check for fields of type "
                f"{a.type!r}; add one to _CHECKS"
            )
        checks[camel(a.name)] = check
    for k in key:
        checks.pop(k)
    return _Spec(
        cls.webhook_type, key, checks, frozenset(checks) | set(key), itemgetter(*key), len(key) == 1
    )


SPECS: dict[str, _Spec] = {
    w: _spec(lc.event_classes[w], lc.definition.key_fields) for w, lc in WEBHOOK_TYPES.items()
}


def inspect_data(
    spec: _Spec, data: object, nested: bool = True
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Check ``data``: its key values, warnings, and the wire names of invalid fields.

    Raises :class:`InvalidEvent` when ``data`` is not an object, nests deeper than
    :data:`MAX_DEPTH`, or a key field is missing, not a string, empty, longer than
    :data:`MAX_KEY_LENGTH` or holds a NUL character. ``nested=False`` says that the
    payload cannot nest that deep (the caller counted its brackets): no need to look.
    """
    if type(data) is not dict:
        if not isinstance(data, Mapping):
            what = "is missing" if data is None else f"must be an object, got {_type_name(data)}"
            raise InvalidEvent(f"{spec.webhook_type}: data {what}")
        data = dict(data)
    try:
        key = spec.getter(data)
        if spec.single:
            key = (key,)
        # join raises TypeError unless every key value is a string; NUL no database keeps
        joined = "".join(key)
        if (
            "" in key
            or "\x00" in joined
            or (len(joined) > MAX_KEY_LENGTH and max(map(len, key)) > MAX_KEY_LENGTH)
        ):
            raise TypeError
    except (KeyError, TypeError):
        _check_key(spec, data)
    if nested and _too_deep(data):
        raise InvalidEvent(
            f"{spec.webhook_type}: data nests objects or arrays more than {MAX_DEPTH} levels deep"
        )
    warnings: tuple[str, ...] = ()  # tuples: nothing is allocated when all is well
    bad: tuple[str, ...] = ()
    if len(data) > len(key):
        checks = spec.checks
        for k in data:
            check = checks.get(k)
            if check is not None:
                v = data[k]
                if v is None or (check is _check_string and type(v) is str):
                    continue
                problem = check(v)
                if problem is not None:
                    warnings += (f"invalid_field: data.{k}: {problem}",)
                    if check is not _check_time or not isinstance(v, str):
                        bad += (k,)  # moved to extra; a bad time string stays as text
    return key, warnings, bad


def keyable(value: object) -> bool:
    """Whether ``value`` may be a key value: a non-empty string that every database can
    keep and index (no NUL, at most :data:`MAX_KEY_LENGTH` characters)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_KEY_LENGTH and "\x00" not in value


def _check_key(spec: _Spec, data: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidEvent` for the first invalid key field of ``data``."""
    for f in spec.key:
        v = data.get(f)
        if not keyable(v):
            why = (
                "is missing"
                if v is None
                else "is empty"
                if v == ""
                else f"must be a string, got {_type_name(v)}"
                if not isinstance(v, str)
                else "contains a NUL character"
                if "\x00" in v
                else f"is longer than {MAX_KEY_LENGTH} characters ({len(v)})"
            )
            raise InvalidEvent(f"{spec.webhook_type}: data.{f} {why}")


def _too_deep(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` nests mappings or sequences more than :data:`MAX_DEPTH` levels."""
    stack: list[tuple[Mapping[str, Any] | list[Any] | tuple[Any, ...], int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        inner = value.values() if isinstance(value, Mapping) else value
        stack.extend((v, depth + 1) for v in inner if isinstance(v, Mapping | list | tuple))
    return False


def decode(payload: Payload) -> tuple[Mapping[str, Any], str, str]:
    """The envelope of ``payload``, the key its type came under, and the type.

    Raises :class:`InvalidEvent` naming the problem.
    """
    kind = type(payload)
    if kind is bytes or kind is str or isinstance(payload, bytes | bytearray | memoryview | str):
        try:
            env: object = orjson.loads(payload)  # type: ignore[arg-type]
        except orjson.JSONDecodeError as e:
            raise InvalidEvent(f"not JSON: {e}") from None
    elif isinstance(payload, Mapping):
        env = payload
    else:
        raise InvalidEvent(f"payload must be a mapping, str or bytes, got {kind.__name__}")
    if type(env) is not dict and not isinstance(env, Mapping):
        raise InvalidEvent(f"not a JSON object, got {_type_name(env)}")
    tag = env.get(TAG)
    key = TAG
    if tag is None:
        key = ALIAS
        tag = env.get(ALIAS)
        if tag is None:
            raise InvalidEvent("no webhookType: the payload has neither 'webhookType' nor 'type'")
    if type(tag) is not str and not isinstance(tag, str):
        raise InvalidEvent(f"{key} must be a string, got {_type_name(tag)}")
    return env, key, tag


def _tag_of(cls: type[Any]) -> str:
    return str(cls.webhook_type)


def _make_converter() -> Converter:
    conv = Converter()

    def time_hook(v: Any, _: Any) -> ev.Timestamp:
        return None if v is None else parse_time(v) or v

    conv.register_structure_hook_func(lambda t: t == ev.Timestamp, time_hook)
    conv.register_unstructure_hook(datetime, format_time)

    def overrides(cls: type[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """camelCase renames; the base fields travel under ``__name__`` or not at all."""
        names = [a.name for a in attrs.fields(cls)]
        struct = {n: override(rename=f"__{n}__" if n in _BASE else camel(n)) for n in names}
        unstruct = {n: override(omit=True) if n in _BASE else struct[n] for n in names}
        return struct, unstruct

    def with_extra(cls: type[Any]) -> None:
        wire = {camel(a.name) for a in attrs.fields(cls) if a.name not in _BASE}
        s_over, u_over = overrides(cls)
        struct = make_dict_structure_fn(cls, conv, **s_over)
        unstruct = make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **u_over)
        conv.register_structure_hook(
            cls,
            lambda d, _: struct(
                {
                    **{k: v for k, v in d.items() if k in wire and v is not None},
                    "__extra__": {k: v for k, v in d.items() if k not in wire or v is None},
                },
                cls,
            ),
        )
        conv.register_unstructure_hook(cls, lambda o: {**unstruct(o), **o.extra})

    with_extra(ev.FileDetail)
    for w, lc in WEBHOOK_TYPES.items():
        cls, spec = lc.event_classes[w], SPECS[w]
        s_over, u_over = overrides(cls)
        struct = make_dict_structure_fn(cls, conv, **s_over)
        unstruct = make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **u_over)

        def structure(
            env: Mapping[str, Any], cl: type[Any], _s: Any = struct, _spec: _Spec = spec
        ) -> ev.Event:
            data = env.get("data")
            _, warnings, bad = inspect_data(_spec, data)
            assert isinstance(data, Mapping)
            known = {
                k: v for k, v in data.items() if k in _spec.wire and v is not None and k not in bad
            }
            known["__extra__"] = {k: v for k, v in data.items() if k not in known}
            known["__envelope__"] = {k: v for k, v in env.items() if k not in (TAG, "data")}
            known["__warnings__"] = tuple(warnings)
            result: ev.Event = _s(known, cl)
            return result

        def unstructure(o: ev.Event, _u: Any = unstruct) -> dict[str, Any]:
            return {"data": {**_u(o), **o.extra}, **o.envelope}

        conv.register_structure_hook(cls, structure)
        conv.register_unstructure_hook(cls, unstructure)
    configure_tagged_union(AnyEvent, conv, tag_generator=_tag_of, tag_name=TAG)
    return conv


AnyEvent: Any = Union[  # noqa: UP007 - a runtime union of the generated classes
    tuple(lc.event_classes[w] for w, lc in WEBHOOK_TYPES.items())
]


@functools.cache
def converter() -> Converter:
    """The converter of every webhook event (camelCase on the wire), built when first used."""
    return _make_converter()


def parse_event(payload: Payload) -> ev.Event | ev.UnknownEvent:
    """Parse one webhook payload (a mapping, or JSON text or bytes) into its event.

    An unknown ``webhookType`` gives an :class:`UnknownEvent` holding the payload.
    Raises :class:`InvalidEvent` naming the problem when the payload is not a webhook.

    .. versionadded:: 0.1
    """
    env, key, tag = decode(payload)
    if tag not in WEBHOOK_TYPES:
        return ev.UnknownEvent(webhook_type=tag, payload=dict(env))
    original = env
    if key == ALIAS:
        env = {**{k: v for k, v in env.items() if k not in (TAG, ALIAS)}, TAG: tag}
    try:
        event: ev.Event = converter().structure(env, AnyEvent)
    except InvalidEvent:
        raise
    except Exception as e:  # a converter error the checks did not foresee
        raise InvalidEvent(f"{tag}: {e}") from e
    if key == ALIAS:  # a "webhookType": null beside the alias stays in the envelope
        kept = {TAG: original[TAG]} if TAG in original else {}
        event = attrs.evolve(event, tag_key=ALIAS, envelope={**event.envelope, **kept})
    return event


def dump_event(event: ev.Event | ev.UnknownEvent) -> dict[str, Any]:
    """The payload of ``event``, as it came: the inverse of :func:`parse_event`.

    .. versionadded:: 0.1
    """
    if isinstance(event, ev.UnknownEvent):
        return dict(event.payload)
    out: dict[str, Any] = converter().unstructure(event, AnyEvent)
    if event.tag_key != TAG:
        out[event.tag_key] = out.pop(TAG)
        if TAG in event.envelope:
            out[TAG] = event.envelope[TAG]
    return out


def encode_payload(payload: Payload) -> tuple[bytes, str]:
    """The payload as stored: its bytes and how to give it back (bytes, text, json, repr)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload), "bytes"
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass"), "text"
    if isinstance(payload, Mapping):
        try:
            return _dumps(dict(payload)), "json"
        except TypeError:  # e.g. a reference cycle
            pass
    return repr(payload).encode("utf-8", "backslashreplace"), "repr"


def _jsonable(value: object) -> object:
    """What a value JSON does not know becomes: a list for sets and tuples, else its text."""
    return list(value) if isinstance(value, set | frozenset | tuple) else str(value)


def _dumps(value: object) -> bytes:
    """JSON of a payload or data mapping as given in Python (any value, any key)."""
    return orjson.dumps(value, default=_jsonable, option=orjson.OPT_NON_STR_KEYS)
