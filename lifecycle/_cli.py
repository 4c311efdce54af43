"""The ``lifecycle`` command line: replay webhook files into a store, query it, draw, simulate.

Errors print one line, ``error: <message>``, on stderr and exit with status 2; status 1
is left for ``replay --fail-on-anomaly``.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
import tomllib
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import attrs
import click
from orjson import loads as _loads
from rich import box
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from ._convert import _dumps
from ._deadlines import NAMES, parse_duration
from ._engine import Engine
from ._json import overdue_json, result_json, status_json
from ._lifecycles import LIFECYCLES, Outcome
from ._records import FeedResult, ResourceKey, ResourceStatus
from ._simulate import stream
from ._version import __version__
from .errors import InvalidArgument, LifecycleError
from .stores import open_store
from .stores.sqlite import sqlite_path

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

BIG_INPUT_BYTES = 1 << 20
"""Inputs larger than this (in all) get a progress bar on a terminal ..."""
BIG_INPUT_EVENTS = 5_000
"""... and so do inputs that turn out to hold more events than this."""
DEFAULT_DB = "lifecycle.db"
"""The database of every command without ``--db`` (or ``LIFECYCLE_DB``)."""
TABLE_ROWS = 100
"""The most anomalies ``replay`` lists in its table (its JSON has them all)."""


class CliError(click.ClickException):
    """Printed as one line, ``error: <message>``, on stderr; exit status 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {' '.join(self.format_message().split())}", err=True)


