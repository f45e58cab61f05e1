"""`streetwatch run`: every stage in one process, with bounded hand-offs between them.

    MQTT ─► ingestor ─► journal (SQLite) ─► analysis ─► case store ─► evidence ─► case feed
                                              ▲  sensors → rules
    cameras ─► CameraPipeline ─► observations ┘                journal ─► TimescaleDB sink

Sensor readings are never dropped: the analysis stage reads them from the journal by a cursor
that moves only at a checkpoint, after the detectors' state is saved and the observations and
violations the readings caused are stored; a restart replays from the checkpoint, and every
receiver downstream is idempotent (observation key + last_seen, violation id, case id). Camera
frames may be dropped under load (each camera analyses only its newest frame); the observations
a camera emits wait in a bounded queue. A violation is durable once its case is opened in the
case store; the evidence stage packages opened cases once their post-roll is recorded, so a
restart finishes what was pending.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.observation import Observation
from detectors.sensors import SensorDetectors
from evidence.feed import CaseFeed
from evidence.service import EvidenceService
from ingest import failpoints
from ingest.config import DeviceKind, SiteConfig
from ingest.diskspace import DiskGuard
from ingest.frames import EncodedFrame
from ingest.journal import Journal
from ingest.mqtt_consumer import MqttIngestor
from ingest.readings import DroneTelemetry, Reading, Snapshot
from ingest.secrets import SecretError, read_secret
from ingest.video.packetring import PacketClip
from ingest.yamlsource import ConfigError
from rules import Engine, RecordingWriter, RuleSet, RuleWatcher, load_rules
from rules.violation import Violation
from streetwatch.journal_retention import JournalRetention
from streetwatch.pipeline_decisions import DecisionsStage
from streetwatch.pipeline_evidence import EvidenceStage
from streetwatch.threshold_state import load_thresholds, save_thresholds
from streetwatch.watermark import Watermark

log = logging.getLogger("streetwatch.pipeline")

ANALYSIS_CURSOR = "analysis"
CATALOG = Path(__file__).resolve().parent.parent / "rules" / "catalog"
WHIP_TOKEN_ENV = "STREETWATCH_WHIP_TOKEN"


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    rules_dir: Path = CATALOG
    record: Path | None = None
    cameras: bool = True
    loop_video: bool = False
    """Play video files over and over (the demo); a file otherwise ends its camera."""
    batch: int = 500
    checkpoint_s: float = 2.0
    camera_queue: int = 10_000
    sink: bool = True
    whip_host: str = "127.0.0.1"
    whip_port: int = 8189
    """Where drones and body cameras with `stream: webrtc` POST their WHIP offers."""
    ingest_workers: int = 1
    """MQTT ingestion in this many processes (streetwatch/ingest_workers.py); 1: in this one."""


class Pipeline(DecisionsStage, EvidenceStage):
    def __init__(
        self,
        config: SiteConfig,
        options: PipelineOptions | None = None,
        rules: RuleSet | None = None,
    ) -> None:
        """`rules`: already loaded from `options.rules_dir` (else they are loaded here)."""
        self.config = config
        self.options = options = options or PipelineOptions()
        assert config.storage.journal is not None
        self.rules = rules if rules is not None else load_rules(options.rules_dir, config)
        self.journal = Journal(config.storage.journal)
        self.disk = DiskGuard(config.storage.root, config.storage.min_free_mb * 2**20)
        if options.ingest_workers > 1:
            from streetwatch.ingest_workers import IngestWorkers

            self.ingestor: Any = IngestWorkers(config, options.ingest_workers, self.journal)
        else:
            self.ingestor = MqttIngestor(config, self.journal, disk=self.disk)
        self.jt808 = self._jt808()
        self.sensors = SensorDetectors(config)
        self.sensor_state = Path(config.storage.root) / "sensors.state.json"
        self.threshold_state = Path(config.storage.root) / "thresholds.state.json"
        self.engine = Engine(self.rules, config, external_clock=True)
        self.watcher = RuleWatcher(
            options.rules_dir, config, on_rules=self._rules_changed, on_error=self._rules_bad
        )
        self.counters: Counter[str] = Counter()
        self._pending_rules: RuleSet | None = None
        self._pending_zone_edits: list[tuple[SiteConfig, str]] = []
        self.last_reload: dict[str, Any] = {
            "ok": True,
            "at": datetime.now(UTC).isoformat(),
            "rules": len(self.rules.rules),
            "problems": [],
        }
        """The last rule (re)load: when, whether it took, and file:line problems if not."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._camera_obs: queue.Queue[Observation] = queue.Queue(options.camera_queue)
        self.watermark = Watermark()
        self.cameras = self._cameras() if options.cameras else {}
        self.recorder = (
            RecordingWriter(options.record, site_id=config.site.id) if options.record else None
        )
        self.evidence = EvidenceService.from_config(
            config, frames=self, journal=self.journal, disk=self.disk
        )
        self.cases, self.builder = self.evidence.store, self.evidence.builder
        self.feed = CaseFeed(config, self.cases)
        self.sink = self._sink() if options.sink else None
        self.retention = JournalRetention(
            self.journal,
            config.storage.journal_keep_days,
            pending_since=self._pending_since,
            sink=self.sink,
        )
        self.whip = self._whip()
        self._snapshot_index: Counter[str] = Counter()

    def _cameras(self) -> dict[str, Any]:
        from detectors.camera import CameraPipeline

        cameras = {}
        for device in self.config.devices:
            video = device.kind in (DeviceKind.CAMERA, DeviceKind.DRONE)
            if video and device.detect is not None and self.config.broker.owns(device.id):
                cameras[device.id] = CameraPipeline(
                    device, self.config, self._camera_observation, loop=self.options.loop_video
                )
        return cameras

    def _whip(self) -> Any:
        """The WHIP endpoint, when a camera pushes WebRTC; its bearer token comes from the
        environment (STREETWATCH_WHIP_TOKEN), never from devices.yaml."""
        pushed = [d for d, cam in self.cameras.items() if cam.device.stream == "webrtc"]
        if not pushed:
            return None
        from ingest.video.webrtc import WhipServer

        try:
            token = read_secret(WHIP_TOKEN_ENV)
        except SecretError as exc:
            raise ConfigError([str(exc)]) from None
        if not token:
            raise ConfigError(
                [f"{', '.join(pushed)}: stream webrtc needs a token in ${WHIP_TOKEN_ENV}"]
            )
        return WhipServer(
            token,
            pushed,
            lambda frame: self.cameras[frame.device_id].submit(frame),
            host=self.options.whip_host,
            port=self.options.whip_port,
        )

    def _jt808(self) -> Any:
        """The JT/T 808 listener, when devices.yaml has a `jt808` section."""
        if self.config.jt808 is None:
            return None
        from ingest.jt808 import Jt808Listener, load_auth_key

        key = load_auth_key(self.config.storage.root)
        return Jt808Listener(self.config, self.journal, auth_key=key, disk=self.disk)

    def _sink(self) -> Any:
        if self.config.timeseries is None:
            return None
        from streetwatch.sink import TimeseriesSink

        return TimeseriesSink(self.config, self.journal.path, self.cases.path)

    # ---- life cycle ------------------------------------------------------------------------

    def start(self, wait_s: float | None = 15.0) -> None:
        if self.sensors.load(self.sensor_state):
            log.info("sensor detectors resumed from %s", self.sensor_state)
        if load_thresholds(self.engine.thresholds, self.threshold_state):
            log.info("threshold episodes resumed from %s", self.threshold_state)
        self._resume_cooldowns()
        self.ingestor.start(wait_s=wait_s)
        if self.jt808 is not None:
            self.jt808.start()
        self.watcher.start()
        for camera in self.cameras.values():
            camera.start()
        if self.whip is not None:
            self.whip.start()
            log.info("WHIP endpoint for pushed video at %s", self.whip.url)
        self.feed.start()
        if self.sink is not None:
            self.sink.start()
        for name, target in (("analysis", self._analyse), ("evidence", self._package)):
            thread = threading.Thread(target=target, name=f"sw-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "running: %d rules, %d cameras, journal %s, cases %s",
            len(self.rules.rules),
            len(self.cameras),
            self.journal.path,
            self.cases.path,
        )

    def _resume_cooldowns(self) -> None:
        """The engine's memory of what it opened lives in the case store: without it a restart
        would forget every rule's cooldown and open a case for each new situation."""
        resumed = sum(
            self.engine.remember_opened(rule_id, situation, opened_at)
            for rule_id, situation, opened_at in self.cases.last_opened()
        )
        if resumed:
            log.info("rule cooldowns resumed from %d case(s) in %s", resumed, self.cases.path)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain and flush: sources stop first, then each stage finishes what it holds."""
        if self.whip is not None:
            self.whip.stop()
        for camera in self.cameras.values():
            camera.stop()
        self.ingestor.stop()
        if self.jt808 is not None:
            self.jt808.stop()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self.watcher.stop()
        self.feed.stop()
        if self.sink is not None:
            self.sink.stop()
        if self.recorder is not None:
            self.recorder.close()
        self.journal.close()

    @property
    def idle(self) -> bool:
        """Everything journaled has been analysed and no camera observation is waiting."""
        latest = self.journal.readings(self.journal.cursor(ANALYSIS_CURSOR), 1)
        return not latest and self._camera_obs.empty()

    # ---- evidence frames (FrameProvider) ---------------------------------------------------

    def frames_between(self, device_id: str, t0: datetime, t1: datetime) -> list[EncodedFrame]:
        camera = self.cameras.get(device_id)
        return [] if camera is None else camera.frames_between(t0, t1)

    def clip_between(self, device_id: str, t0: datetime, t1: datetime) -> PacketClip | None:
        camera = self.cameras.get(device_id)
        return None if camera is None else camera.clip_between(t0, t1)

    # ---- analysis: readings and camera observations → rules → cases ------------------------

    def _camera_observation(self, obs: Observation) -> None:
        self._camera_obs.put(obs)

    def _rules_changed(self, rules: RuleSet) -> None:
        with self._lock:
            self._pending_rules = rules
        self.last_reload = {
            "ok": True,
            "at": datetime.now(UTC).isoformat(),
            "rules": len(rules.rules),
            "problems": [],
        }
        log.info("rules reloaded from %s: %d rules", self.options.rules_dir, len(rules.rules))

    def _rules_bad(self, error: ConfigError) -> None:
        self.counters["rule_reload_errors"] += 1
        self.last_reload = {
            "ok": False,
            "at": datetime.now(UTC).isoformat(),
            "rules": self.last_reload.get("rules"),  # the previous rules keep running
            "problems": list(error.problems),
        }
        for problem in error.problems:
            log.error("rules not reloaded, the previous ones keep running: %s", problem)

    def _analyse(self) -> None:
        """Runs until stopped and drained. A failing pass (the journal locked past its busy
        timeout, a detector bug) is logged and counted, and retried from the same cursor."""
        cursor = self.journal.cursor(ANALYSIS_CURSOR)
        checkpointed = time.monotonic()
        while True:
            stopping = self._stop.is_set()
            try:
                self.disk.check("analysis")
                cursor, quiet = self._analyse_once(cursor)
                due = time.monotonic() - checkpointed >= self.options.checkpoint_s
                if (stopping and quiet) or due:
                    self._checkpoint(cursor)  # a failed checkpoint is retried on the next pass
                    checkpointed = time.monotonic()
                    self._prune(cursor)
            except Exception as exc:
                self.counters["analysis_errors"] += 1
                if self.disk.failed("analysis", exc):
                    log.error("analysis paused, the storage disk is full (%s); seq %d", exc, cursor)
                else:
                    log.exception("analysis pass failed; retrying from journal seq %d", cursor)
                if stopping:
                    return
                self._stop.wait(1.0)
                continue
            if quiet:
                if stopping:
                    return
                time.sleep(0.05)

    def _analyse_once(self, cursor: int) -> tuple[int, bool]:
        """One batch: readings past `cursor` and waiting camera observations → rules → cases.
        Returns the new cursor and whether there was nothing to do."""
        with self._lock:
            rules, self._pending_rules = self._pending_rules, None
        if rules is not None:
            self.engine.replace(rules)
        self._apply_zone_edits()
        self._apply_decisions()
        rows = self.journal.readings(cursor, self.options.batch)
        observations = self._observe(rows)
        violations: list[Violation] = []
        for obs in observations:
            violations += self.engine.process(obs)
        now = self.watermark.value()
        if now is not None:
            for obs in self.sensors.tick(now):
                observations.append(obs)
                violations += self.engine.process(obs)
            violations += self.engine.advance(now)
        if observations:
            self.journal.write_observations(observations)
        for violation in violations:
            _case, new = self.cases.open(violation, case_id=self.builder.case_id(violation))
            if new:
                self.counters["cases_opened"] += 1
                self._link_repeat(_case, violation)
                log.info(
                    "violation %s: %s at %s (%s)",
                    violation.rule_id,
                    violation.subject_id,
                    violation.zone_id or violation.devices[0],
                    violation.opened_at.isoformat(),
                )
        self._clear(self.engine.clearances())
        self.counters["readings_analysed"] += len(rows)
        self.counters["observations"] += len(observations)
        self.counters["violations"] += len(violations)
        return (rows[-1][0] if rows else cursor), not rows and not observations

    def _observe(self, rows: list) -> list[Observation]:
        observations: list[Observation] = []
        for _seq, reading in rows:
            if self.recorder is not None:
                self.recorder.reading(reading)
            self.watermark.observe(reading.device_id, reading.event_ts)
            if isinstance(reading.payload, Snapshot):
                self._submit_snapshot(reading)
            elif isinstance(reading.payload, DroneTelemetry):
                camera = self.cameras.get(reading.device_id)
                if camera is not None and camera.ground is not None:
                    camera.ground.telemetry(reading.event_ts, reading.payload)
            observations += self.sensors.process(reading)
        while len(observations) < self.options.batch * 4:
            try:
                obs = self._camera_obs.get_nowait()
            except queue.Empty:
                break
            self.watermark.observe(obs.device_id, obs.last_seen)
            observations.append(obs)
        if self.recorder is not None:
            for obs in observations:
                self.recorder.observation(obs)
        return observations

    def _submit_snapshot(self, reading: Reading) -> None:
        """A JPEG snapshot over MQTT from a camera with `stream: mqtt` is one of its frames."""
        camera = self.cameras.get(reading.device_id)
        if camera is None or camera.device.stream != "mqtt":
            return
        from ingest.video.snapshots import SnapshotError, snapshot_to_frame

        index = self._snapshot_index[reading.device_id]
        self._snapshot_index[reading.device_id] += 1
        try:
            camera.submit(snapshot_to_frame(reading, index))
        except SnapshotError as exc:
            self.counters["bad_snapshots"] += 1
            log.warning("snapshot not analysed: %s", exc)

    def _prune(self, analysed: int) -> None:
        """The journal's old rows, once every reader is done with them (a failure waits for the
        next turn: the rows are still there)."""
        try:
            pruned = self.retention.maybe_prune(analysed)
        except Exception as exc:
            self.counters["journal_prune_errors"] += 1
            if self.disk.failed("journal_prune", exc):
                log.error("pruning the journal waits: the storage disk is full (%s)", exc)
            else:
                log.exception("pruning the journal failed; trying again later")
            return
        if pruned:
            self.counters["journal_pruned_readings"] += pruned.readings
            self.counters["journal_pruned_observations"] += pruned.observations
            self.counters["journal_pruned_dead_letters"] += pruned.dead_letters

    def _checkpoint(self, cursor: int) -> None:
        failpoints.reach("analysis.stored")
        self.sensors.save(self.sensor_state)
        save_thresholds(self.engine.thresholds, self.threshold_state)
        if self.recorder is not None:
            self.recorder.flush()
        self.journal.set_cursor(ANALYSIS_CURSOR, cursor)

    # ---- status ----------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, object]]:
        """Healthy while the broker is connected, every stage thread is alive, the storage
        disk has room and live rule reload finishes its polls."""
        threads = {t.name: t.is_alive() for t in self._threads}
        broker = self.ingestor.connected.is_set()
        detail: dict[str, object] = {"broker": "connected" if broker else "disconnected"}
        detail["stages"] = threads
        storage = self.disk.status()
        detail["storage"] = storage
        if self.sink is not None:
            detail["sink_backlog"] = self.sink.backlog()
        reload_stuck = self.watcher.stuck()
        if reload_stuck is not None:
            detail["rules_reload"] = reload_stuck
        if self.jt808 is not None:
            threads["sw-jt808"] = self.jt808.alive
        healthy = broker and all(threads.values()) and not storage["full"]
        return healthy and reload_stuck is None, detail

    def stage_counters(self) -> dict[str, dict[str, float]]:
        """Every stage's counters, for the status line and the metrics endpoint."""
        cameras: Counter[str] = Counter()
        for camera in self.cameras.values():
            for name, value in camera.stats.as_dict().items():
                if isinstance(value, int | float):
                    cameras[name] += value
        stages: dict[str, dict[str, float]] = {
            "ingest": dict(self.ingestor.stats.snapshot()),
            "sensors": dict(self.sensors.stats),
            "cameras": dict(cameras),
            "rules": {
                **self.engine.stats,
                **{f"thresholds_{k}": v for k, v in self.engine.thresholds.stats.items()},
            },
            "pipeline": {**self.counters, "queue_depth.camera": self._camera_obs.qsize()},
            "evidence": dict(self.builder.stats),
            "feed": {**self.feed.stats, "feed_backlog": self.feed.backlog()},
            "storage": self.disk.counters(),
        }
        if self.whip is not None:
            stages["whip"] = dict(self.whip.stats)
        if self.jt808 is not None:
            stages["jt808"] = dict(self.jt808.stats.snapshot())
        if self.sink is not None:
            stages["sink"] = {
                k: v for k, v in self.sink.stats.snapshot().items() if isinstance(v, int | float)
            }
            stages["sink"]["sink_backlog"] = self.sink.backlog()
        return stages

    # ---- console edits ---------------------------------------------------------------------

    def zones_edited(self, config: SiteConfig, device_id: str) -> None:
        """The console saved new zones of `device_id` (validated; `config` is the site with
        them). A camera is the caller's to tell (`set_zones`); here the rest of the box learns
        them: rule reloads check against them at once, and the analysis thread (which alone
        touches the engine and the sensor detectors) takes the edit before its next batch."""
        self.config = config
        self.watcher.config = config
        with self._lock:
            self._pending_zone_edits.append((config, device_id))

    def _apply_zone_edits(self) -> None:
        """On the analysis thread: the engine learns the zones' kinds and merchants (the party
        of a new shop-front zone), and a GPS device or drone rebuilds its geofences, keeping
        its open situations in zones that remain."""
        with self._lock:
            edits, self._pending_zone_edits = self._pending_zone_edits, []
        for config, device_id in edits:
            device = config.device(device_id)
            if device is None:
                continue
            self.engine.learn_zones(device.zones)
            from detectors.sensors import STATE_VERSION

            vehicle = self.sensors.snapshot()["vehicles"].get(device_id)
            self.sensors.config = config
            if vehicle is not None:
                self.sensors.restore({"version": STATE_VERSION, "vehicles": {device_id: vehicle}})
