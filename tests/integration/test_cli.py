"""The ``lifecycle`` command line, run as a subprocess on real files.

Expectations come from the engine: the same input fed to ``Engine()`` in-process.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from lifecycle import LIFECYCLES, Engine, FeedResult, Outcome, ResourceStatus
from lifecycle._simulate import stream

import support
from support import EXAMPLES_FILE

ENV_NAMES = (
    "LIFECYCLE_DB",
    "LIFECYCLE_TOKEN",
    "LIFECYCLE_PUBLIC_KEY",
    "FORCE_COLOR",
    "COLUMNS",
    "TTY_COMPATIBLE",
)
COMMANDS = ["replay", "status", "anomalies", "diagram", "simulate", "serve"]
ROW = re.compile(r"^\s*(\d+)\s+({})\s".format("|".join(o.value for o in Outcome)))
"""A table row of an anomaly: its seq and outcome first."""
HLS_START = b'{"webhookType": "hls-starting", "data": {"meetingId": "m", "sessionId": "s"}}'


def lifecycle(
    *args: str | Path,
    cwd: Path,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """``python -m lifecycle ARGS`` in ``cwd``, with none of its variables set unless given
    (``prefix``: the command that runs it, e.g. as another user)."""
    clean = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "lifecycle", *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env={**clean, **(env or {})},
        check=False,
        timeout=120,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def on_terminal(*args: str | Path, cwd: Path, columns: int) -> str:
    """The stdout of ``python -m lifecycle ARGS`` on a terminal ``columns`` wide (a pty of
    that size, and ``COLUMNS``), its colours and styles taken out."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    clean = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    process = subprocess.Popen(
        [sys.executable, "-m", "lifecycle", *map(str, args)],
        cwd=cwd,
        stdout=child,
        stderr=subprocess.DEVNULL,
        env={**clean, "COLUMNS": str(columns)},
    )
    os.close(child)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert 0 == process.wait(timeout=120)
    return re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode()).replace("\r\n", "\n")


def json_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def fed(lines: Iterable[Any]) -> Engine:
    """An in-memory engine fed ``lines``: what the command line should find."""
    engine = Engine()
    engine.feed_many(lines)
    return engine


def states(resources: Iterable[ResourceStatus]) -> list[tuple[str, list[str], str]]:
    return [(s.lifecycle, list(s.key), s.state) for s in resources]


def json_states(resources: list[dict[str, Any]]) -> list[tuple[str, list[str], str]]:
    return [(r["lifecycle"], list(r["key"].values()), r["state"]) for r in resources]


def seq_outcomes(results: Iterable[FeedResult]) -> list[tuple[int, str]]:
    return [(r.seq, r.outcome.value) for r in results]


def json_seq_outcomes(results: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(r["seq"], r["outcome"]) for r in results]


def outcome_counts(results: Iterable[FeedResult]) -> dict[str, int]:
    counts = Counter(r.outcome for r in results)
    return {o.value: counts[o] for o in Outcome}


def assert_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Status 2 and one ``error:`` line on stderr that names ``words``."""
    assert (2, "", 1) == (result.returncode, result.stdout, len(result.stderr.splitlines()))
    assert result.stderr.startswith("error: ")
    assert [] == [w for w in words if w not in result.stderr]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A database path, filled with the provider's examples."""
    path = tmp_path / "examples.db"
    assert 0 == lifecycle("replay", "--db", path, EXAMPLES_FILE, cwd=tmp_path).returncode
    return path


@pytest.fixture
def examples_engine() -> Engine:
    return fed(json_lines(EXAMPLES_FILE))


# -- replay ------------------------------------------------------------------------------


def test_replay_json_reports_what_the_engine_finds(tmp_path: Path, examples_engine: Engine) -> None:
    """replay --format json gives the engine's outcome counts, resources and anomalies."""
    lines = json_lines(EXAMPLES_FILE)
    result = lifecycle("replay", "--format", "json", EXAMPLES_FILE, cwd=tmp_path)
    report = json.loads(result.stdout)
    expected = fed([])
    results = expected.feed_many(lines)
    assert (0, "") == (result.returncode, result.stderr)
    assert len(lines) == report["events"]
    assert outcome_counts(results) == report["outcomes"]
    assert states(expected.resources()) == json_states(report["resources"])
    assert seq_outcomes(expected.anomalies()) == json_seq_outcomes(report["anomalies"])


def test_replay_paging_hint_names_the_database(tmp_path: Path) -> None:
    """Beyond the table's rows, replay prints a command for the rest: pasted as is, it reads
    the database replay wrote, and lists exactly the anomalies the table left out."""
    webhooks = tmp_path / "webhooks.jsonl"
    webhooks.write_text("{not json\n" * 130)
    db = tmp_path / "a folder" / "state.db"
    db.parent.mkdir()
    result = lifecycle("replay", "--db", db, webhooks, cwd=tmp_path)
    hint = result.stdout.splitlines()[-1]
    count, _, command = hint.partition(" more: ")
    assert (0, "30") == (result.returncode, count)
    rest = lifecycle(*shlex.split(command)[1:], "--format", "json", cwd=tmp_path)
    assert list(range(101, 131)) == [a["seq"] for a in json.loads(rest.stdout)]


