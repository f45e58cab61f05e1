"""Render the fault suite's ledger (var/reliability.jsonl) as docs/reliability.md's table.

python -m tests.faults.reliability_table            # print the table
python -m tests.faults.reliability_table --write    # replace it in docs/reliability.md
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from tests.conftest import REPO
from tests.faults.conftest import LEDGER

DOC = REPO / "docs" / "reliability.md"
START, END = "<!-- ledger:start -->", "<!-- ledger:end -->"


def table(rows: list[dict]) -> str:
    merged: dict[tuple[str, str], dict] = defaultdict(
        lambda: {"tried": 0, "lost": 0, "outside": 0, "runs": 0, "soak": 0, "last": ""}
    )
    for row in rows:
        entry = merged[(row["group"], row["what"])]
        entry["tried"] += row["tried"]
        entry["lost"] += row["lost"]
        entry["outside"] += row.get("outside", 0)
        entry["runs"] += 1
        entry["soak"] += row["soak"]
        entry["last"] = max(entry["last"], row["at"][:10])
    lines = [
        "| Group | Fault or bad input | Tried (times) | Test runs (soak) | Lost or doubled"
        " by streetwatch | Lost by the broker itself | Last run |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for (group, what), e in sorted(merged.items()):
        runs = f"{e['runs']} ({e['soak']})"
        lost, outside = round(e["lost"]), round(e["outside"])
        cells = [group, what, e["tried"], runs, lost, outside, e["last"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    rows = [json.loads(line) for line in LEDGER.read_text().splitlines() if line.strip()]
    text = table(rows)
    if "--write" not in argv:
        print(text)
        return 0
    doc = DOC.read_text()
    head, _, rest = doc.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print(f"wrote {len(rows)} ledger rows into {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
