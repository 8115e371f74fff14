"""Drift as a use case: the environment's current release against its baseline window (the
requests served by the release before it), verified releases only, optionally alerting.

Reads releases through the gate's verified rows (`check_releases`) and requests through the
`ObservationSource`; computes with `runtime.drift`. Records nothing but the alert it sends.
Reading needs `view` on the model; `notify` (which sends alerts) needs `promote` on it, the
right that judges canaries, so that a viewer cannot page whoever the webhooks reach.
"""

from __future__ import annotations

from typing import Any

from modelward.core.roles import Action
from modelward.errors import InputError, NotFoundError
from modelward.runtime.drift import THRESHOLDS, drift_report
from modelward.runtime.sources import ObservationSource
from modelward.services.context import RegistryContext, current_actor
from modelward.services.gate_config import load_gate_config
from modelward.services.state_integrity import check_releases
from modelward.services.users import require
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.registry_repository import RegistryRepository


class DriftService:
    def __init__(
        self,
        context: RegistryContext,
        actor: str | None = None,
        source: ObservationSource | None = None,
    ) -> None:
        self.ctx = context
        self.actor = actor or current_actor()
        self.source = source
        self.config = load_gate_config(context)

    def report(self, model: str, environment: str, notify: bool = False) -> dict[str, Any]:
        self.config.path.index(environment)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW, self.config.permissions, model=model)
            if notify:
                require(conn, self.actor, Action.PROMOTE, self.config.permissions, model=model)
            RegistryRepository(conn).require_model_id(model)
            check_releases(conn, model, environment)
            history = [r.release for r in GateRepository(conn).releases(model, environment)]
        if not history:
            raise NotFoundError(f"models:/{model} has no release in {environment}")
        current = history[-1]
        previous = next(
            (r for r in reversed(history[:-1]) if r.state_digest() != current.state_digest()),
            None,
        )
        if self.source is None:
            raise InputError(
                "no telemetry source is configured: drift reads the requests ingested by the "
                "telemetry service"
            )
        now_obs = self.source.observations(
            model, environment=environment, release_id=current.release_id
        )
        base_obs = (
            self.source.observations(model, environment=environment, release_id=previous.release_id)
            if previous
            else []
        )
        metrics = drift_report(base_obs, now_obs)
        data = {
            "model": model,
            "environment": environment,
            "release_id": current.release_id,
            "baseline_release_id": previous.release_id if previous else None,
            "thresholds": dict(THRESHOLDS),
            "metrics": [m.to_dict() for m in metrics],
            "drift": any(m.status == "drift" for m in metrics),
            "alerted": 0,
        }
        if notify and data["drift"]:
            from modelward.services.alerts import AlertService

            data["alerted"] = AlertService(self.ctx, self.actor).send("drift", data).delivered
        return data
