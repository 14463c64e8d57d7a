"""Finding adapters: bundled names, entry points and import strings.

An adapter is named on the command line in one of three ways:

* a bundled name (``numpy``; :data:`BUNDLED`);
* the name of an entry point in the group ``optcheck.adapters`` (a third-party
  package declares ``[project.entry-points."optcheck.adapters"] mylib =
  "mylib.optcheck_adapter:factory"``);
* an import string ``package.module:attr`` (``attr`` may be dotted).

The target of each is an :class:`~optcheck.adapters.base.Adapter` instance, an
``Adapter`` subclass (instantiated without arguments) or a callable returning an
instance (a factory). Bundled names win over entry points of the same name.

Loading never imports an adapter's library before it is asked for, and
:func:`list_adapters` reports an adapter that cannot be loaded as unavailable with
the reason instead of raising.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata

from .base import Adapter

ENTRY_POINT_GROUP = "optcheck.adapters"

#: Adapters shipped with optcheck: name -> import string of a factory. Adapters for
#: tf-keras, Keras 3, optax, torch are added here as they are written; a factory must
#: import without its library (``availability()`` says what is missing).
BUNDLED: dict[str, str] = {
    "numpy": "optcheck.adapters.numpy_reference:factory",
    "jax": "optcheck.adapters.jax_xla:factory",
    "tf": "optcheck.adapters.tf_xla:factory",
    "torch": "optcheck.adapters.torch_optim:factory",
    "torch-foreach": "optcheck.adapters.torch_optim:foreach_factory",
    "torch-fused": "optcheck.adapters.torch_optim:fused_factory",
    "optax": "optcheck.adapters.optax_adapter:factory",
    "keras3-jax": "optcheck.adapters.keras3_adapter:jax_factory",
    "keras3-jax-jit": "optcheck.adapters.keras3_adapter:jax_jit_factory",
    "keras3-tensorflow": "optcheck.adapters.keras3_adapter:tensorflow_factory",
    "keras3-tensorflow-function": "optcheck.adapters.keras3_adapter:tensorflow_function_factory",
    "keras3-torch": "optcheck.adapters.keras3_adapter:torch_factory",
    "keras3-torch-compile": "optcheck.adapters.keras3_adapter:torch_compile_factory",
    "keras3-numpy": "optcheck.adapters.keras3_adapter:numpy_factory",
    "tf-keras": "optcheck.adapters.tf_keras_adapter:factory",
    "tf-keras-nojit": "optcheck.adapters.tf_keras_adapter:nojit_factory",
    "tf-keras-graph": "optcheck.adapters.tf_keras_adapter:graph_factory",
}


class AdapterError(Exception):
    """An adapter could not be found or loaded."""


class UnknownAdapterError(AdapterError, LookupError):
    """A name that is neither bundled, nor an entry point, nor an import string."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown adapter {name!r}; known adapters: {', '.join(self.known) or '(none)'} "
            "(or give an import string package.module:factory)"
        )


class AdapterLoadError(AdapterError):
    """The target exists but does not give an adapter (or its import failed)."""


def entry_points() -> dict[str, str]:
    """Entry points of the group ``optcheck.adapters``: name -> import string."""
    found = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def known_adapters() -> dict[str, str]:
    """Every adapter known by name (bundled first, then entry points): name -> target."""
    known = dict(BUNDLED)
    for name, target in entry_points().items():
        known.setdefault(name, target)
    return known


def is_import_string(text: str) -> bool:
    module, sep, attr = text.partition(":")
    return bool(sep and module and attr)


def resolve(name_or_path: str) -> tuple[str, str]:
    """(name, target import string) of a bundled name, entry point or import string."""
    known = known_adapters()
    if name_or_path in known:
        return name_or_path, known[name_or_path]
    if is_import_string(name_or_path):
        return name_or_path, name_or_path
    raise UnknownAdapterError(name_or_path, list(known))


def _import_target(target: str):
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterLoadError(f"cannot import {module_name!r} for adapter {target!r}: "
                               f"{exc}") from exc  # fmt: skip
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise AdapterLoadError(f"{module_name!r} has no attribute {attr!r}") from exc
    return obj


def _is_adapter(obj) -> bool:
    if isinstance(obj, Adapter):
        return True
    return callable(getattr(obj, "open", None)) and callable(getattr(obj, "capabilities", None))


def load_adapter(name_or_path: str) -> Adapter:
    """The adapter for a bundled name, an entry-point name or ``module:attr``.

    Raises :class:`UnknownAdapterError` for an unknown name and
    :class:`AdapterLoadError` when the target does not give an adapter.
    """
    name, target = resolve(name_or_path)
    obj = _import_target(target)
    if isinstance(obj, type) or (not _is_adapter(obj) and callable(obj)):
        obj = obj()  # an Adapter class, or a factory
    if not _is_adapter(obj):
        raise AdapterLoadError(
            f"{target!r} gave {type(obj).__name__}, not an adapter (an object with "
            "capabilities() and open(scenario); see docs/adapters.md)"
        )
    if not getattr(obj, "name", ""):
        obj.name = name
    return obj


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    target: str
    available: bool
    reason: str
    version: str


def describe(name_or_path: str) -> AdapterInfo:
    """Availability and versions of one adapter; never raises for a broken adapter."""
    name, target = resolve(name_or_path)
    try:
        adapter = load_adapter(name_or_path)
        available, reason = adapter.availability()
        version = adapter.version() if available else ""
    except Exception as exc:  # a broken third-party adapter is reported, not fatal
        return AdapterInfo(name, target, False, f"{type(exc).__name__}: {exc}", "")
    return AdapterInfo(name, target, bool(available), reason or "", version or "")


def list_adapters() -> list[AdapterInfo]:
    """Every known adapter (bundled and entry points) with availability and versions."""
    return [describe(name) for name in known_adapters()]
