"""The base of every workload config model (pydantic, the user-facing boundary)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class StrictConfig(BaseModel):
    """Frozen, unknown keys are errors; a ``kind`` discriminator always counts as set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def model_post_init(self, context: Any, /) -> None:
        # ``kind`` always counts as set, so ``model_dump(exclude_unset=True)`` (used to merge
        # configs) keeps the discriminator even when the model was built without it.
        if "kind" in type(self).model_fields:
            self.__pydantic_fields_set__.add("kind")
