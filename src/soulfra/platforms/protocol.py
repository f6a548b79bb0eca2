"""ProtocolPlatform: validation and permission. Serves the rule set and validation results; never takes part in
loops and never changes a world. The rules themselves live in ``soulfra.security.permissions``: each instance runs
under the rules an admin set for it (read from the store on every request, so a change counts at once) over the
server's. It keeps the validations that found violations, the latest ``RECENT_VIOLATIONS`` of them, in memory
beside its counts (like them, they start again with the process)."""

from __future__ import annotations

from collections import deque
from typing import Any

from soulfra.bus.port import Bus
from soulfra.errors import InputError
from soulfra.offload import off_loop
from soulfra.platforms.base import Op, Platform
from soulfra.security.permissions import PermissionValidator, RuleSet, rules_for
from soulfra.store.ports import Store

__all__ = ["RECENT_VIOLATIONS", "ProtocolPlatform"]

RECENT_VIOLATIONS = 50  # validations with violations kept for ``violations``, the oldest dropped first


class ProtocolPlatform(Platform):
    name = "protocol"
    always = frozenset({"status", "rules", "violations"})

    def __init__(self, instance_id: str, bus: Bus, store: Store | None = None, *, rules: RuleSet | None = None) -> None:
        super().__init__(instance_id, bus)
        self.default_rules = rules or RuleSet()
        self.store = store
        self.validations = 0
        self.violations = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_VIOLATIONS)

    def ops(self) -> dict[str, Op]:
        return {"status": self.status, "rules": self.read_rules, "validate": self.validate,
                "violations": self.recent_violations}  # fmt: skip

    async def recent_violations(self, body: dict[str, Any]) -> dict[str, Any]:
        """The counts, and the latest validations that found violations, newest first: each with its number among
        this platform's validations, its subject, the instance it was about and what it found."""
        return {"validations": self.validations, "violations": self.violations, "kept": RECENT_VIOLATIONS,
                "recent": list(reversed(self.recent))}  # fmt: skip

    async def status(self, body: dict[str, Any]) -> dict[str, Any]:
        report = await super().status(body)
        report.update(validations=self.validations, violations=self.violations)
        return report

    async def rules_of(self, instance_id: str) -> RuleSet:
        if self.store is None:
            return self.default_rules
        return await off_loop(rules_for, self.store, instance_id, self.default_rules)

    async def read_rules(self, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.rules_of(self.instance_id)).to_json()

    async def validate(self, body: dict[str, Any]) -> dict[str, Any]:
        """``{"subject": snapshot|instance|input|fork|export, ...}``: every violation of every rule that applies."""
        subject = body.get("subject")
        if not isinstance(subject, str):
            raise InputError("'subject' must name what to validate: snapshot, instance, input, fork or export")
        if subject == "state":
            raise InputError("a state is validated in process, not over the bus")
        target = body.get("instance", self.instance_id)
        if not isinstance(target, str):
            raise InputError("'instance' must be a string")
        fields = {k: v for k, v in body.items() if not k.startswith("_")}
        validator = PermissionValidator(await self.rules_of(target), self.store)
        result = await off_loop(validator.validate, subject, target, fields)  # it reads the store
        self.validations += 1
        self.violations += len(result.violations)
        answer = result.to_json()
        if result.violations:
            self.recent.append({"validation": self.validations, "subject": subject, "instance": target,
                                "checked": answer["checked"], "violations": answer["violations"]})  # fmt: skip
        return answer
