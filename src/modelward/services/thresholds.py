"""Evaluation thresholds: for each suite, each metric's pass mark and direction, set by a reviewer
or an admin (registry setting `eval.thresholds.SUITE`, ledgered, anchor-checked on every read).

These, not the thresholds or `lower_is_better` an evaluation file declares, are what the gate's
`evaluations` facts carry: a trainer cannot lower the bar by writing it into the results. A
metric entry is `{"direction": "higher"|"lower", "threshold": NUMBER|null}` (`--min X` is
higher-is-better with threshold X, `--max X` lower-is-better with threshold X, `--direction`
alone fixes the direction without a pass mark). Knows nothing of argument parsing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from modelward.errors import InputError, NotFoundError
from modelward.provenance.evaluation import validate_suite
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.settings import THRESHOLDS_PREFIX, set_in, verified_setting
from modelward.services.users import role_of
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.settings_repository import SettingsRepository

DIRECTIONS = ("higher", "lower")
MAX_METRIC_NAME = 200


@dataclass(frozen=True)
class MetricThreshold:
    direction: str  # "higher" or "lower" is better
    threshold: float | None

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> MetricThreshold:
        if not isinstance(data, Mapping):
            raise InputError(f"{where}: must be a mapping")
        keys = set(data)
        if "min" in keys or "max" in keys:
            if keys not in ({"min"}, {"max"}):
                raise InputError(f"{where}: give either min or max, not both or with others")
            bound = "min" if "min" in keys else "max"
            return cls("higher" if bound == "min" else "lower", _number(data[bound], where))
        unknown = keys - {"direction", "threshold"}
        if unknown or "direction" not in keys:
            raise InputError(
                f"{where}: must be {{min: X}}, {{max: X}} or {{direction: higher|lower}}"
            )
        direction = data["direction"]
        if direction not in DIRECTIONS:
            raise InputError(f"{where}: direction must be 'higher' or 'lower'")
        raw = data.get("threshold")
        return cls(direction, None if raw is None else _number(raw, where))


@dataclass(frozen=True)
class SuiteThresholds:
    suite: str
    metrics: Mapping[str, MetricThreshold]
    set_at: str | None = None
    set_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "metrics": {name: self.metrics[name].to_dict() for name in sorted(self.metrics)},
            "set_at": self.set_at,
            "set_by": self.set_by,
        }


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: the threshold must be a number")
    if not math.isfinite(value):
        raise InputError(f"{where}: the threshold must be finite")
    return float(value)


def check_metric_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_METRIC_NAME:
        raise InputError(f"metric name {name!r} must be 1-{MAX_METRIC_NAME} characters")
    if any(ord(c) < 32 for c in name):
        raise InputError(f"metric name {name!r} contains a control character")
    return name


def parse_thresholds_document(data: Any, where: str = "thresholds") -> dict[str, MetricThreshold]:
    """`{METRIC: {min: X} | {max: X} | {direction: higher|lower}}` (or under a `metrics` key)."""
    if isinstance(data, Mapping) and set(data) == {"metrics"}:
        data = data["metrics"]
    if not isinstance(data, Mapping) or not data:
        raise InputError(f"{where}: must map metric names to {{min: X}} or {{max: X}}")
    return {
        check_metric_name(name): MetricThreshold.from_dict(entry, f"{where}: metric {name!r}")
        for name, entry in data.items()
    }


def suite_thresholds_in(conn: Connection, suite: str) -> SuiteThresholds:
    """The verified thresholds of `suite` (empty when none were set)."""
    record = verified_setting(conn, THRESHOLDS_PREFIX + suite)
    if record is None:
        return SuiteThresholds(suite, {})
    metrics = parse_thresholds_document(record.value, f"thresholds of suite {suite!r}")
    return SuiteThresholds(suite, metrics, record.created_at, record.created_by)


def all_thresholds_in(conn: Connection) -> dict[str, SuiteThresholds]:
    keys = [
        r.key for r in SettingsRepository(conn).all_latest() if r.key.startswith(THRESHOLDS_PREFIX)
    ]
    found = {}
    for key in sorted(keys):
        suite = key[len(THRESHOLDS_PREFIX) :]
        found[suite] = suite_thresholds_in(conn, suite)
    return found


class ThresholdService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def set_metric(
        self,
        suite: str,
        metric: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        direction: str | None = None,
    ) -> SuiteThresholds:
        """Set one metric's pass mark (`minimum` or `maximum`) or only its `direction`."""
        validate_suite(suite)
        check_metric_name(metric)
        given = [v is not None for v in (minimum, maximum, direction)]
        if sum(given) != 1:
            raise InputError("give exactly one of --min, --max or --direction")
        if minimum is not None:
            entry = MetricThreshold("higher", _number(minimum, f"metric {metric!r}"))
        elif maximum is not None:
            entry = MetricThreshold("lower", _number(maximum, f"metric {metric!r}"))
        else:
            if direction not in DIRECTIONS:
                raise InputError("--direction must be 'higher' or 'lower'")
            entry = MetricThreshold(str(direction), None)
        return self._update(suite, lambda metrics: {**metrics, metric: entry})

    def set_suite(self, suite: str, document: Any) -> SuiteThresholds:
        """Replace the suite's thresholds with a parsed YAML/JSON document."""
        validate_suite(suite)
        metrics = parse_thresholds_document(document)
        return self._update(suite, lambda _old: metrics)

    def unset_metric(self, suite: str, metric: str) -> SuiteThresholds:
        validate_suite(suite)

        def remove(metrics: dict[str, MetricThreshold]) -> dict[str, MetricThreshold]:
            if metric not in metrics:
                raise NotFoundError(f"suite {suite!r} has no threshold for {metric!r}")
            return {k: v for k, v in metrics.items() if k != metric}

        return self._update(suite, remove)

    def _update(self, suite: str, change: Any) -> SuiteThresholds:
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            current = dict(suite_thresholds_in(conn, suite).metrics)
            metrics = change(current)
            value = {"metrics": {k: metrics[k].to_dict() for k in sorted(metrics)}}
            record = set_in(
                conn,
                self.actor,
                THRESHOLDS_PREFIX + suite,
                value,
                now_text=format_time(now),
                now=now,
            )
        return SuiteThresholds(suite, metrics, record.created_at, record.created_by)

    def show(self, suite: str | None = None) -> list[SuiteThresholds]:
        with self.ctx.database.read() as conn:
            role_of(conn, self.actor)
            if suite is not None:
                validate_suite(suite)
                return [suite_thresholds_in(conn, suite)]
            return list(all_thresholds_in(conn).values())