def test_replay_table_shows_state_counts_outcomes_and_anomalies(
    tmp_path: Path, examples_engine: Engine
) -> None:
    """The table output has a row per (lifecycle, state), the outcome line and each anomaly."""
    result = lifecycle("replay", EXAMPLES_FILE, cwd=tmp_path)
    rows = {tuple(line.split()) for line in result.stdout.splitlines()}
    counts = examples_engine.state_counts()
    expected_rows = {
        (name, state, str(n)) for name, per in counts.items() for state, n in per.items()
    }
    anomalies = examples_engine.anomalies()
    summary = "events: {} ({}), anomalies: {}".format(
        examples_engine.events_fed,
        ", ".join(
            f"{o} {n}"
            for o, n in outcome_counts(fed([]).feed_many(json_lines(EXAMPLES_FILE))).items()
        ),
        len(anomalies),
    )
    anomaly_rows = [line.split()[:2] for line in result.stdout.splitlines() if ROW.match(line)]
    assert (0, "") == (result.returncode, result.stderr)
    assert set() == expected_rows - rows
    assert summary in result.stdout.splitlines()
    assert [[str(a.seq), a.outcome.value] for a in anomalies] == anomaly_rows


def test_replay_reports_only_this_run(tmp_path: Path) -> None:
    """A second replay into the same database counts only its own events and anomalies."""
    lines = json_lines(EXAMPLES_FILE)
    first = lifecycle("replay", "--db", "x.db", "--format", "json", EXAMPLES_FILE, cwd=tmp_path)
    second = lifecycle("replay", "--db", "x.db", "--format", "json", EXAMPLES_FILE, cwd=tmp_path)
    engine = fed(lines)
    again = engine.feed_many(lines)
    report = json.loads(second.stdout)
    assert (0, 0) == (first.returncode, second.returncode)
    assert outcome_counts(again) == report["outcomes"]
    assert seq_outcomes(engine.anomalies(after=len(lines))) == json_seq_outcomes(
        report["anomalies"]
    )


def test_replay_lists_only_the_resources_it_touched(tmp_path: Path) -> None:
    """Resources already in the database that this run did not reach are not reported."""
    other = tmp_path / "other.jsonl"
    other.write_bytes(HLS_START + b"\n")
    lifecycle("replay", "--db", "x.db", EXAMPLES_FILE, cwd=tmp_path)
    report = json.loads(
        lifecycle("replay", "--db", "x.db", "--format", "json", other, cwd=tmp_path).stdout
    )
    assert [("hls", ["m", "s"], "starting")] == json_states(report["resources"])


def test_json_array_file_is_fed_like_its_json_lines(tmp_path: Path) -> None:
    """A file holding one JSON array (after blank space) gives what its JSON lines give."""
    payloads = [json.loads(line) for line in json_lines(EXAMPLES_FILE)]
    array_file = tmp_path / "examples.json"
    array_file.write_text("\n  \n" + json.dumps(payloads, indent=2))
    lines = json.loads(
        lifecycle("replay", "--db", "a.db", "--format", "json", EXAMPLES_FILE, cwd=tmp_path).stdout
    )
    array = json.loads(
        lifecycle("replay", "--db", "b.db", "--format", "json", array_file, cwd=tmp_path).stdout
    )
    engine = fed(payloads)
    assert lines["outcomes"] == array["outcomes"]
    assert states(engine.resources()) == json_states(array["resources"])
    assert seq_outcomes(engine.anomalies()) == json_seq_outcomes(array["anomalies"])


def test_json_array_elements_that_are_not_webhooks_are_malformed(tmp_path: Path) -> None:
    """Array elements are fed as parsed: a number is a malformed result, not an error."""
    array_file = tmp_path / "a.json"
    array_file.write_bytes(b"[" + HLS_START + b", 5, []]")
    report = json.loads(lifecycle("replay", "--format", "json", array_file, cwd=tmp_path).stdout)
    elements: list[Any] = [json.loads(HLS_START), 5, []]
    expected = fed([]).feed_many(elements)
    assert outcome_counts(expected) == report["outcomes"]
    assert 2 == report["outcomes"]["malformed"]


def test_stdin_is_read_for_dash(tmp_path: Path) -> None:
    """``replay -`` reads the webhooks from stdin, as it would the file."""
    from_file = json.loads(
        lifecycle("replay", "--db", "a.db", "--format", "json", EXAMPLES_FILE, cwd=tmp_path).stdout
    )
    from_stdin = json.loads(
        lifecycle(
            "replay",
            "--db",
            "b.db",
            "--format",
            "json",
            "-",
            cwd=tmp_path,
            stdin=EXAMPLES_FILE.read_bytes(),
        ).stdout
    )
    assert (from_file["outcomes"], json_states(from_file["resources"])) == (
        from_stdin["outcomes"],
        json_states(from_stdin["resources"]),
    )


