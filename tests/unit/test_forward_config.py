"""What a --forward says: its endpoint, the types it wants, and the settings refused."""

from __future__ import annotations

import pytest

from lifecycle import Change, ConfigError, Outcome
from lifecycle.server import ServerConfig
from lifecycle.server._config import check
from lifecycle.server._forward import Endpoint, body_of, message_type, parse_endpoint, signer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def change(lifecycle: str, after: str, outcome: Outcome = Outcome.APPLIED) -> Change:
    return Change(7, 9, outcome, lifecycle, ("m", "s"), None, "started", after, (), 0.0, {})


@pytest.mark.parametrize(
    ("text", "url", "patterns"),
    [
        ("https://a.example/hook", "https://a.example/hook", ()),
        ("https://a.example/h=recording.stopped", "https://a.example/h", ("recording.stopped",)),
        ("http://h:8/x=recording.*,hls.playable", "http://h:8/x", ("recording.*", "hls.playable")),
        ("https://a.example/h?token=abc", "https://a.example/h?token=abc", ()),  # a query's =
        ("https://a.example/h?x=1=hls.*", "https://a.example/h?x=1", ("hls.*",)),
    ],
)  # fmt: skip
def test_an_endpoint_is_a_url_and_maybe_the_types_it_wants(
    text: str, url: str, patterns: tuple[str, ...]
) -> None:
    assert Endpoint(url, patterns) == parse_endpoint(text)


@pytest.mark.parametrize("text", ["ftp://a.example/x", "a.example/x", "https://", ""])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="http"):
        parse_endpoint(text)


def test_types_are_lifecycle_dot_state_or_overdue() -> None:
    stopped, flag = change("recording", "stopped"), change("hls", "started", Outcome.OVERDUE)
    assert ("recording.stopped", "hls.overdue") == (message_type(stopped), message_type(flag))
    wanted = Endpoint("https://x/", ("recording.stop*", "hls.overdue"))
    assert (True, True) == (wanted.wants(stopped), wanted.wants(flag))
    assert not wanted.wants(change("recording", "started"))
    assert Endpoint("https://x/").wants(change("participant", "joined"))
    assert '"type":"recording.stopped"' in body_of(stopped)
    assert "msg_" + Endpoint("https://x/").id + "_7" == Endpoint("https://x/").message_id(stopped)
    assert "https://h:8/p" == Endpoint("https://u:pw@h:8/p?token=s").label  # hides secrets


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"forward": ("https://x/",)}, "--forward-secret"),
        ({"forward": ("https://x/",), "forward_secret": "not-base64!"}, "not a Standard Webhooks"),
        ({"forward": ("https://x/",), "forward_secret": SECRET, "db": "memory://"}, "database"),
        ({"forward": ("nope",), "forward_secret": SECRET}, "http(s) URL"),
        ({"forward": ("https://x/",), "forward_secret": SECRET, "forward_retry_for": 0}, "retry"),
    ],
)
def test_forward_settings_that_cannot_work_are_refused(settings: dict, words: str) -> None:  # type: ignore[type-arg]
    config = ServerConfig(insecure_no_signature=True, **settings)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check(config)


def test_a_good_forward_setting_passes() -> None:
    check(
        ServerConfig(
            insecure_no_signature=True, forward=("https://x/=hls.*",), forward_secret=SECRET
        )
    )
    assert signer(SECRET) is not None
