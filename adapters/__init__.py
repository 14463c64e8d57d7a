"""optcheck.adapters: implementations under test, behind one protocol (docs/adapters.md).

``load_adapter("numpy")`` / ``load_adapter("mypkg.module:factory")`` gives an
:class:`~optcheck.adapters.base.Adapter`; :func:`list_adapters` reports every known
adapter with its availability and versions.
"""

from .base import Adapter, Capabilities, Observation, Session
from .registry import (
    AdapterError,
    AdapterLoadError,
    UnknownAdapterError,
    known_adapters,
    list_adapters,
    load_adapter,
)

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterLoadError",
    "Capabilities",
    "Observation",
    "Session",
    "UnknownAdapterError",
    "known_adapters",
    "list_adapters",
    "load_adapter",
]