def test_bad_lines_are_malformed_and_kept_as_they_came(tmp_path: Path) -> None:
    """Blank lines are skipped; every other line is logged byte for byte, a bad one malformed."""
    lines = [
        b'{"webhookType" : "hls-starting",   "data": {"meetingId": "m", "sessionId": "s"}}',
        b"{not json",
        b'{"webhookType": "hls-started"}',
        b"[1, 2]",
    ]
    path = tmp_path / "w.jsonl"
    path.write_bytes(b"\n".join([lines[0], b"", b"   ", *lines[1:]]) + b"\n\n")
    report = json.loads(
        lifecycle("replay", "--db", "x.db", "--format", "json", path, cwd=tmp_path).stdout
    )
    with closing(Engine.open(tmp_path / "x.db")) as engine:
        logged = [r.payload for r in engine.log()]
    assert outcome_counts(fed([]).feed_many(lines)) == report["outcomes"]
    assert lines == logged


def test_batch_size_does_not_change_the_results(tmp_path: Path) -> None:
    """--batch 7 classifies every event as the default batch does."""

    def run(db: str, *more: str) -> dict[str, Any]:
        return dict(
            json.loads(
                lifecycle(
                    "replay", "--db", db, "--format", "json", *more, EXAMPLES_FILE, cwd=tmp_path
                ).stdout
            )
        )

    default, small = run("a.db"), run("b.db", "--batch", "7")
    assert (
        default["outcomes"],
        json_states(default["resources"]),
        json_seq_outcomes(default["anomalies"]),
    ) == (small["outcomes"], json_states(small["resources"]), json_seq_outcomes(small["anomalies"]))


@pytest.mark.parametrize("anomalous", [True, False])
def test_fail_on_anomaly_sets_status_1(tmp_path: Path, anomalous: bool) -> None:
    """--fail-on-anomaly exits 1 exactly when the run found an anomaly."""
    path = tmp_path / "w.jsonl"
    lines = json_lines(EXAMPLES_FILE) if anomalous else [HLS_START]
    assert anomalous == bool(fed(lines).anomalies())  # the input is what the case says
    path.write_bytes(b"\n".join(lines))
    result = lifecycle("replay", "--fail-on-anomaly", path, cwd=tmp_path)
    assert (1 if anomalous else 0) == result.returncode


def test_fail_on_anomaly_looks_at_this_run_only(tmp_path: Path) -> None:
    """A clean run exits 0 with --fail-on-anomaly though earlier runs stored anomalies."""
    earlier, clean = tmp_path / "earlier.jsonl", tmp_path / "clean.jsonl"
    earlier.write_bytes(b"not json\n")
    clean.write_bytes(HLS_START)
    assert 1 == lifecycle("replay", "--fail-on-anomaly", earlier, cwd=tmp_path).returncode
    assert 0 == lifecycle("replay", "--fail-on-anomaly", clean, cwd=tmp_path).returncode


def test_default_database_is_lifecycle_db_in_the_current_folder(tmp_path: Path) -> None:
    """Without --db or LIFECYCLE_DB, replay stores into ./lifecycle.db."""
    lifecycle("replay", EXAMPLES_FILE, cwd=tmp_path)
    with closing(Engine.open(tmp_path / "lifecycle.db")) as engine:
        found = states(engine.resources())
    assert states(fed(json_lines(EXAMPLES_FILE)).resources()) == found


def test_lifecycle_db_variable_names_the_database(tmp_path: Path) -> None:
    """LIFECYCLE_DB is the database of replay and of the queries when --db is not given."""
    env = {"LIFECYCLE_DB": str(tmp_path / "env.db")}
    lifecycle("replay", EXAMPLES_FILE, cwd=tmp_path, env=env)
    listed = json.loads(lifecycle("status", "--format", "json", cwd=tmp_path, env=env).stdout)
    assert states(fed(json_lines(EXAMPLES_FILE)).resources()) == json_states(listed)
    assert not (tmp_path / "lifecycle.db").exists()


def test_missing_file_is_an_error_before_anything_is_stored(tmp_path: Path) -> None:
    """A missing FILE is one error line, status 2, and no database is created."""
    result = lifecycle("replay", EXAMPLES_FILE, "nope.jsonl", cwd=tmp_path)
    assert_error(result, "nope.jsonl")
    assert not (tmp_path / "lifecycle.db").exists()


def test_broken_json_array_is_an_error(tmp_path: Path) -> None:
    """A file starting with ``[`` that is not a JSON array is one error line, status 2."""
    path = tmp_path / "broken.json"
    path.write_text('[{"webhookType": ')
    assert_error(lifecycle("replay", path, cwd=tmp_path), "broken.json", "JSON array")