class _Group(click.Group):
    """Commands that end with the one-line error for any :class:`LifecycleError` (a
    database that fails, an argument or setting that cannot work).

    They stop quietly (status 141) when the reader of their output goes away.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LifecycleError as e:
            raise CliError(str(e)) from e
        except BrokenPipeError:  # the reader of stdout went away (`| head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # 128 + SIGPIPE, as cat and yes report it


# -- shared options ----------------------------------------------------------------------


def _known(names: Iterable[str], what: str) -> Callable[..., str | None]:
    """A click callback refusing, in one line, a value that is not one of ``names``."""
    known = list(names)

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and value not in known:
            raise CliError(f"unknown {what} {value!r}; known: {', '.join(known)}")
        return value

    return check


def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click decorators as one, applied in the order given (top to bottom)."""

    def apply(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def _format(*choices: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def _example(*lines: str) -> str:
    """A ``--help`` epilog that click shows as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


_known_lifecycle = _known(LIFECYCLES, "lifecycle")
_db = click.option(
    "--db",
    metavar="URL",
    envvar="LIFECYCLE_DB",
    show_envvar=True,
    default=DEFAULT_DB,
    show_default=True,
    help="Database URL: sqlite:///path.db, a path, or postgresql://user@host/db.",
)
_lifecycle = click.option(
    "--lifecycle",
    "lifecycle_name",
    metavar="NAME",
    callback=_known_lifecycle,
    help="Only this lifecycle.",
)
_meeting = click.option("--meeting", metavar="ID", help="Only this meeting (meetingId).")
_session = click.option("--session", metavar="ID", help="Only this session (sessionId).")
_limit = click.option("--limit", type=click.IntRange(min=0), help="At most this many.")


if TYPE_CHECKING:  # generic in recent click only: subscripted for the type checker alone
    from .reconcile import VideoSDK

    _DeadlineType = click.ParamType[tuple[str, float | None], Any]
else:
    _DeadlineType = click.ParamType


class _Deadline(_DeadlineType):
    """``NAME=DURATION``: a deadline's name and seconds (``30m``; ``off``: None)."""

    name = "NAME=DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, float | None]:
        if isinstance(value, tuple):
            return value
        name, sep, duration = str(value).partition("=")
        if not sep or name.strip() not in NAMES:
            self.fail(
                f"{value!r} is not NAME=DURATION with a deadline's name, such as "
                "recording.stopping=30m (see docs/time.md)",
                param,
                ctx,
            )
        try:
            return name.strip(), parse_duration(duration)
        except InvalidArgument as e:
            self.fail(str(e), param, ctx)


_deadline = click.option(
    "--deadline",
    "deadlines",
    type=_Deadline(),
    multiple=True,
    help="Set one deadline, repeatable: recording.stopping=30m, hls.started=off.",
)


_query = _options(_db, _lifecycle, _meeting, _session, _limit)
_now = click.option(
    "--now",
    metavar="TIME",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    help="Judge at this time (ISO 8601; UTC unless an offset is given) instead of now.",
)
_videosdk = _options(
    click.option(
        "--videosdk-api-key",
        metavar="KEY",
        envvar="VIDEOSDK_API_KEY",
        show_envvar=True,
        help="VideoSDK API key: ask its REST API about what is overdue.",
    ),
    click.option(
        "--videosdk-secret",
        metavar="SECRET",
        envvar="VIDEOSDK_SECRET",
        show_envvar=True,
        help="The secret of that API key.",
    ),
    click.option(
        "--videosdk-api-url",
        metavar="URL",
        default="https://api.videosdk.live",
        show_default=True,
        help="VideoSDK's REST API.",
    ),
)


def _videosdk_client() -> type[VideoSDK]:
    """The VideoSDK reconciler, or the error that names the extra it needs."""
    try:
        from .reconcile import VideoSDK
    except ImportError as e:
        raise CliError(
            "reconciling needs the reconcile extra: pip install -e '.[reconcile]' in "
            "lifecycle's checkout"
        ) from e
    return VideoSDK


def _utc(now: datetime | None) -> datetime | None:
    """A time given without an offset, taken as UTC."""
    return now.replace(tzinfo=UTC) if now is not None and now.tzinfo is None else now


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_example(
        "lifecycle simulate --meetings 20 --shuffle 0.05 > webhooks.jsonl",
        "lifecycle replay webhooks.jsonl",
        "lifecycle anomalies --outcome gap",
    ),
)
@click.version_option(__version__, prog_name="lifecycle")
def main() -> None:
    """VideoSDK webhooks turned into live, queryable state machines."""


# -- output ------------------------------------------------------------------------------


def _console(stderr: bool = False, min_width: int = 0) -> Console:
    """A console without markup (webhook text is shown as is), ``min_width`` wide at least.

    Off a terminal, lines are as long as their content: a pipe or a file gets whole keys.
    """
    file = sys.stderr if stderr else sys.stdout
    console = Console(
        file=file, width=None if file.isatty() else 1000, markup=False, emoji=False, highlight=False
    )
    console.width = max(console.width, min_width)
    return console


TABLE_CELLS = 5
"""The terminal columns a table needs per column of its own to keep every character: two
of padding, one between columns, two of text (a wide character takes two)."""


def _print(*sections: RenderableType) -> None:
    """Print to stdout, a blank line between sections.

    A table narrower than the terminal folds its cells (rich shrinks the widest columns
    first); on a terminal narrower than ``TABLE_CELLS`` per column, it is printed that wide
    and the terminal wraps its lines: no character is ever cut.
    """
    tables = [len(s.columns) for s in sections if isinstance(s, Table)]
    out = _console(min_width=TABLE_CELLS * max(tables, default=0))
    for i, section in enumerate(sections):
        if i:
            out.line()
        out.print(section)


def _print_json(value: object) -> None:
    sys.stdout.buffer.write(_dumps(value) + b"\n")
    sys.stdout.flush()


def _key(key: ResourceKey | None) -> str:
    return "/".join(key) if key is not None else ""


def _time(t: datetime) -> str:
    return t.isoformat(sep=" ", timespec="seconds")


def _detail(r: FeedResult) -> str:
    """What a result's table row says beyond its states: skipped, warnings, reason."""
    parts = [f"skipped {', '.join(r.missing)}"] if r.missing else []
    return "; ".join([*parts, *r.warnings, *([r.reason] if r.reason else [])])


def _table(*headers: str, title: str | None = None) -> Table:
    """A table whose cells fold rather than lose text (keys and types have no spaces).

    No column has a minimum width: rich widens such a column after shrinking the others
    to fit, and the console then cuts the last column's end.
    """
    return Table(
        *(Column(h, overflow="fold") for h in headers),
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )


def _anomaly_table(results: Sequence[FeedResult], title: str | None = None) -> Table:
    table = _table("seq", "outcome", "webhook type", "key", "before → after", "detail", title=title)
    for r in results:
        states = f"{r.before} → {r.after}" if r.before is not None else ""
        table.add_row(
            str(r.seq), r.outcome.value, r.webhook_type or "", _key(r.key), states, _detail(r)
        )
    return table


def _status_table(statuses: Sequence[ResourceStatus]) -> Table:
    table = _table("lifecycle", "key", "state", "entered at")
    for s in statuses:
        table.add_row(s.lifecycle, _key(s.key), s.state, _time(s.entered_at))
    return table


def _resource_view(s: ResourceStatus) -> Iterator[Table]:
    """One resource: its key, state and data, then its history."""
    about = Table.grid(Column(overflow="fold"), Column(overflow="fold"), padding=(0, 2))
    fields = LIFECYCLES[s.lifecycle].definition.key_fields
    rows = [
        ("lifecycle", s.lifecycle),
        *zip(fields, s.key, strict=True),
        ("state", s.state),
        ("entered at", _time(s.entered_at)),
    ]
    rows += [
        (f"data.{f}", v if isinstance(v, str) else _dumps(v).decode()) for f, v in s.data.items()
    ]
    for name, value in rows:
        about.add_row(name, value)
    yield about
    history = _table("seq", "webhook type", "outcome", "received at", title="history")
    for h in s.history:
        history.add_row(str(h.seq), h.webhook_type, h.outcome.value, _time(h.received_at))
    yield history


def _state_counts(statuses: Iterable[ResourceStatus]) -> Table:
    """How many of ``statuses`` are in each state, in registry and state order."""
    counts = Counter((s.lifecycle, s.state) for s in statuses)
    table = _table("lifecycle", "state", "resources")
    for name, lc in LIFECYCLES.items():
        for state in lc.states:
            if counts[name, state]:
                table.add_row(name, state, str(counts[name, state]))
    return table


# -- the engine --------------------------------------------------------------------------


def _open_engine(
    db: str, read_only: bool = False, deadlines: Mapping[str, float | None] | None = None
) -> closing[Engine]:
    """``Engine.open(db)``, closed on exit; ``read_only`` (the queries) opens an existing
    database for reading only, a missing SQLite file being an error."""
    if not read_only:
        return closing(Engine.open(db, deadlines=deadlines))
    path = sqlite_path(db)
    if path and not Path(path).exists():
        raise CliError(
            f"database {db} does not exist (give --db, or fill it with lifecycle replay)"
        )
    return closing(Engine(open_store(db, read_only=True), deadlines=deadlines))


# -- replay ------------------------------------------------------------------------------


@attrs.define
class _Run:
    """What one replay fed: how many of each outcome, the resources it touched, its seqs."""

    before: int
    outcomes: Counter[Outcome] = attrs.Factory(Counter)
    touched: set[tuple[str, ResourceKey]] = attrs.Factory(set)
    seqs: array[int] = attrs.Factory(lambda: array("q"))

    @property
    def events(self) -> int:
        return len(self.seqs)

    def add(self, results: Iterable[FeedResult]) -> None:
        for r in results:
            self.outcomes[r.outcome] += 1
            self.seqs.append(r.seq)
            if r.lifecycle is not None and r.key is not None:
                self.touched.add((r.lifecycle, r.key))

    def __contains__(self, seq: int) -> bool:
        """Whether this run fed ``seq`` (other receivers may share the database)."""
        i = bisect_left(self.seqs, seq)
        return i < len(self.seqs) and self.seqs[i] == seq

    def anomalies(self, engine: Engine) -> list[FeedResult]:
        return [a for a in engine.anomalies(after=self.before) if a.seq in self]

    def resources(self, engine: Engine) -> list[ResourceStatus]:
        names = {name for name, _ in self.touched}
        return [
            s
            for name in LIFECYCLES
            if name in names
            for s in engine.resources(lifecycle=name)
            if (s.lifecycle, s.key) in self.touched
        ]


def _open_input(name: str) -> IO[bytes]:
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError as e:
        raise CliError(f"cannot read {name}: {e.strerror}") from e


def _size(f: IO[bytes]) -> int | None:
    """The bytes of a regular file; None for a pipe or a terminal."""
    info = os.fstat(f.fileno())
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _webhooks(f: IO[bytes], name: str) -> Iterator[tuple[Any, float]]:
    """Each webhook of an input, with the bytes it took.

    JSON lines are fed as they came (a bad one is a ``malformed`` result); a file whose
    first non-blank character is ``[`` is one JSON array, whose elements are fed parsed.
    """
    first = True
    for line in f:
        if line.isspace():
            continue
        if first and line.lstrip().startswith(b"["):
            text = line + f.read()
            try:
                items = _loads(text)
            except ValueError as e:
                raise CliError(f"{name} is not a JSON array: {e}") from e
            for item in items:
                yield item, len(text) / len(items)
            return
        first = False
        yield line.rstrip(b"\r\n"), len(line)


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _replay(engine: Engine, inputs: Sequence[tuple[IO[bytes], str]], batch: int) -> _Run:
    """Feed every input in batches; a transient progress bar on a terminal for big ones."""
    sizes = [_size(f) for f, _ in inputs]
    total = None if None in sizes else sum(s or 0 for s in sizes)
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[events]:,} events"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    task = progress.add_task("replay", total=total, events=0)
    run = _Run(engine.events_fed)
    shown = False
    try:
        for f, name in inputs:
            for items in _batches(_webhooks(f, name), batch):
                run.add(engine.feed_many([payload for payload, _ in items]))
                progress.update(task, advance=sum(n for _, n in items), events=run.events)
                if not shown and ((total or 0) > BIG_INPUT_BYTES or run.events > BIG_INPUT_EVENTS):
                    progress.start()
                    shown = True
    finally:
        if shown:
            progress.stop()
    return run


