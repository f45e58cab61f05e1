"""Rules: YAML rules over Observations, the event-time engine, hot reload, recordings, replay."""

from rules.engine import Engine
from rules.recording import RecordingWriter, read_recording
from rules.reload import RuleWatcher
from rules.schema import RuleSet, load_rules

__all__ = ["Engine", "RecordingWriter", "RuleSet", "RuleWatcher", "load_rules", "read_recording"]
