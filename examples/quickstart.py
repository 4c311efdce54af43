"""Feed the provider's 41 example webhooks to an engine and show what it made of them.

Run: python examples/quickstart.py [FILE.jsonl] [--db URL]

The state goes to an embedded SQLite database (a fresh temporary one unless ``--db``
names one; fed twice into one database, the second round reads mostly as rejoins and
new recordings, since the payloads carry no id).
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from lifecycle import Engine


def main(path: Path, db: str) -> None:
    engine = Engine.open(db)
    engine.feed_many(line for line in path.read_bytes().splitlines() if line.strip())
    print(f"database: {db}")
    outcomes = Counter(r.outcome.value for r in engine.anomalies())
    print(f"{engine.events_fed} webhooks fed, {len(engine)} resources tracked")
    print(f"{'lifecycle':<30} {'key':<58} state")
    for status in engine.resources():
        print(f"{status.lifecycle:<30} {'/'.join(status.key):<58} {status.state}")
    print(f"\nanomalies: {dict(outcomes)}")
    for r in engine.anomalies():
        print(
            f"  #{r.seq} {r.webhook_type}: {r.outcome.value} in {r.before!r}"
            + (f" warnings={list(r.warnings)}" if r.warnings else "")
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "file",
        nargs="?",
        type=Path,
        default=Path(__file__).with_name("videosdk-webhook-examples.jsonl"),
    )
    parser.add_argument("--db", help="database URL (default: a new temporary SQLite file)")
    args = parser.parse_args()
    main(args.file, args.db or f"sqlite:///{tempfile.mkdtemp()}/lifecycle.db")
