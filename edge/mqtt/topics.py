"""Topic names under the recipe's root ``iad/<line>/<station>`` (see docs/mqtt.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """All topics of one station; built from ``recipe.topic_root``."""

    root: str

    @property
    def decision(self) -> str:
        return f"{self.root}/decision"

    @property
    def result(self) -> str:
        return f"{self.root}/result"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def explanation(self) -> str:
        return f"{self.root}/explanation"

    @property
    def generation(self) -> str:
        return f"{self.root}/generation"

    @property
    def assistant_status(self) -> str:
        """Retained status of the assistant process (beside the lane's ``status``)."""
        return f"{self.root}/status/assistant"

    @property
    def cmd_prefix(self) -> str:
        return f"{self.root}/cmd/"

    @property
    def cmd_all(self) -> str:
        """Filter for every command (replies on ``cmd/<name>/result`` do not match it)."""
        return f"{self.cmd_prefix}+"

    def cmd(self, name: str) -> str:
        return f"{self.cmd_prefix}{name}"

    def cmd_result(self, name: str) -> str:
        return f"{self.cmd(name)}/result"
