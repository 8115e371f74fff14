"""Where judges read served requests from: the `ObservationSource` protocol and its in-memory
twin; a source may also hold GenAI metric points (`MetricPointSource`).

The telemetry service stores ingested spans as `Observation`s and answers this query; tests
and benchmarks use `InMemoryObservations`. A source returns what it holds; the judges decide
what counts (`runtime.canary.select_arms`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from modelward.core.observations import MetricPoint, Observation


class ObservationSource(Protocol):
    def observations(
        self,
        model: str,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[Observation]: ...


class MetricPointSource(Protocol):
    def metric_points(
        self,
        model: str,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[MetricPoint]: ...


class InMemoryObservations:
    """Observations held in a list, filtered as the telemetry table would filter them."""

    def __init__(
        self, observations: Iterable[Observation] = (), points: Iterable[MetricPoint] = ()
    ) -> None:
        self._items: list[Observation] = list(observations)
        self._points: list[MetricPoint] = list(points)

    def add(self, *observations: Observation) -> None:
        self._items.extend(observations)

    def add_points(self, *points: MetricPoint) -> None:
        self._points.extend(points)

    def metric_points(
        self,
        model: str,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[MetricPoint]:
        return _matching(self._points, model, environment, release_id, since_ns, until_ns)

    def observations(
        self,
        model: str,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[Observation]:
        return _matching(self._items, model, environment, release_id, since_ns, until_ns)


_Row = TypeVar("_Row", Observation, MetricPoint)


def _matching(
    rows: list[_Row],
    model: str,
    environment: str | None,
    release_id: str | None,
    since_ns: int | None,
    until_ns: int | None,
) -> list[_Row]:
    """The rows of `model` (and of that environment and release, in that window)."""
    return [
        r
        for r in rows
        if r.model == model
        and (environment is None or r.environment == environment)
        and (release_id is None or r.release_id == release_id)
        and (since_ns is None or r.time_unix_nano >= since_ns)
        and (until_ns is None or r.time_unix_nano < until_ns)
    ]