@pytest.mark.parametrize(
    ("url", "word"), [("nowhere/x.db", "nowhere"), ("mysql://h/db", "unsupported")]
)
def test_unopenable_database_is_an_error(tmp_path: Path, url: str, word: str) -> None:
    """A database that cannot be opened, or an unknown URL, is one error line, status 2."""
    assert_error(lifecycle("replay", "--db", url, EXAMPLES_FILE, cwd=tmp_path), word)


def test_large_input_off_a_terminal_prints_no_progress(tmp_path: Path) -> None:
    """More than 5,000 events with stderr not a terminal: stderr stays empty."""
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in stream(250, seed=1)))
    result = lifecycle("replay", "--format", "json", path, cwd=tmp_path)
    events = len(json_lines(path))
    assert events > 5_000
    assert (0, "", events) == (
        result.returncode,
        result.stderr,
        json.loads(result.stdout)["events"],
    )


def test_large_input_on_a_terminal_shows_a_progress_bar(tmp_path: Path) -> None:
    """With stderr a terminal, a big replay draws a progress bar there; stdout is unchanged."""
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in stream(250, seed=1)))
    main, child = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    with open(tmp_path / "out.json", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lifecycle", "replay", "--format", "json", str(path)],
            cwd=tmp_path,
            stdout=out,
            stderr=child,
            env=clean,
        )
    os.close(child)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    status = process.wait(timeout=120)
    reader.join(timeout=10)
    os.close(main)
    assert 0 == status
    assert b"replaying" in b"".join(chunks)
    assert len(json_lines(path)) == json.loads((tmp_path / "out.json").read_bytes())["events"]


# -- status ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"lifecycle": "recording"},
        {"meeting_id": "jvsg-8rjn-j304", "state": "stopped"},
        {"session_id": "613731342f27f56e4fc4b6d0", "lifecycle": "participant"},
        {"limit": 3},
    ],
)
def test_status_lists_the_engine_resources(
    tmp_path: Path, db: Path, examples_engine: Engine, filters: dict[str, Any]
) -> None:
    """status --format json lists what engine.resources(filters) gives."""
    flags = {
        "lifecycle": "--lifecycle",
        "meeting_id": "--meeting",
        "session_id": "--session",
        "state": "--state",
        "limit": "--limit",
    }
    args = [x for name, value in filters.items() for x in (flags[name], str(value))]
    result = lifecycle("status", "--db", db, "--format", "json", *args, cwd=tmp_path)
    expected = examples_engine.resources(
        **{k: v for k, v in filters.items() if k != "limit"}, limit=filters.get("limit")
    )
    assert (0, "") == (result.returncode, result.stderr)
    assert states(expected) == json_states(json.loads(result.stdout))


def test_status_table_has_a_row_per_resource(
    tmp_path: Path, db: Path, examples_engine: Engine
) -> None:
    """The status table shows each resource's lifecycle, key joined by /, and state."""
    result = lifecycle("status", "--db", db, cwd=tmp_path)
    rows = [
        line.split()[:3]
        for line in result.stdout.splitlines()
        if line.split() and line.split()[0] in LIFECYCLES
    ]
    expected = [(s.lifecycle, "/".join(s.key), s.state) for s in examples_engine.resources()]
    # a long key folds onto the next line: its first part is on the row
    assert len(expected) == len(rows)
    assert [] == [
        (r, e)
        for r, e in zip(rows, expected, strict=True)
        if (r[0], r[2]) != (e[0], e[2]) or not e[1].startswith(r[1])
    ]


def test_status_of_one_resource_has_its_history(
    tmp_path: Path, db: Path, examples_engine: Engine
) -> None:
    """``status LIFECYCLE KEY...`` gives the resource's state, data and history."""
    key = ("jvsg-8rjn-j304", "613731342f27f56e4fc4b6d0")
    expected = examples_engine.status("recording", *key)
    assert expected is not None
    result = lifecycle("status", "--db", db, "--format", "json", "recording", *key, cwd=tmp_path)
    shown = json.loads(result.stdout)
    assert (expected.state, dict(expected.data)) == (shown["state"], shown["data"])
    assert [(h.seq, h.webhook_type, h.outcome.value) for h in expected.history] == [
        (h["seq"], h["webhook_type"], h["outcome"]) for h in shown["history"]
    ]


def test_status_of_one_resource_as_a_table(
    tmp_path: Path, db: Path, examples_engine: Engine
) -> None:
    """The table of one resource shows its state and one history row per entry."""
    key = ("jvsg-8rjn-j304", "613731342f27f56e4fc4b6d0")
    expected = examples_engine.status("hls", *key)
    assert expected is not None
    lines = lifecycle("status", "--db", db, "hls", *key, cwd=tmp_path).stdout.splitlines()
    history = [line.split()[:3] for line in lines if re.match(r"^\s*\d+\s+hls-", line)]
    assert ["state", expected.state] in [line.split() for line in lines]
    assert [[str(h.seq), h.webhook_type, h.outcome.value] for h in expected.history] == history


