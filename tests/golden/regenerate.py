"""Rewrite the expected hashes in cases.toml (and each case's per-tick hashes in ticks/) from the current code. Run
only when a change is meant."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from golden import CASES, TICKS, load_cases, play


def main() -> None:
    text = CASES.read_text(encoding="utf-8")
    for case in load_cases():
        played = play(case)
        state_hash, events_digest = played.state_hash, played.events_digest
        TICKS.mkdir(exist_ok=True)
        (TICKS / f"{case['name']}.json").write_text(json.dumps(played.tick_hashes, indent=0) + "\n", encoding="utf-8")
        block = re.compile(
            rf'(name = "{re.escape(case["name"])}"(?:.|\n)*?state_hash = )"[^"]*"(\nevents_digest = )"[^"]*"'
        )
        text, count = block.subn(rf'\g<1>"{state_hash}"\g<2>"{events_digest}"', text, count=1)
        assert count == 1, case["name"]
        print(f"{case['name']}: {state_hash}")
    CASES.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
