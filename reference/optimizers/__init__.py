"""The optimizer family, one module per optimizer, and Keras-style (de)serialization.

``serialize(optimizer)`` gives the dict Keras writes
(``{"module": "keras.optimizers", "class_name": "Adam", "config": {...},
"registered_name": None}``); ``deserialize`` and ``get`` accept that dict, the
Keras 2.9 ``{"class_name", "config"}`` form, a name (``"adam"``, ``"Adam"``) or an
instance.
"""

from __future__ import annotations

import importlib

from ..optimizer import Optimizer

#: Keras class name -> module in this package.
MODULES: dict[str, str] = {
    "SGD": "sgd",
    "Adam": "adam",
    "AdamW": "adamw",
    "Adagrad": "adagrad",
    "Adadelta": "adadelta",
    "Adamax": "adamax",
    "Ftrl": "ftrl",
    "Nadam": "nadam",
    "RMSprop": "rmsprop",
    "Adafactor": "adafactor",
    "Lion": "lion",
}


def optimizer_class(name: str) -> type[Optimizer]:
    """The reference class for a Keras optimizer name (case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"Optimizer name must be a string. Received: {name!r}")
    for class_name, module in MODULES.items():
        if class_name.lower() == name.lower():
            return getattr(importlib.import_module(f"{__name__}.{module}"), class_name)
    raise ValueError(f"Unknown optimizer {name!r}. Known optimizers: {sorted(MODULES)}.")


def all_optimizer_classes() -> dict[str, type[Optimizer]]:
    return {name: optimizer_class(name) for name in MODULES}


def serialize(optimizer: Optimizer, use_legacy_format: bool = False) -> dict:
    """The Keras serialization dict of ``optimizer`` (2.9 form with ``use_legacy_format``)."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"serialize() takes an Optimizer. Received: {type(optimizer).__name__}")
    out = {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}
    if not use_legacy_format:
        out = {"module": "keras.optimizers", **out, "registered_name": None}
    return out


def deserialize(config: dict, custom_objects=None, *, profile=None) -> Optimizer:
    """Rebuild an optimizer from a Keras serialization dict."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise TypeError(
            f"An optimizer spec must be a dict with 'class_name' and 'config'. Received: {config!r}"
        )
    name = config["class_name"]
    custom = dict(custom_objects or {})
    cls = custom[name] if name in custom else optimizer_class(name)
    return cls.from_config(dict(config.get("config") or {}), custom_objects, profile=profile)


def get(identifier, *, profile=None) -> Optimizer:
    """An optimizer from a name, a serialization dict or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier, profile=profile)
    if isinstance(identifier, str):
        return optimizer_class(identifier)(profile=profile)
    raise TypeError(f"Could not interpret optimizer identifier: {identifier!r}")