def shown(text: str) -> Counter[str]:
    """Every character a table output shows, but spaces and rules (folding moves them)."""
    return Counter(re.sub(r"[\s─]", "", text))


@pytest.mark.parametrize("columns", [20, 40, 60, 72, 80])
@pytest.mark.parametrize(
    ("args", "widest"),
    [
        (["replay", EXAMPLES_FILE], 6),
        (["status"], 4),
        (["anomalies"], 6),
        (["status", "hls", "jvsg-8rjn-j304", "613731342f27f56e4fc4b6d0"], 4),
    ],
    ids=["replay", "status", "anomalies", "one-resource"],
)
def test_tables_on_a_narrow_terminal_lose_no_character(
    tmp_path: Path, db: Path, args: list[str], widest: int, columns: int
) -> None:
    """On a terminal of any width the tables show every character they show in a file,
    folded, in lines as wide as the terminal, or 5 columns per column of the widest table
    when the terminal is narrower (the terminal then wraps them)."""
    fresh = iter([tmp_path / "wide.db", tmp_path / "narrow.db"])

    def database() -> Path:  # replay reports its own run: each run a new database
        return next(fresh) if args[0] == "replay" else db

    wide = lifecycle(*args, "--db", database(), cwd=tmp_path)
    narrow = on_terminal(*args, "--db", database(), cwd=tmp_path, columns=columns)
    assert (0, "") == (wide.returncode, wide.stderr)
    assert shown(wide.stdout) == shown(narrow)
    assert max(columns, 5 * widest) == max(len(line) for line in narrow.splitlines())


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["recording", "no-such", "key"], ["no recording with key no-such/key"]),
        (["recording", "only-one"], ["meetingId", "sessionId"]),
        (["bogus", "x"], ["unknown lifecycle 'bogus'", *LIFECYCLES]),
        (["--lifecycle", "bogus"], ["unknown lifecycle 'bogus'", *LIFECYCLES]),
        (["recording", "m", "s", "--state", "stopped"], ["not both"]),
    ],
)
def test_status_errors(tmp_path: Path, db: Path, args: list[str], words: list[str]) -> None:
    """A missing resource, a wrong key, an unknown lifecycle: one error line, status 2."""
    assert_error(lifecycle("status", "--db", db, *args, cwd=tmp_path), *words)


@pytest.mark.parametrize("command", ["status", "anomalies"])
def test_queries_do_not_create_a_missing_database(tmp_path: Path, command: str) -> None:
    """Querying a database file that does not exist is an error, and does not create it."""
    assert_error(lifecycle(command, "--db", "typo.db", cwd=tmp_path), "typo.db")
    assert not (tmp_path / "typo.db").exists()


@pytest.fixture
def read_only_folder() -> Iterator[tuple[Path, list[str]]]:
    """See :func:`support.read_only_folder`."""
    with support.read_only_folder() as found:
        yield found


def seal(folder: Path, prefix: list[str]) -> None:
    """Make ``folder`` one its reader may not write to (already so for ``nobody``)."""
    if not prefix:
        folder.chmod(0o555)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["anomalies", "--outcome", "illegal"],
        ["status", "hls", "jvsg-8rjn-j304", "613731342f27f56e4fc4b6d0"],
    ],
)
def test_queries_read_a_database_in_a_folder_they_may_not_write(
    read_only_folder: tuple[Path, list[str]], args: list[str]
) -> None:
    """status and anomalies read an existing database in a read-only folder, as they
    read it elsewhere; a missing one there is an error saying it does not exist."""
    folder, prefix = read_only_folder
    path = folder / "examples.db"
    assert 0 == lifecycle("replay", "--db", path, EXAMPLES_FILE, cwd=folder).returncode
    expected = lifecycle(*args, "--db", path, "--format", "json", cwd=folder)
    seal(folder, prefix)
    result = lifecycle(*args, "--db", path, "--format", "json", cwd=folder, prefix=prefix)
    assert (0, "", expected.stdout) == (result.returncode, result.stderr, result.stdout)
    missing = lifecycle(*args, "--db", "typo.db", cwd=folder, prefix=prefix)
    assert_error(missing, "database typo.db does not exist")
    assert ["examples.db"] == [p.name for p in folder.iterdir()]


