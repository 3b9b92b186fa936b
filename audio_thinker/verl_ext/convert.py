"""Conversions shared by the verl glue."""

from __future__ import annotations

from typing import Any


def to_plain(value: Any) -> Any:
    """numpy arrays and OmegaConf nodes from verl's data pipeline -> plain Python containers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value