@main.command(
    epilog=_example(
        "lifecycle replay examples/videosdk-webhook-examples.jsonl",
        "lifecycle replay --db sqlite:///state.db --format json day1.jsonl day2.jsonl",
        "curl -s https://host/webhooks.json | lifecycle replay --fail-on-anomaly -",
    )
)
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@_db
@_format("table", "json")
@click.option(
    "--fail-on-anomaly", is_flag=True, help="Exit with status 1 when this run found an anomaly."
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Events committed per transaction.",
)
def replay(files: tuple[str, ...], db: str, fmt: str, fail_on_anomaly: bool, batch: int) -> None:
    """Feed webhook files to the database and report what this run did.

    A FILE holds JSON lines (one webhook a line, fed as its raw bytes) or one JSON
    array of webhooks; - reads stdin.
    """
    with ExitStack() as stack:
        inputs = [(stack.enter_context(_open_input(name)), name) for name in files]
        engine = stack.enter_context(_open_engine(db))
        run = _replay(engine, inputs, batch)
        anomalies = run.anomalies(engine)
        resources = run.resources(engine)
    outcomes = {o.value: run.outcomes[o] for o in Outcome}
    if fmt == "json":
        _print_json(
            {
                "events": run.events,
                "outcomes": outcomes,
                "resources": [status_json(s, history=False) for s in resources],
                "anomalies": [result_json(a) for a in anomalies],
            }
        )
    else:
        shown = anomalies[:TABLE_ROWS]
        more = len(anomalies) - len(shown)
        _print(
            _state_counts(resources),
            f"events: {run.events} ("
            + ", ".join(f"{outcome} {n}" for outcome, n in outcomes.items())
            + f"), anomalies: {len(anomalies)}",
            *([_anomaly_table(shown)] if shown else []),
            *([f"{more} more: {_anomalies_command(db)} --after {shown[-1].seq}"] if more else []),
        )
    if fail_on_anomaly and anomalies:
        sys.exit(1)