# -- anomalies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"lifecycle": "recording"},
        {"outcome": "illegal", "limit": 3},
        {"outcome": "applied"},
        {"meeting_id": "jvsg-8rjn-j304", "after": 10},
        {"session_id": "613731342f27f56e4fc4b6d0", "after": 20, "limit": 2},
    ],
)
def test_anomalies_list_what_the_engine_keeps(
    tmp_path: Path, db: Path, examples_engine: Engine, filters: dict[str, Any]
) -> None:
    """anomalies --format json lists what engine.anomalies(filters) gives."""
    flags = {
        "lifecycle": "--lifecycle",
        "outcome": "--outcome",
        "meeting_id": "--meeting",
        "session_id": "--session",
        "after": "--after",
        "limit": "--limit",
    }
    args = [x for name, value in filters.items() for x in (flags[name], str(value))]
    result = lifecycle("anomalies", "--db", db, "--format", "json", *args, cwd=tmp_path)
    expected = examples_engine.anomalies(**filters)
    assert (0, "") == (result.returncode, result.stderr)
    assert [result_row(r) for r in expected] == [
        result_row_json(r) for r in json.loads(result.stdout)
    ]


def result_row(r: FeedResult) -> tuple[Any, ...]:
    return (
        r.seq,
        r.outcome.value,
        r.lifecycle,
        list(r.key or ()),
        r.webhook_type,
        r.before,
        r.after,
        list(r.warnings),
        r.reason,
    )


def result_row_json(r: dict[str, Any]) -> tuple[Any, ...]:
    return (
        r["seq"],
        r["outcome"],
        r["lifecycle"],
        list((r["key"] or {}).values()),
        r["webhook_type"],
        r["before"],
        r["after"],
        r["warnings"],
        r["reason"],
    )


def test_anomalies_table_has_a_row_per_anomaly(
    tmp_path: Path, db: Path, examples_engine: Engine
) -> None:
    """The anomalies table starts a row with the seq and outcome of each anomaly."""
    result = lifecycle("anomalies", "--db", db, cwd=tmp_path)
    rows = [line.split()[:2] for line in result.stdout.splitlines() if ROW.match(line)]
    assert [[str(a.seq), a.outcome.value] for a in examples_engine.anomalies()] == rows


def test_unknown_outcome_is_an_error(tmp_path: Path, db: Path) -> None:
    """--outcome with an unknown value: one error line naming the known outcomes."""
    assert_error(
        lifecycle("anomalies", "--db", db, "--outcome", "odd", cwd=tmp_path),
        "unknown outcome 'odd'",
        *(o.value for o in Outcome),
    )


# -- diagram -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
@pytest.mark.parametrize("name", list(LIFECYCLES))
def test_diagram_prints_the_lifecycle_diagram(tmp_path: Path, name: str, fmt: str) -> None:
    """``diagram NAME`` prints the lifecycle's own Mermaid or DOT text."""
    lc = LIFECYCLES[name]
    text = lc.mermaid() if fmt == "mermaid" else lc.dot()
    result = lifecycle("diagram", name, "--format", fmt, cwd=tmp_path)
    assert (0, text.rstrip("\n") + "\n") == (result.returncode, result.stdout)


def test_diagram_without_a_name_prints_every_lifecycle(tmp_path: Path) -> None:
    """``diagram`` alone prints every lifecycle's diagram, a blank line between them."""
    expected = "\n\n".join(lc.mermaid().rstrip("\n") for lc in LIFECYCLES.values()) + "\n"
    assert expected == lifecycle("diagram", cwd=tmp_path).stdout


def test_diagram_of_an_unknown_lifecycle_is_an_error(tmp_path: Path) -> None:
    """An unknown name: one error line listing the known lifecycles."""
    assert_error(lifecycle("diagram", "nope", cwd=tmp_path), "'nope'", *LIFECYCLES)


# -- simulate ----------------------------------------------------------------------------


@pytest.mark.parametrize(("shuffle", "duplicate", "drop"), [(0, 0, 0), (0.1, 0.05, 0.05)])
def test_simulate_writes_the_simulator_stream(
    tmp_path: Path, shuffle: float, duplicate: float, drop: float
) -> None:
    """simulate writes ``stream(...)`` as compact JSON lines, one webhook a line."""
    result = lifecycle(
        "simulate",
        "--meetings",
        "6",
        "--seed",
        "3",
        "--shuffle",
        str(shuffle),
        "--duplicate",
        str(duplicate),
        "--drop",
        str(drop),
        cwd=tmp_path,
    )
    expected = b"".join(
        orjson.dumps(p) + b"\n"
        for p in stream(6, 3, shuffle=shuffle, duplicate=duplicate, drop=drop)
    )
    assert (0, expected.decode()) == (result.returncode, result.stdout)


def test_simulate_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    """The same seed gives the same bytes (stdout or --output); another seed does not."""
    one = lifecycle("simulate", "--meetings", "4", "--seed", "9", cwd=tmp_path).stdout
    lifecycle("simulate", "--meetings", "4", "--seed", "9", "--output", "s.jsonl", cwd=tmp_path)
    other = lifecycle("simulate", "--meetings", "4", "--seed", "10", cwd=tmp_path).stdout
    assert (one, True) == ((tmp_path / "s.jsonl").read_text(), one != other)


