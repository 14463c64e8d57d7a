"""A scenario: one optimizer run to compare, as plain data that round-trips JSON.

A scenario fixes everything an implementation needs to reproduce a run: the optimizer
spec (a Keras serialization dict), the profile, the initial values, one gradient per
variable for each step, and the feature options (iterations preset, weight-decay
exclusions, replicas, a config round trip mid-trajectory, finalize at the end).
:meth:`Scenario.to_json` / :meth:`Scenario.from_json` keep dtypes exactly (bfloat16
included), so a repro script replays the same bits, and keep the config's Python types
(``1`` an int, ``1.0`` a float, tuples, NumPy scalars), so a replayed config is the one
the adapter first received.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import numpy as np

from optcheck.reference import dtypes
from optcheck.reference.sparse import IndexedSlices, PerReplica


@dataclass
class Scenario:
    optimizer: str
    config: dict
    profile: str
    dtype: str
    initial_values: list[np.ndarray]
    steps: list[list]
    feature: str = "plain"
    names: list[str] = field(default_factory=list)
    #: Features this scenario needs from an adapter (see adapters.base.FEATURES).
    needs: tuple[str, ...] = ()
    iterations: int = 0
    skip_gradients_aggregation: bool = False
    #: After this many steps, replace the optimizer by from_config(get_config()).
    round_trip_at: int | None = None
    finalize: bool = False
    exclude_names: list[str] = field(default_factory=list)
    exclude_indices: list[int] = field(default_factory=list)

    def __post_init__(self):
        if not self.names:
            self.names = [f"v{i}" for i in range(len(self.initial_values))]

    def spec(self) -> dict:
        # A deep copy: an adapter that edits its spec (a schedule dict deserialized in
        # place) must not change what the golden and the other sessions receive.
        return {"class_name": self.optimizer, "config": copy.deepcopy(self.config)}

    def describe(self) -> str:
        shapes = ", ".join(str(tuple(np.shape(v))) for v in self.initial_values)
        return (
            f"{self.optimizer}({self.config}) profile={self.profile} dtype={self.dtype} "
            f"feature={self.feature} variables=[{shapes}] steps={len(self.steps)}"
        )

    # -- JSON ------------------------------------------------------------------------
    def to_json(self) -> str:
        data = {
            "optimizer": self.optimizer,
            "config": _encode(self.config),
            "profile": self.profile,
            "dtype": self.dtype,
            "initial_values": [_encode(v) for v in self.initial_values],
            "steps": [[_encode(g) for g in step] for step in self.steps],
            "feature": self.feature,
            "names": list(self.names),
            "needs": list(self.needs),
            "iterations": self.iterations,
            "skip_gradients_aggregation": self.skip_gradients_aggregation,
            "round_trip_at": self.round_trip_at,
            "finalize": self.finalize,
            "exclude_names": list(self.exclude_names),
            "exclude_indices": list(self.exclude_indices),
        }
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        data = json.loads(text)
        data["config"] = _decode(data["config"])
        data["initial_values"] = [_decode(v) for v in data["initial_values"]]
        data["steps"] = [[_decode(g) for g in step] for step in data["steps"]]
        data["needs"] = tuple(data["needs"])
        return cls(**data)


def _encode(value):
    """JSON form of arrays (exact bits), sparse/per-replica gradients and configs."""
    if value is None or type(value) in (bool, int) or isinstance(value, str):
        return value
    if isinstance(value, np.ndarray | np.generic):
        # Before float: np.float64 is a float subclass and must come back as itself.
        arr = np.asarray(value)
        raw = arr.view(f"u{arr.dtype.itemsize}")
        encoded = {
            "__array__": dtypes.dtype_name(arr.dtype),
            "shape": list(arr.shape),
            "bits": raw.ravel().tolist(),
        }
        if isinstance(value, np.generic):
            encoded["scalar"] = True  # np.float32(1) stays a scalar, not a 0-d array
        return encoded
    if type(value) is float:
        return {"__float__": value.hex()}
    if isinstance(value, IndexedSlices):
        return {
            "__indexed_slices__": True,
            "values": _encode(value.values),
            "indices": _encode(value.indices),
            "dense_shape": list(value.dense_shape),
        }
    if isinstance(value, PerReplica):
        return {"__per_replica__": [_encode(v) for v in value.values]}
    if isinstance(value, dict):
        return {"__dict__": [[k, _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return {"__list__": [_encode(v) for v in value]}
    # Anything else (an int or float subclass, a Decimal) would come back as another type.
    raise TypeError(f"Cannot encode {type(value).__name__} in a scenario.")


def _decode(value):
    if not isinstance(value, dict):
        return value
    if "__float__" in value:
        return float.fromhex(value["__float__"])
    if "__array__" in value:
        dtype = dtypes.as_dtype(value["__array__"])
        raw = np.asarray(
            value["bits"], dtype=np.uint16 if dtype.itemsize == 2 else f"u{dtype.itemsize}"
        )
        array = raw.view(dtype).reshape(value["shape"])
        return array[()] if value.get("scalar") else array
    if "__indexed_slices__" in value:
        return IndexedSlices(
            _decode(value["values"]), _decode(value["indices"]), tuple(value["dense_shape"])
        )
    if "__per_replica__" in value:
        return PerReplica(tuple(_decode(v) for v in value["__per_replica__"]))
    if "__dict__" in value:
        return {k: _decode(v) for k, v in value["__dict__"]}
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__list__" in value:
        return [_decode(v) for v in value["__list__"]]
    raise ValueError(f"Unknown encoded value {sorted(value)}.")