def _anomalies_command(db: str) -> str:
    """The command that lists the anomalies of ``db``, ready to paste."""
    return "lifecycle anomalies" + ("" if db == DEFAULT_DB else f" --db {shlex.quote(db)}")


# -- queries -----------------------------------------------------------------------------


@main.command(
    epilog=_example(
        "lifecycle status --lifecycle recording --state stopped",
        "lifecycle status --meeting jvsg-8rjn-j304 --format json",
        "lifecycle status recording jvsg-8rjn-j304 613731342f27f56e4fc4b6d0",
    )
)
@click.argument("resource", nargs=-1, metavar="[LIFECYCLE KEY...]")
@_query
@click.option("--state", help="Only resources in this state.")
@_format("table", "json")
def status(
    resource: tuple[str, ...],
    db: str,
    lifecycle_name: str | None,
    meeting: str | None,
    session: str | None,
    limit: int | None,
    state: str | None,
    fmt: str,
) -> None:
    """List tracked resources, or show one (LIFECYCLE KEY...) with its history."""
    if resource and any(v is not None for v in (lifecycle_name, meeting, session, limit, state)):
        raise CliError("give LIFECYCLE KEY... or filter options, not both")
    if resource:
        _show_resource(db, resource[0], resource[1:], fmt)
        return
    with _open_engine(db, read_only=True) as engine:
        found = engine.resources(lifecycle_name, meeting, session, state, limit=limit)
    if fmt == "json":
        _print_json([status_json(s, history=False) for s in found])
    else:
        _print(_status_table(found) if found else "no resources")