@pytest.mark.parametrize(
    "args",
    [
        ["--meetings", "0"],
        ["--meetings", "2", "--drop", "1.5"],
        ["--meetings", "2", "--shuffle", "-0.1"],
        [],
    ],
)
def test_simulate_refuses_bad_numbers(tmp_path: Path, args: list[str]) -> None:
    """Meetings below 1, a chance outside [0, 1] or no --meetings: usage error, status 2."""
    result = lifecycle("simulate", *args, cwd=tmp_path)
    assert (2, "") == (result.returncode, result.stdout)


def test_simulate_into_a_pipe_closed_early_stops_quietly(tmp_path: Path) -> None:
    """When the reader of stdout goes away, simulate stops with 141 and no traceback."""
    clean = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    process = subprocess.Popen(
        [sys.executable, "-m", "lifecycle", "simulate", "--meetings", "2000"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    status, err = process.wait(timeout=120), process.stderr.read()
    process.stderr.close()
    assert (141, b"") == (status, err)
    assert "webhookType" in json.loads(first)


# -- serve -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        ([], {}, ["public key", "--insecure-no-signature"]),
        (["--insecure-no-signature", "--host", "0.0.0.0"], {}, ["0.0.0.0", "--token"]),
        ([], {"LIFECYCLE_PUBLIC_KEY": "not a key"}, ["public key"]),
        (["--public-key", "missing.pem"], {}, ["missing.pem"]),
    ],
)
def test_serve_refuses_unsafe_or_broken_settings(
    tmp_path: Path, args: list[str], env: dict[str, str], words: list[str]
) -> None:
    """No signature key, an exposed host without a token, a bad key: error line, status 2."""
    pytest.importorskip("lifecycle.server")
    assert_error(
        lifecycle("serve", "--db", "s.db", "--port", "1", *args, cwd=tmp_path, env=env), *words
    )


def test_serve_on_a_busy_port_is_one_error_line(tmp_path: Path) -> None:
    """A port another program listens on: one error line naming it, status 2, and no
    "serving" line before it."""
    pytest.importorskip("lifecycle.server")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = lifecycle(
            "serve", "--db", "s.db", "--insecure-no-signature", "--port", str(port), cwd=tmp_path
        )
    assert_error(result, f"cannot listen on 127.0.0.1:{port}")
    assert "serving" not in result.stderr


# -- help --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_shows_examples(tmp_path: Path, command: str) -> None:
    """``COMMAND --help`` exits 0 and shows its examples one per line, as written."""
    result = lifecycle(command, "--help", cwd=tmp_path)
    section = result.stdout.partition("Examples:\n")[2]
    examples = section.splitlines()
    assert (0, True) == (result.returncode, bool(examples))
    # not rewrapped: every line is one whole command
    assert [] == [e for e in examples if f"lifecycle {command} " not in e]


def test_serve_takes_its_settings_from_a_config_file(tmp_path: Path) -> None:
    """A TOML file of settings named as the options; the command line wins over it."""
    pytest.importorskip("lifecycle.server")
    (tmp_path / "lifecycle.toml").write_text(
        'db = "from-file.db"\ninsecure-no-signature = true\nmax_body = 10\n'
    )
    server = support.Server(tmp_path, ["--config", "lifecycle.toml"])
    try:
        assert 200 == httpx.get(f"{server.url}/healthz").status_code
        assert (tmp_path / "from-file.db").exists()
        big = httpx.post(f"{server.url}/webhooks", content=b'{"webhookType": "x"}')
        assert 413 == big.status_code  # max_body from the file
    finally:
        server.stop()
    server = support.Server(tmp_path, ["--config", "lifecycle.toml", "--db", "from-line.db"])
    server.stop()
    assert (tmp_path / "from-line.db").exists()
    (tmp_path / "open.toml").write_text('host = "0.0.0.0"\ninsecure-no-signature = true\n')
    assert_error(lifecycle("serve", "--config", "open.toml", cwd=tmp_path), "0.0.0.0", "token")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hots = 1\n", ["settings.toml", "no setting 'hots'", "host"]),
        ("x = [", ["settings.toml is not TOML"]),
        (None, ["cannot read settings.toml"]),
    ],
    ids=["unknown-setting", "not-toml", "missing"],
)
def test_a_config_file_that_cannot_work_is_one_error_line(
    tmp_path: Path, text: str | None, words: list[str]
) -> None:
    pytest.importorskip("lifecycle.server")
    if text is not None:
        (tmp_path / "settings.toml").write_text(text)
    assert_error(lifecycle("serve", "--config", "settings.toml", cwd=tmp_path), *words)


