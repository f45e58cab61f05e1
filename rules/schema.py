"""Rule files: the YAML operators write, its pydantic model, loading and cross-checks.

A rule file holds one rule (a mapping with `id`) or several under `rules:`. Every error names
file, line and field and says what would be valid; names of zones and devices are checked
against devices.yaml so a typo fails at `check`, not silently in the street.

The parts live in their own modules; this one keeps every public name importable from here:
- `rules.fields`: durations (`30s`, `5m`), one-or-many name lists, the unknown-name wording;
- `rules.schedule`: `schedule:` and its compiled, timezone-aware form;
- `rules.model`: clauses, conditions, evidence, the rule, and the loaded `RuleSet`;
- `rules.sitecheck`: checks of a rule against devices.yaml (names, merchant party);
- `rules.loading`: reading the files of a folder, `load_rules`.
"""

from __future__ import annotations

from rules.fields import DURATION_HINT, Duration, Names, parse_duration
from rules.loading import load_rules, rule_files
from rules.model import (
    DEFAULT_LOST_AFTER,
    DEFAULT_STATES,
    KNOWN_STATES,
    KNOWN_SUBJECTS,
    Clause,
    Condition,
    Dedup,
    Evidence,
    LoadedRule,
    Party,
    Review,
    Rule,
    RuleFile,
    RuleSet,
    Severity,
)
from rules.schedule import CompiledSchedule, Schedule
from rules.sitecheck import known_subjects, known_zones

__all__ = [
    "DEFAULT_LOST_AFTER",
    "DEFAULT_STATES",
    "DURATION_HINT",
    "KNOWN_STATES",
    "KNOWN_SUBJECTS",
    "Clause",
    "CompiledSchedule",
    "Condition",
    "Dedup",
    "Duration",
    "Evidence",
    "LoadedRule",
    "Names",
    "Party",
    "Review",
    "Rule",
    "RuleFile",
    "RuleSet",
    "Schedule",
    "Severity",
    "known_subjects",
    "known_zones",
    "load_rules",
    "parse_duration",
    "rule_files",
]
