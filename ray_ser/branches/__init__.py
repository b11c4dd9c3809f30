"""Branch families: one typed plugin per folder (ray_ser/branches/base.py says what a family is).

``FAMILIES`` is the registry; ``BranchConfig`` is the discriminated union of the families'
settings that a profile's ``branches`` section is validated against. Adding a family is its
folder and its name in ``_FAMILY_MODULES``. Importing this package imports no model code.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Union

from pydantic import Field

from ray_ser.branches.base import BranchFamily
from ray_ser.config_types import BranchBase
from ray_ser.registry import Registry

__all__ = ["FAMILIES", "BranchConfig", "family_of", "parse_branch"]

# The registration line: each name is a folder here whose __init__ defines FAMILY.
_FAMILY_MODULES = ("speech_encoder", "prosody", "text_classifier", "speech_llm", "encoder_probe")

FAMILIES: Registry[BranchFamily] = Registry("branch family")
for _name in _FAMILY_MODULES:
    _family = importlib.import_module(f"ray_ser.branches.{_name}").FAMILY
    FAMILIES.register(_family.name, _family)

# One branch of a profile: pydantic picks the family's settings model by its "family" field.
BranchConfig = Annotated[Union[tuple(FAMILIES.get(name).settings for name in FAMILIES)],  # noqa: UP007
                         Field(discriminator="family")]


def family_of(branch) -> BranchFamily:
    """The family plugin of a configured branch."""
    return FAMILIES.get(branch.family)


def parse_branch(data: dict) -> BranchBase:
    """One branch's settings from a mapping, validated as the family it names (pydantic's errors if not)."""
    from pydantic import TypeAdapter

    global _ADAPTER
    if _ADAPTER is None:
        _ADAPTER = TypeAdapter(BranchConfig)
    return _ADAPTER.validate_python(data)


_ADAPTER = None
