"""Feed the provider's 41 example webhooks to an engine and show what it made of them.

Run: python examples/quickstart.py [FILE.jsonl]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from lifecycle import Engine


def main(path: Path) -> None:
    engine = Engine()
    for line in path.read_bytes().splitlines():
        if line.strip():
            engine.feed(line)
    outcomes = Counter(r.outcome.value for r in engine.anomalies())
    print(f"{engine.events_fed} webhooks fed, {len(engine)} resources tracked")
    print(f"{'lifecycle':<30} {'key':<58} state")
    for status in engine.resources():
        print(f"{status.lifecycle:<30} {'/'.join(status.key):<58} {status.state}")
    print(f"\nanomalies: {dict(outcomes)}")
    for r in engine.anomalies():
        print(f"  #{r.seq} {r.webhook_type}: {r.outcome.value} in {r.before!r}"
              + (f" warnings={list(r.warnings)}" if r.warnings else ""))


if __name__ == "__main__":
    default = Path(__file__).with_name("videosdk-webhook-examples.jsonl")
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default)