def test_overdue_lists_what_is_past_its_deadline(tmp_path: Path) -> None:
    """A recording left in stopping: listed from 15 minutes after it stopped sending, as
    a table and as JSON; an unknown time or lifecycle is an error line."""
    webhooks = tmp_path / "stuck.jsonl"
    ids = {"meetingId": "m1", "sessionId": "s1"}
    webhooks.write_text(
        "\n".join(
            json.dumps({"webhookType": t, "data": ids})
            for t in ("recording-started", "recording-stopping")
        )
    )
    assert 0 == lifecycle("replay", "--db", "t.db", webhooks, cwd=tmp_path).returncode
    with Engine.open(str(tmp_path / "t.db")) as engine:
        stopping = engine.status("recording", "m1", "s1")
    assert stopping is not None
    due = stopping.entered_at.timestamp() + 900

    def at(t: float, *more: str) -> subprocess.CompletedProcess[str]:
        when = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
        return lifecycle("overdue", "--db", "t.db", "--now", when, *more, cwd=tmp_path)

    assert "nothing is overdue" in at(due - 5).stdout
    table = at(due + 5).stdout
    assert "m1/s1" in table
    assert "recording.stopping (900 s)" in table
    (found,) = json.loads(at(due + 5, "--format", "json").stdout)
    assert ("recording", "stopping", "recording.stopping") == (
        found["lifecycle"],
        found["state"],
        found["deadline"],
    )
    assert [] == json.loads(at(due + 5, "--lifecycle", "hls", "--format", "json").stdout)
    sooner = at(due - 830, "--deadline", "recording.stopping=1m", "--format", "json")
    assert ["recording.stopping"] == [o["deadline"] for o in json.loads(sooner.stdout)]
    off = at(due + 5, "--deadline", "recording.stopping=off", "--format", "json")
    assert [] == json.loads(off.stdout)
    assert_error(lifecycle("overdue", "--db", "t.db", "--lifecycle", "nope", cwd=tmp_path), "nope")


def test_sweep_flags_once_and_anomalies_list_it(tmp_path: Path) -> None:
    """lifecycle sweep flags the stuck recording once (a second run finds nothing new),
    the flag is an overdue anomaly, and --reconcile without credentials is an error."""
    webhooks = tmp_path / "stuck.jsonl"
    ids = {"meetingId": "m1", "sessionId": "s1"}
    webhooks.write_text(json.dumps({"webhookType": "recording-stopping", "data": ids}))
    assert 0 == lifecycle("replay", "--db", "t.db", webhooks, cwd=tmp_path).returncode
    with Engine.open(str(tmp_path / "t.db")) as engine:
        stopping = engine.status("recording", "m1", "s1")
    assert stopping is not None
    when = datetime.fromtimestamp(stopping.entered_at.timestamp() + 901, UTC).isoformat()

    def sweep(*more: str) -> subprocess.CompletedProcess[str]:
        return lifecycle("sweep", "--db", "t.db", "--now", when[:19] + "+0000", *more, cwd=tmp_path)

    first = sweep()
    assert 0 == first.returncode
    assert "overdue" in first.stdout
    assert "m1/s1" in first.stdout
    again = json.loads(sweep("--format", "json").stdout)
    assert {"flagged": [], "reconciled": []} == again
    (flag,) = json.loads(
        lifecycle("anomalies", "--db", "t.db", "--outcome", "overdue", "--format", "json",
                  cwd=tmp_path).stdout
    )  # fmt: skip
    assert ("recording", "stopping") == (flag["lifecycle"], flag["before"])
    assert_error(sweep("--reconcile"), "--videosdk-api-key", "VIDEOSDK_SECRET")


def test_serve_takes_deadlines_from_the_command_line_and_its_config_file(tmp_path: Path) -> None:
    """A recording stopping for an hour: overdue by default (900 s); not with a
    [deadlines] table of two hours in the config file; overdue again with --deadline
    on the command line, which wins."""
    pytest.importorskip("lifecycle.server")
    hour_ago = time.time() - 3600
    with Engine.open(str(tmp_path / "d.db"), clock=lambda: hour_ago) as engine:
        engine.feed(
            {"webhookType": "recording-stopping", "data": {"meetingId": "m", "sessionId": "s"}}
        )
    (tmp_path / "d.toml").write_text(
        'db = "d.db"\ninsecure-no-signature = true\n[deadlines]\n"recording.stopping" = "2h"\n'
    )

    def overdue(*args: str) -> list[str]:
        server = support.Server(tmp_path, ["--config", "d.toml", *args])
        try:
            page = httpx.get(f"{server.url}/resources?overdue=true").json()
        finally:
            server.stop()
        return [item["deadline"] for item in page["items"]]

    assert [] == overdue()
    assert ["recording.stopping"] == overdue("--deadline", "recording.stopping=15m")
    (tmp_path / "bad.toml").write_text('[deadlines]\n"recording.stoped" = "1m"\n')
    bad = lifecycle("serve", "--config", "bad.toml", "--insecure-no-signature", cwd=tmp_path)
    assert 2 == bad.returncode
    assert "recording.stoped" in bad.stderr
