"""Rewrite the expected hashes in cases.toml from the current code. Run only when a change is meant."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from golden import CASES, load_cases, play


def main() -> None:
    text = CASES.read_text(encoding="utf-8")
    for case in load_cases():
        state_hash, events_digest = play(case)
        block = re.compile(
            rf'(name = "{re.escape(case["name"])}"(?:.|\n)*?state_hash = )"[^"]*"(\nevents_digest = )"[^"]*"'
        )
        text, count = block.subn(rf'\g<1>"{state_hash}"\g<2>"{events_digest}"', text, count=1)
        assert count == 1, case["name"]
        print(f"{case['name']}: {state_hash}")
    CASES.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