def _show_resource(db: str, name: str, key: tuple[str, ...], fmt: str) -> None:
    with _open_engine(db, read_only=True) as engine:
        found = engine.status(name, *key)
    if found is None:
        raise CliError(f"no {name} with key {'/'.join(key)}")
    if fmt == "json":
        _print_json(status_json(found))
    else:
        _print(*_resource_view(found))


@main.command(
    epilog=_example(
        "lifecycle anomalies --outcome illegal --lifecycle recording",
        "lifecycle anomalies --after 1200 --limit 50 --format json",
    )
)
@_query
@click.option(
    "--outcome",
    metavar="OUTCOME",
    callback=_known((o.value for o in Outcome), "outcome"),
    help="Only this outcome (applied means applied with warnings).",
)
@click.option(
    "--after", type=click.IntRange(min=0), default=0, help="Only events after this seq (exclusive)."
)
@_format("table", "json")
def anomalies(
    db: str,
    lifecycle_name: str | None,
    meeting: str | None,
    session: str | None,
    limit: int | None,
    outcome: str | None,
    after: int,
    fmt: str,
) -> None:
    """List the events that were not a clean applied, in feed order."""
    with _open_engine(db, read_only=True) as engine:
        found = engine.anomalies(
            lifecycle_name, outcome, meeting, session, after=after, limit=limit
        )
    if fmt == "json":
        _print_json([result_json(r) for r in found])
    else:
        _print(_anomaly_table(found) if found else "no anomalies")


@main.command(
    epilog=_example(
        "lifecycle overdue",
        "lifecycle overdue --lifecycle recording --format json",
        "lifecycle overdue --now 2026-12-01T12:00:00+00:00",
    )
)
@_db
@_lifecycle
@_deadline
@_now
@_format("table", "json")
def overdue(
    db: str,
    lifecycle_name: str | None,
    deadlines: tuple[tuple[str, float | None], ...],
    now: datetime | None,
    fmt: str,
) -> None:
    """List the resources past their deadline, the longest overdue first (a query:
    nothing is recorded; lifecycle sweep flags them)."""
    with _open_engine(db, read_only=True, deadlines=dict(deadlines)) as engine:
        found = engine.overdue(_utc(now), lifecycle_name)
    if fmt == "json":
        _print_json([overdue_json(o) for o in found])
    elif not found:
        _print("nothing is overdue")
    else:
        table = _table("lifecycle", "key", "state", "since", "deadline", "due at", "flagged")
        for o in found:
            s = o.status
            table.add_row(
                s.lifecycle,
                _key(s.key),
                s.state,
                _time(s.entered_at),
                f"{o.deadline} ({o.seconds:g} s)",
                _time(o.due_at),
                "yes" if o.flagged else "",
            )
        _print(table)


@main.command(
    epilog=_example(
        "lifecycle sweep                       # from cron, every minute",
        "VIDEOSDK_API_KEY=... VIDEOSDK_SECRET=... lifecycle sweep --reconcile",
        "lifecycle sweep --now 2026-12-01T12:00:00+00:00 --format json",
    )
)
@_db
@_deadline
@_now
@click.option(
    "--reconcile",
    is_flag=True,
    help="Then ask VideoSDK's REST API about each overdue resource, and feed what its "
    "answer implies.",
)
@_videosdk
@_format("table", "json")
def sweep(
    db: str,
    deadlines: tuple[tuple[str, float | None], ...],
    now: datetime | None,
    reconcile: bool,
    videosdk_api_key: str | None,
    videosdk_secret: str | None,
    videosdk_api_url: str,
    fmt: str,
) -> None:
    """Flag each resource past its deadline, once per visit to a state (an overdue entry
    in the log), and print the entries made; with --reconcile, then reconcile."""
    if reconcile and not (videosdk_api_key and videosdk_secret):
        raise CliError(
            "--reconcile needs --videosdk-api-key and --videosdk-secret "
            "(or VIDEOSDK_API_KEY and VIDEOSDK_SECRET)"
        )
    with _open_engine(db, deadlines=dict(deadlines)) as engine:
        flagged = engine.sweep(_utc(now))
        done = []
        if reconcile:
            with _videosdk_client()(
                videosdk_api_key or "", videosdk_secret or "", videosdk_api_url
            ) as api:
                done = engine.reconcile(api, _utc(now))
    results = [d.result for d in done if d.result is not None]
    if fmt == "json":
        _print_json(
            {
                "flagged": [result_json(r) for r in flagged],
                "reconciled": [result_json(r) for r in results],
            }
        )
        return
    _print(
        _anomaly_table(flagged, title="flagged overdue") if flagged else "nothing newly overdue",
        *(
            [_anomaly_table(results, title="reconciled") if results else "nothing reconciled"]
            if reconcile
            else []
        ),
    )


# -- diagram, simulate, serve ------------------------------------------------------------


@main.command(
    epilog=_example(
        "lifecycle diagram recording", "lifecycle diagram hls --format dot | dot -Tsvg > hls.svg"
    )
)
@click.argument("name", metavar="[LIFECYCLE]", required=False, callback=_known_lifecycle)
@_format("mermaid", "dot")
def diagram(name: str | None, fmt: str) -> None:
    """Print the state diagram of a lifecycle (of every one when none is named)."""
    chosen = [LIFECYCLES[name]] if name is not None else LIFECYCLES.values()
    click.echo(
        "\n\n".join((lc.mermaid() if fmt == "mermaid" else lc.dot()).rstrip("\n") for lc in chosen)
    )


_chance = click.FloatRange(0, 1)


@main.command(
    epilog=_example(
        "lifecycle simulate --meetings 100 --seed 7 > clean.jsonl",
        "lifecycle simulate --meetings 100 --shuffle 0.05 --duplicate 0.02"
        " --drop 0.01 --output faulty.jsonl",
    )
)
@click.option(
    "--meetings", type=click.IntRange(min=1), required=True, help="How many meeting sessions."
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed: the same seed gives the same bytes.",
)
@click.option(
    "--shuffle",
    type=_chance,
    default=0.0,
    show_default=True,
    help="Chance that an event is swapped with one of the next ten.",
)
@click.option(
    "--duplicate",
    type=_chance,
    default=0.0,
    show_default=True,
    help="Chance that an event is delivered again a little later.",
)
@click.option(
    "--drop", type=_chance, default=0.0, show_default=True, help="Chance that an event is lost."
)
@click.option("--output", metavar="FILE", help="Write to FILE instead of stdout.")
def simulate(
    meetings: int, seed: int, shuffle: float, duplicate: float, drop: float, output: str | None
) -> None:
    """Write realistic webhooks as JSON lines, with the faults asked for."""
    with ExitStack() as stack:
        try:
            out = (
                stack.enter_context(open(output, "wb")) if output is not None else sys.stdout.buffer
            )
        except OSError as e:
            raise CliError(f"cannot write {output}: {e.strerror}") from e
        for payload in stream(meetings, seed, shuffle=shuffle, duplicate=duplicate, drop=drop):
            out.write(_dumps(payload) + b"\n")
        out.flush()


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _read_config(ctx: click.Context, _: click.Parameter, path: str | None) -> str | None:
    """Take the settings of a TOML file as the command's defaults: its keys are the
    options' names (``max-queue`` or ``max_queue``); the command line and the
    environment win over it."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            settings = tomllib.load(f)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise CliError(f"{path} is not TOML: {e}") from e
    known = {
        p.name: p
        for p in ctx.command.params
        if isinstance(p, click.Option) and p.name is not None and p.name != "config"
    }
    table = settings.pop("deadlines", {})
    if not isinstance(table, dict):
        raise CliError(f"{path}: deadlines must be a table ([deadlines])")
    if table:
        settings["deadlines"] = [f"{name}={value}" for name, value in table.items()]
    for key in settings:
        if key.replace("-", "_") not in known:
            names = ", ".join(sorted(n.replace("_", "-") for n in known if n != "deadlines"))
            raise CliError(f"{path}: no setting {key!r} (known: {names}, [deadlines])")
    ctx.default_map = {
        **(ctx.default_map or {}),
        **{k.replace("-", "_"): v for k, v in settings.items()},
    }
    return path


@main.command(
    "serve",
    epilog=_example(
        "lifecycle serve --public-key videosdk.pem",
        "LIFECYCLE_TOKEN=s3cret lifecycle serve --host 0.0.0.0 --db postgresql://app@db/lifecycle",
        "lifecycle serve --insecure-no-signature --port 9000   # local tests only",
        "lifecycle serve --config lifecycle.toml --port 9000   # the file, --port overridden",
    ),
)
@click.option(
    "--config",
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=_read_config,
    help="TOML file of settings, named as the options (max-queue = 256); the command line "
    "and the environment win over it.",
)
@_db
@click.option(
    "--host", metavar="HOST", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--public-key",
    metavar="FILE",
    help="PEM file of the key that checks webhook signatures [env var: "
    "LIFECYCLE_PUBLIC_KEY holds the PEM text itself].",
)
@click.option(
    "--insecure-no-signature",
    is_flag=True,
    help="Accept webhooks without checking their signature.",
)
@click.option(
    "--token",
    metavar="TOKEN",
    envvar="LIFECYCLE_TOKEN",
    show_envvar=True,
    help="Bearer token the read endpoints ask for.",
)
@click.option("--public-read", is_flag=True, help="Serve the read endpoints without a token.")
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    default=65536,
    show_default=True,
    metavar="BYTES",
    help="Largest webhook body accepted.",
)
@click.option(
    "--redelivery-window",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Count a byte-identical webhook within this window as a redelivery.",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    metavar="N",
    help="Webhooks waiting to be stored beyond which one is answered 503 with Retry-After.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    metavar="N",
    help="Open connections beyond which a request is answered 503 with Retry-After.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Time a connection has to send a request's head (408 and closed after).",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Time a request has to send its body (408 and closed after).",
)
@click.option(
    "--max-header-size",
    type=click.IntRange(min=1),
    default=16384,
    show_default=True,
    metavar="BYTES",
    help="Largest request head (431 and closed beyond).",
)
@_deadline
@click.option(
    "--sweep-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Sweep for overdue resources this often, the first at start (0: never).",
)
@_videosdk
@click.option(
    "--forward",
    metavar="URL[=TYPES]",
    multiple=True,
    help="Forward each change of state to URL as a signed Standard Webhook, repeatable; "
    "=recording.stopped,hls.* forwards only those types (lifecycle.state).",
)
@click.option(
    "--forward-secret",
    metavar="whsec_...",
    envvar="LIFECYCLE_FORWARD_SECRET",
    show_envvar=True,
    help="The Standard Webhooks secret that signs forwarded changes.",
)
@click.option(
    "--forward-retry-for",
    metavar="DURATION",
    default="24h",
    show_default=True,
    help="Retry a forwarded change this long (30m, 24h) before giving up on it.",
)
@click.option("--log-level", type=click.Choice(_LOG_LEVELS), default="info", show_default=True)
def serve_command(
    db: str,
    host: str,
    port: int,
    public_key: str | None,
    insecure_no_signature: bool,
    token: str | None,
    public_read: bool,
    max_body: int,
    redelivery_window: float | None,
    max_queue: int,
    max_connections: int,
    header_timeout: float,
    body_timeout: float,
    max_header_size: int,
    deadlines: tuple[tuple[str, float | None], ...],
    sweep_interval: float,
    videosdk_api_key: str | None,
    videosdk_secret: str | None,
    videosdk_api_url: str,
    forward: tuple[str, ...],
    forward_secret: str | None,
    forward_retry_for: str,
    log_level: str,
) -> None:
    """Receive webhooks over HTTP into the database, answer queries and the change feed,
    show the state as web pages (/ui/), sweep for overdue resources (and reconcile them
    with VideoSDK's API, given its key), and forward changes to other services."""
    try:
        from .server import ServerConfig, serve
    except ImportError as e:
        raise CliError(
            "lifecycle serve needs the server extra: pip install -e '.[server]' in lifecycle's "
            "checkout"
        ) from e
    try:
        pem = (
            Path(public_key).read_bytes()
            if public_key is not None
            else os.environ.get("LIFECYCLE_PUBLIC_KEY", "").encode() or None
        )
    except OSError as e:
        raise CliError(f"cannot read {public_key}: {e.strerror}") from e
    if videosdk_api_key:
        _videosdk_client()  # the extra is there, before the server starts
    try:
        retry_for = parse_duration(forward_retry_for)
    except InvalidArgument as e:
        raise CliError(f"--forward-retry-for: {e}") from e
    serve(
        ServerConfig(
            db=db,
            host=host,
            port=port,
            public_key=pem,
            insecure_no_signature=insecure_no_signature,
            token=token,
            public_read=public_read,
            max_body=max_body,
            redelivery_window=redelivery_window,
            max_queue=max_queue,
            max_connections=max_connections,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            max_header_size=max_header_size,
            deadlines=dict(deadlines),
            sweep_interval=sweep_interval or None,
            videosdk_api_key=videosdk_api_key or None,
            videosdk_secret=videosdk_secret or None,
            videosdk_api_url=videosdk_api_url,
            forward=forward,
            forward_secret=forward_secret or None,
            forward_retry_for=retry_for or 0.0,
            log_level=log_level,
        )
    )
