"""Golden test vectors: ``optcheck vectors export`` / ``optcheck vectors check``.

A *vectors folder* holds fixed cases — an optimizer as a Keras serialization dict, a
profile, a dtype, two small variables, four steps of gradients — with, after every
step, the golden's variables, slots, ``iterations`` and learning rate, and the
per-element tolerance an implementation that runs its own trajectory is allowed
(the free-mode bound of :func:`optcheck.conformance.engine.check`, oracle and
Monte Carlo runs included). An implementation in any language checks itself with
``|actual − expected| ≤ tolerance`` element by element, without the golden.
docs/vectors.md documents the format field by field.

* :func:`export` writes a folder: ``index.json`` (cases, SHA-256 of every file),
  ``schema.json`` (JSON Schema of the index and case files), ``README.md``,
  ``SHA256SUMS`` and ``cases/<id>.json`` + ``cases/<id>.npz`` per case. The output is
  byte-for-byte deterministic: inputs come from a fixed integer generator
  (SplitMix64 seeded by the case name, no hypothesis, no NumPy random streams), JSON is
  written with sorted keys and fixed formatting, and NPZ files are zip archives
  written here with fixed timestamps.
* :func:`check` verifies the checksums, rebuilds each case's
  :class:`~optcheck.conformance.scenario.Scenario` and steps an adapter through it,
  comparing with the stored values and tolerances by the engine's own rule
  (:func:`optcheck.conformance.engine.first_bad`). Adapters run in worker processes
  (``python -m optcheck.conformance.vectors``, the protocol of
  :mod:`optcheck.conformance.worker`): a per-case timeout, and a crash loses only the
  case it was running.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = "optcheck.vectors/1"
CHECK_SCHEMA = "optcheck.vectors-check/1"
#: Steps of every case.
STEPS = 4
#: The variables of every case: a matrix (Adafactor factors it) and a vector.
VARIABLES: tuple[tuple[str, tuple[int, ...]], ...] = (("kernel", (2, 3)), ("bias", (3,)))
PROFILES = ("keras2", "keras3")
DTYPES = ("float16", "bfloat16", "float32", "float64")
#: Feature of a case -> the dtypes the default selection exports it in.
GRID: dict[str, tuple[str, ...]] = {
    "plain": DTYPES,
    "config": ("bfloat16", "float32"),
    "clipnorm": ("float32",),
    "clipvalue": ("float32",),
    "global_clipnorm": ("float32",),
    "ema": ("float32",),
    "weight_decay": ("float32",),
    "schedule": ("float32",),
}
FEATURES = tuple(GRID)
#: Learning rate of every case but ``config`` and ``schedule`` (large enough that the
#: variables move in 16-bit dtypes too).
LEARNING_RATE = {
    "SGD": 0.1, "Adam": 0.01, "AdamW": 0.01, "Adagrad": 0.1, "Adadelta": 1.0, "Adamax": 0.01,
    "Ftrl": 0.1, "Nadam": 0.01, "RMSprop": 0.01, "Adafactor": 0.01, "Lion": 0.01,
}  # fmt: skip
#: The ``config`` cases: every hyper-parameter away from its default.
CONFIGS = {
    "SGD": {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
    "Adam": {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5,
             "amsgrad": True},
    "AdamW": {"learning_rate": 0.01, "weight_decay": 0.1, "beta_1": 0.85, "beta_2": 0.995,
              "epsilon": 1e-6, "amsgrad": True},
    "Adagrad": {"learning_rate": 0.05, "initial_accumulator_value": 0.5, "epsilon": 1e-5},
    "Adadelta": {"learning_rate": 0.5, "rho": 0.9, "epsilon": 1e-5},
    "Adamax": {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5},
    "Ftrl": {"learning_rate": 0.05, "learning_rate_power": -0.7,
             "initial_accumulator_value": 0.2, "l1_regularization_strength": 0.01,
             "l2_regularization_strength": 0.02, "l2_shrinkage_regularization_strength": 0.03,
             "beta": 0.5},
    "Nadam": {"learning_rate": 0.01, "beta_1": 0.85, "beta_2": 0.99, "epsilon": 1e-5},
    "RMSprop": {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5, "epsilon": 1e-5,
                "centered": True},
    "Adafactor": {"learning_rate": 0.01, "beta_2_decay": -0.5, "epsilon_1": 1e-25,
                  "epsilon_2": 1e-3, "clip_threshold": 0.8, "relative_step": False},
    "Lion": {"learning_rate": 0.003, "beta_1": 0.8, "beta_2": 0.95},
}  # fmt: skip
#: Options of the feature cases (added to ``{"learning_rate": LEARNING_RATE[...]}``).
OPTIONS = {
    "plain": {},
    "clipnorm": {"clipnorm": 1.0},
    "clipvalue": {"clipvalue": 0.5},
    "global_clipnorm": {"global_clipnorm": 1.0},
    "ema": {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 2},
    "weight_decay": {"weight_decay": 0.05},
}
#: Names matched by ``exclude_from_weight_decay(var_names=...)`` in weight_decay cases.
WEIGHT_DECAY_EXCLUDED = ["bias"]
#: The schedule classes, given to the optimizers in turn (registry order).
SCHEDULES = ("ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
             "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts")  # fmt: skip

#: Files of a folder that are not cases (SHA256SUMS and index.json are not listed in
#: index.json; every other file is).
INDEX, SUMS, SCHEMA_FILE, README = "index.json", "SHA256SUMS", "schema.json", "README.md"
CASES_DIR = "cases"
_CASE_FILE = re.compile(r"^cases/[A-Za-z0-9_.-]+\.(json|npz)$")
#: Storage dtype in the NPZ per logical dtype (bfloat16: its bit pattern).
STORAGE = {"float16": "<f2", "bfloat16": "<u2", "float32": "<f4", "float64": "<f8",
           "bool": "|b1", "int64": "<i8"}  # fmt: skip
STORAGE_NAMES = {"float16": "float16", "bfloat16": "uint16", "float32": "float32",
                 "float64": "float64", "bool": "bool", "int64": "int64"}  # fmt: skip
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class VectorsError(Exception):
    """A usage or integrity problem (exit status 2); the message names the culprit."""


# =====================================================================================
# the cases
# =====================================================================================
@dataclass(frozen=True)
class CaseSpec:
    profile: str
    optimizer: str
    feature: str
    dtype: str

    @property
    def id(self) -> str:
        return f"{self.profile}-{self.optimizer}-{self.feature}-{self.dtype}"


def _all_optimizers() -> list[str]:
    from .registry import OPTIMIZERS

    return list(OPTIMIZERS)


def case_specs(profiles=PROFILES, optimizers=None, dtypes_=None) -> list[CaseSpec]:
    """The cases of a selection, in a stable order (profile, optimizer, feature, dtype)."""
    order = _all_optimizers()
    chosen = [o for o in order if optimizers is None or o in optimizers]
    return [
        CaseSpec(profile, optimizer, feature, dtype)
        for profile in PROFILES
        if profile in profiles
        for optimizer in chosen
        for feature, grid_dtypes in GRID.items()
        for dtype in grid_dtypes
        if dtypes_ is None or dtype in dtypes_
    ]


def _splitmix64(seed: int):
    """SplitMix64 (Steele, Lea, Flood 2014): the same integers on every machine."""
    mask = (1 << 64) - 1
    state = seed & mask
    while True:
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        yield z ^ (z >> 31)


def _values(name: str, count: int) -> np.ndarray:
    """``count`` float64 values ``±(1 + f)·2^−k`` (f in [0, 1) on 52 bits, k in 0..9: a
    magnitude spread from 0.002 to 2, so that ε terms and clipping thresholds matter),
    a fixed function of ``name`` computed exactly (no libm)."""
    draws = _splitmix64(zlib.crc32(name.encode("utf-8")))
    out = []
    for _ in range(count):
        bits = next(draws)
        mantissa = 1.0 + (bits >> 12) * 2.0**-52
        value = math.ldexp(mantissa, -((bits >> 1) % 10))
        out.append(-value if bits & 1 else value)
    return np.array(out)


def schedule_config(optimizer: str) -> dict:
    """The schedule of ``optimizer``'s schedule case, as a Keras dict (every schedule
    keeps the rate above zero: Ftrl divides by it)."""
    lr = LEARNING_RATE[optimizer]
    name = SCHEDULES[_all_optimizers().index(optimizer) % len(SCHEDULES)]
    config = {
        "ExponentialDecay": {"initial_learning_rate": lr, "decay_steps": 1, "decay_rate": 0.5,
                             "staircase": False},
        "PiecewiseConstantDecay": {"boundaries": [1, 2], "values": [lr, lr / 2, lr / 4]},
        "PolynomialDecay": {"initial_learning_rate": lr, "decay_steps": 3,
                            "end_learning_rate": lr / 10, "power": 2.0, "cycle": False},
        "InverseTimeDecay": {"initial_learning_rate": lr, "decay_steps": 1, "decay_rate": 0.5,
                             "staircase": False},
        "CosineDecay": {"initial_learning_rate": lr, "decay_steps": 4, "alpha": 0.1},
        "CosineDecayRestarts": {"initial_learning_rate": lr, "first_decay_steps": 2,
                                "t_mul": 2.0, "m_mul": 0.5, "alpha": 0.1},
    }[name]  # fmt: skip
    return {"class_name": name, "config": config}


def build_scenario(spec: CaseSpec):
    """The scenario of a case: fixed inputs (the same for every profile and dtype of an
    optimizer and feature, cast once to the dtype) and the feature's options."""
    from optcheck.reference import dtypes

    from .features import scenario_needs
    from .scenario import Scenario

    dt = dtypes.as_dtype(spec.dtype)
    sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape in VARIABLES]
    values = iter(_values(f"{spec.optimizer}-{spec.feature}", sum(sizes) * (STEPS + 1)))

    def array(shape):
        n = int(np.prod(shape, dtype=np.int64))
        return np.asarray(np.array([next(values) for _ in range(n)]).reshape(shape).astype(dt))

    initial = [array(shape) for _, shape in VARIABLES]
    steps = [[array(shape) for _, shape in VARIABLES] for _ in range(STEPS)]
    if spec.feature == "config":
        config = dict(CONFIGS[spec.optimizer])
    elif spec.feature == "schedule":
        config = {"learning_rate": schedule_config(spec.optimizer)}
    else:
        config = {"learning_rate": LEARNING_RATE[spec.optimizer], **OPTIONS[spec.feature]}
    scenario = Scenario(
        optimizer=spec.optimizer,
        config=config,
        profile=spec.profile,
        dtype=spec.dtype,
        initial_values=initial,
        steps=steps,
        feature=spec.feature,
        names=[name for name, _ in VARIABLES],
        exclude_names=list(WEIGHT_DECAY_EXCLUDED) if spec.feature == "weight_decay" else [],
    )
    scenario.needs = scenario_needs(scenario)
    return scenario


# =====================================================================================
# encoding: deterministic JSON and NPZ
# =====================================================================================
def dumps(obj) -> str:
    """JSON with sorted keys and one-space indentation, where a list of scalars, or an
    object whose values are scalars or such lists, stands on one line (``", "`` and
    ``": "`` between its items, ``","`` inside lists of numbers); UTF-8; no NaN."""
    inline: list[str] = []

    def scalar(v):
        return not isinstance(v, dict | list | tuple)

    def flat(v):
        return scalar(v) or (isinstance(v, list | tuple) and all(map(scalar, v)))

    def walk(x):
        if (isinstance(x, dict) and all(map(flat, x.values()))) or (
            isinstance(x, list | tuple) and all(map(scalar, x))
        ):
            inline.append(_compact(x))
            return f"@@inline:{len(inline) - 1}@@"
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [walk(v) for v in x]
        return x

    text = json.dumps(walk(obj), indent=1, sort_keys=True, allow_nan=False, ensure_ascii=False)
    return re.sub(r'"@@inline:(\d+)@@"', lambda m: inline[int(m.group(1))], text) + "\n"


def _compact(x) -> str:
    if isinstance(x, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}: {_compact(v)}"
                 for k, v in sorted(x.items()))  # fmt: skip
        return "{" + ", ".join(items) + "}"
    return json.dumps(x if not isinstance(x, tuple) else list(x), separators=(",", ":"),
                      allow_nan=False, ensure_ascii=False)


def _number(x: float):
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def dtype_of(arr: np.ndarray) -> str:
    """The logical dtype name of an array (float16, bfloat16, float32, float64, bool, int64)."""
    from optcheck.reference import dtypes

    if arr.dtype == np.bool_:
        return "bool"
    if arr.dtype.kind in "iu":
        return "int64"
    return dtypes.dtype_name(arr.dtype)


def to_storage(arr: np.ndarray) -> np.ndarray:
    """The array as stored in an NPZ: little-endian; bfloat16 as its uint16 bits."""
    name = dtype_of(arr)
    if name == "bfloat16":
        return np.ascontiguousarray(arr).view(np.uint16).astype(STORAGE[name])
    return np.ascontiguousarray(arr.astype(STORAGE[name]))


def from_storage(stored: np.ndarray, dtype: str) -> np.ndarray:
    """Inverse of :func:`to_storage`."""
    from optcheck.reference import dtypes

    if dtype == "bfloat16":
        return stored.astype(np.uint16).view(dtypes.bfloat16)
    if dtype == "bool":
        return stored.astype(np.bool_)
    if dtype == "int64":
        return stored.astype(np.int64)
    return stored.astype(dtypes.as_dtype(dtype))


def values_of(arr: np.ndarray) -> list:
    """The exact values of an array as JSON (float64 numbers, shortest round-trip form)."""
    if arr.dtype == np.bool_ or arr.dtype.kind in "iu":
        return arr.ravel().tolist()
    return [_number(x) for x in np.asarray(arr, dtype=np.float64).ravel().tolist()]


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An NPZ (zip of ``.npy``, stored, keys sorted, fixed timestamps) of storage arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            data = io.BytesIO()
            np.lib.format.write_array(data, arrays[key], version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, data.getvalue())
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# =====================================================================================
# export
# =====================================================================================
def export_case(spec: CaseSpec, json_values: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
    """(case document, arrays by key in their logical dtypes) of one case; with
    ``json_values`` the document holds every array's values too.

    The golden, its oracle and the Monte Carlo oracle run through
    :func:`optcheck.conformance.engine.check` in free mode, with the golden itself as
    the candidate; the engine records every quantity's per-element tolerance.
    """
    from optcheck.adapters.numpy_reference import ReferenceAdapter

    from . import engine
    from .tolerance import LR_OPS, Policy

    scenario = build_scenario(spec)
    policy = Policy(mode="free")
    rows: dict[int, dict] = {}

    def record(step, key, golden, limit, perturbed):
        rows.setdefault(step, {})[key] = (golden, limit, perturbed)

    found = engine.check(scenario, ReferenceAdapter(), policy, record=record)
    if found is not None:  # pragma: no cover - the golden against itself
        raise RuntimeError(f"{spec.id}: the golden deviates from itself: {found}")
    steps = range(1, len(scenario.steps) + 1)
    names = scenario.names
    arrays: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        arrays[f"initial/{name}"] = scenario.initial_values[i]
        arrays[f"gradients/{name}"] = np.stack([scenario.steps[s][i] for s in range(len(steps))])
    arrays["expected/iterations"] = np.array([rows[s][("iterations",)][0] for s in steps],
                                             dtype=np.int64)  # fmt: skip
    lrs = [rows[s].get(("learning_rate",), (float("nan"), float("nan"), None)) for s in steps]
    arrays["expected/learning_rate"] = np.array([r[0] for r in lrs], dtype=np.float64)
    arrays["tolerance/learning_rate"] = np.array([r[1] for r in lrs], dtype=np.float64)
    slot_names = [sorted(k[2] for k in rows[1] if k[0] == "slot" and k[1] == i)
                  for i in range(len(names))]  # fmt: skip
    quantities = []
    keys = [(("variable", i), f"variable {n}", f"variable/{n}", n, None)
            for i, n in enumerate(names)]  # fmt: skip
    keys += [(("slot", i, slot), f"slot {slot} of {n}", f"slot/{n}/{slot}", n, slot)
             for i, n in enumerate(names) for slot in slot_names[i]]  # fmt: skip
    for key, label, path, variable, slot in keys:
        per_step = [rows[s][key] for s in steps]  # KeyError: a slot that comes and goes
        golden = np.stack([np.asarray(g) for g, _, _ in per_step])
        limit = np.stack([np.broadcast_to(np.asarray(t, dtype=np.float64), np.shape(g))
                          for g, t, _ in per_step])  # fmt: skip
        nan_ok = np.stack([_nan_allowed(g, p) for g, _, p in per_step])
        arrays[f"expected/{path}"] = golden
        arrays[f"tolerance/{path}"] = limit
        if nan_ok.any():  # absent: no NaN allowed anywhere in this quantity
            arrays[f"nan_ok/{path}"] = nan_ok
        quantities.append({"name": label, "variable": variable, "slot": slot,
                           "expected": f"expected/{path}", "tolerance": f"tolerance/{path}",
                           "nan_ok": f"nan_ok/{path}" if nan_ok.any() else None})  # fmt: skip
    described = policy.describe(spec.dtype)
    described.update(
        learning_rate=f"{LR_OPS}·u(float32)·|expected| + float32 smallest normal (stored per step)",
        rule="pass iff, per element: expected NaN → actual NaN; actual NaN → nan_ok; "
        "either infinite → actual == expected; else |actual − expected| ≤ tolerance",
    )
    doc = {
        "schema": SCHEMA,
        "id": spec.id,
        "profile": spec.profile,
        "feature": spec.feature,
        "dtype": spec.dtype,
        "optimizer": scenario.spec(),
        "needs": list(scenario.needs),
        "variables": [{"name": n, "shape": list(np.shape(v))}
                      for n, v in zip(names, scenario.initial_values, strict=True)],
        "exclude_from_weight_decay": {"var_names": list(scenario.exclude_names)},
        "steps": len(scenario.steps),
        "tolerance": described,
        "npz": f"{spec.id}.npz",
        "inputs": {"initial": {n: f"initial/{n}" for n in names},
                   "gradients": {n: f"gradients/{n}" for n in names}},
        "expected": {"iterations": "expected/iterations",
                     "learning_rate": "expected/learning_rate",
                     "learning_rate_tolerance": "tolerance/learning_rate",
                     "quantities": quantities},
        "arrays": {key: {"dtype": dtype_of(arr), "storage": STORAGE_NAMES[dtype_of(arr)],
                         "shape": list(arr.shape)} for key, arr in arrays.items()},
    }  # fmt: skip
    if json_values:
        for key, arr in arrays.items():
            doc["arrays"][key]["values"] = values_of(arr)
    return doc, arrays


def _nan_allowed(golden, perturbed) -> np.ndarray:
    """Where a NaN result is accepted: the golden or the perturbed (flush-to-zero)
    oracle is NaN (conformance/tolerance.py)."""
    g = np.asarray(golden, dtype=np.float64)
    allowed = np.isnan(g)
    if perturbed is not None and np.shape(perturbed) == g.shape:
        allowed = allowed | np.isnan(np.asarray(perturbed, dtype=np.float64))
    return allowed


def _version() -> str:
    from optcheck import __version__

    return __version__


def build_files(profiles=PROFILES, optimizers=None, json_values: bool = False,
                dtypes_=None) -> dict[str, bytes]:
    """Every file of an export (relative path -> bytes), SHA256SUMS and index.json last."""
    from optcheck.reference import dtypes

    specs = case_specs(profiles, optimizers, dtypes_)
    if dtypes.binary128 is None and any(spec.dtype == "float64" for spec in specs):
        raise VectorsError(dtypes.BINARY128_MISSING)
    files: dict[str, bytes] = {
        README: README_TEXT.encode("utf-8"),
        SCHEMA_FILE: dumps(JSON_SCHEMA).encode("utf-8"),
    }
    entries = []
    for spec in specs:
        doc, arrays = export_case(spec, json_values)
        json_path, npz_path = f"{CASES_DIR}/{spec.id}.json", f"{CASES_DIR}/{spec.id}.npz"
        files[json_path] = dumps(doc).encode("utf-8")
        files[npz_path] = npz_bytes({k: to_storage(v) for k, v in arrays.items()})
        entries.append({
            "id": spec.id, "profile": spec.profile, "optimizer": spec.optimizer,
            "feature": spec.feature, "dtype": spec.dtype, "needs": doc["needs"],
            "json": {"path": json_path, "sha256": sha256(files[json_path])},
            "npz": {"path": npz_path, "sha256": sha256(files[npz_path])},
        })  # fmt: skip
    index = {
        "schema": SCHEMA,
        "generator": f"optcheck {_version()}",
        "selection": {
            "profiles": [p for p in PROFILES if p in profiles],
            "optimizers": [o for o in _all_optimizers() if optimizers is None or o in optimizers],
            "features": {f: [x for x in d if dtypes_ is None or x in dtypes_]
                         for f, d in GRID.items()},
            "steps": STEPS,
            "variables": [{"name": n, "shape": list(s)} for n, s in VARIABLES],
            "json_values": bool(json_values),
        },
        "files": [{"path": p, "sha256": sha256(files[p])} for p in (README, SCHEMA_FILE)],
        "cases": entries,
    }
    files[INDEX] = dumps(index).encode("utf-8")
    files[SUMS] = "".join(f"{sha256(data)}  {path}\n"
                          for path, data in sorted(files.items())).encode("utf-8")  # fmt: skip
    return files


def _owned_files(folder: Path) -> list[str]:
    """Files of a previous export in ``folder`` (raises if it is a non-empty folder that
    holds none)."""
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise VectorsError(f"{folder} exists and is not a folder")
    if not any(folder.iterdir()):
        return []
    if not (folder / INDEX).is_file():
        raise VectorsError(f"{folder} is not empty and holds no vectors export (no {INDEX}); "
                           "export into a new or empty folder, or a previous export")
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        if index.get("schema") != SCHEMA:
            raise ValueError(f"schema {index.get('schema')!r}")
        listed = [f["path"] for f in index["files"]]
        listed += [c[kind]["path"] for c in index["cases"] for kind in ("json", "npz")]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VectorsError(
            f"{folder} is not empty and its {INDEX} is not one of a vectors export "
            f"({type(exc).__name__}: {exc}); export into a new or empty folder"
        ) from None
    owned = [INDEX, SUMS, SCHEMA_FILE, README]
    owned += [p for p in listed if isinstance(p, str) and _CASE_FILE.match(p)]
    return list(dict.fromkeys(owned))


def export(out: Path, profiles=PROFILES, optimizers=None, json_values: bool = False,
           dtypes_=None) -> dict:
    """Write the vectors of a selection to ``out``; the index. ``json_values``: write
    every array's values into the case documents too (for JavaScript; larger).

    ``out`` must be new, empty or a previous export: the files the previous export
    wrote (its index.json lists them) are replaced, other files are left alone.
    """
    out = Path(out)
    owned = _owned_files(out)
    files = build_files(profiles, optimizers, json_values, dtypes_)
    for path in owned:
        with contextlib.suppress(FileNotFoundError):
            (out / path).unlink()
    with contextlib.suppress(OSError):
        (out / CASES_DIR).rmdir()  # only when empty
    (out / CASES_DIR).mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        (out / path).write_bytes(data)
    return json.loads(files[INDEX])


# =====================================================================================
# reading
# =====================================================================================
def read_index(folder: Path) -> dict:
    """index.json of ``folder``, checked against SHA256SUMS when present."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VectorsError(f"no such vectors folder: {folder}")
    path = folder / INDEX
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VectorsError(f"{path}: missing (not a vectors folder)") from None
    if (folder / SUMS).exists():
        sums = _read_sums(folder / SUMS)
        if INDEX in sums and sums[INDEX] != sha256(data):
            raise VectorsError(f"checksum mismatch: {path} (SHA256SUMS says {sums[INDEX]}, "
                               f"the file's is {sha256(data)})")  # fmt: skip
    try:
        index = json.loads(data)
        if index["schema"] != SCHEMA:
            raise ValueError(f"schema {index['schema']!r}, expected {SCHEMA!r}")
        for entry in index["cases"]:
            for key in ("id", "profile", "optimizer", "feature", "dtype"):
                if not isinstance(entry[key], str):
                    raise ValueError(f"case entry {key} is not a string")
            for kind in ("json", "npz"):
                _relative(entry[kind]["path"]), str(entry[kind]["sha256"])
        for f in index["files"]:
            _relative(f["path"]), str(f["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise VectorsError(f"malformed {path}: {type(exc).__name__}: {exc}") from None
    return index


def _relative(path) -> str:
    if not isinstance(path, str) or path.startswith("/") or ".." in path.split("/"):
        raise ValueError(f"bad file path {path!r}")
    return path


def _read_sums(path: Path) -> dict[str, str]:
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        if not name:
            raise VectorsError(f"malformed {path}: line {line!r}")
        sums[name] = digest
    return sums


def verify_checksums(folder: Path, index: dict) -> int:
    """Check the SHA-256 of every file the index lists (and SHA256SUMS, when present);
    the number of files checked. Raises :class:`VectorsError` naming the first missing
    or altered file."""
    folder = Path(folder)
    listed = [(f["path"], f["sha256"]) for f in index["files"]]
    listed += [(c[k]["path"], c[k]["sha256"]) for c in index["cases"] for k in ("json", "npz")]
    sums = _read_sums(folder / SUMS) if (folder / SUMS).exists() else {}
    for path, digest in listed:
        try:
            actual = sha256((folder / path).read_bytes())
        except FileNotFoundError:
            raise VectorsError(f"missing file: {folder / path} (listed in {INDEX})") from None
        if actual != digest:
            raise VectorsError(f"checksum mismatch: {folder / path} ({INDEX} says {digest}, "
                               f"the file's is {actual})")  # fmt: skip
        if path in sums and sums[path] != actual:
            raise VectorsError(f"checksum mismatch: {folder / path} ({SUMS} says "
                               f"{sums[path]}, the file's is {actual})")  # fmt: skip
    return len(listed)


@dataclass
class VectorCase:
    """One case read back: its document and its arrays (logical dtypes)."""

    doc: dict
    arrays: dict[str, np.ndarray]
    path: str

    @property
    def id(self) -> str:
        return self.doc["id"]

    def scenario(self):
        from .scenario import Scenario

        names = [v["name"] for v in self.doc["variables"]]
        grads = [self.arrays[self.doc["inputs"]["gradients"][n]] for n in names]
        return Scenario(
            optimizer=self.doc["optimizer"]["class_name"],
            config=dict(self.doc["optimizer"]["config"]),
            profile=self.doc["profile"],
            dtype=self.doc["dtype"],
            initial_values=[self.arrays[self.doc["inputs"]["initial"][n]] for n in names],
            steps=[[np.ascontiguousarray(g[s]) for g in grads] for s in range(self.steps)],
            feature=self.doc["feature"],
            names=names,
            needs=tuple(self.doc["needs"]),
            exclude_names=list(self.doc["exclude_from_weight_decay"]["var_names"]),
        )

    @property
    def steps(self) -> int:
        return int(self.doc["steps"])


def load_case(folder: Path, entry: dict) -> VectorCase:
    """Read and check one case (its JSON document and NPZ agree, shapes and dtypes are
    as declared). Raises :class:`VectorsError` naming the file."""
    folder = Path(folder)
    json_path = folder / entry["json"]["path"]
    npz_path = folder / entry["npz"]["path"]
    culprit = json_path
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"schema {doc.get('schema')!r}, expected {SCHEMA!r}")
        if doc["id"] != entry["id"]:
            raise ValueError(f"id {doc['id']!r} but {INDEX} says {entry['id']!r}")
        if (json_path.parent / doc["npz"]).resolve() != npz_path.resolve():
            raise ValueError(f"npz {doc['npz']!r} but {INDEX} says {entry['npz']['path']!r}")
        declared = doc["arrays"]
        culprit = npz_path
        with np.load(npz_path, allow_pickle=False) as npz:
            stored = {key: npz[key] for key in npz.files}
        if sorted(stored) != sorted(declared):
            raise ValueError(f"arrays {sorted(set(stored) ^ set(declared))} are in only one of "
                             f"{json_path.name} and {npz_path.name}")  # fmt: skip
        arrays = {}
        for key, meta in declared.items():
            raw = stored[key]
            if raw.dtype != np.dtype(STORAGE[meta["dtype"]]) or list(raw.shape) != meta["shape"]:
                raise ValueError(f"array {key}: {raw.dtype} {list(raw.shape)} in the NPZ, "
                                 f"{meta['storage']} {meta['shape']} declared")  # fmt: skip
            arr = from_storage(raw, meta["dtype"])
            culprit = json_path
            if "values" in meta and not _same_values(values_of(arr), meta["values"]):
                raise ValueError(f"array {key}: the JSON values differ from the NPZ's")
            culprit = npz_path
            arrays[key] = arr
        culprit = json_path
        _check_references(doc, arrays)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile,
            EOFError) as exc:  # fmt: skip
        raise VectorsError(f"malformed {culprit}: {type(exc).__name__}: {exc}") from None
    return VectorCase(doc, arrays, str(json_path))


def _same_values(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    return all(x == y or (x == "NaN" and y == "NaN") for x, y in zip(a, b, strict=True))


def _check_references(doc: dict, arrays: dict) -> None:
    steps = int(doc["steps"])
    names = [v["name"] for v in doc["variables"]]
    shapes = {v["name"]: tuple(v["shape"]) for v in doc["variables"]}
    for n in names:
        if arrays[doc["inputs"]["initial"][n]].shape != shapes[n]:
            raise ValueError(f"initial value of {n} is not of shape {shapes[n]}")
        if arrays[doc["inputs"]["gradients"][n]].shape != (steps, *shapes[n]):
            raise ValueError(f"gradients of {n} are not of shape {(steps, *shapes[n])}")
    exp = doc["expected"]
    for key in (exp["iterations"], exp["learning_rate"], exp["learning_rate_tolerance"]):
        if arrays[key].shape != (steps,):
            raise ValueError(f"{key} is not of shape ({steps},)")
    for q in exp["quantities"]:
        if q["variable"] not in shapes:
            raise ValueError(f"quantity {q['name']!r}: unknown variable {q['variable']!r}")
        shape = arrays[q["expected"]].shape
        same = [arrays[q["tolerance"]].shape]
        same += [arrays[q["nan_ok"]].shape] if q["nan_ok"] is not None else []
        if shape[:1] != (steps,) or any(other != shape for other in same):
            raise ValueError(f"quantity {q['name']!r}: arrays of different shapes")


# =====================================================================================
# checking one case
# =====================================================================================
def compare_step(case: VectorCase, step: int, obs):
    """The first quantity of observation ``obs`` (after step ``step``, 1-based) out of the
    stored tolerance, or None — the engine's comparison (:func:`engine.compare`) with
    the stored golden values and tolerances in place of a live golden."""
    from . import engine

    a, exp, s = case.arrays, case.doc["expected"], step - 1
    expected_iterations = int(a[exp["iterations"]][s])
    if obs.iterations != expected_iterations:
        return engine.Divergence(step, "iterations", [], float(expected_iterations),
                                 float(obs.iterations),
                                 float(abs(obs.iterations - expected_iterations)),
                                 0.0)  # fmt: skip
    lr = float(a[exp["learning_rate"]][s])
    if lr == lr and obs.learning_rate is not None:
        found = engine.first_bad("learning_rate", step, np.asarray(obs.learning_rate),
                                 np.asarray(lr), float(a[exp["learning_rate_tolerance"]][s]))
        if found:
            return found
    names = [v["name"] for v in case.doc["variables"]]
    if len(obs.variables) != len(names):
        return engine.Divergence(step, f"variables: {len(obs.variables)} observed, "
                                 f"{len(names)} expected", [], 0.0, 0.0, float("inf"), 0.0)
    for q in exp["quantities"]:
        i = names.index(q["variable"])
        if q["slot"] is None:
            actual = obs.variables[i]
        elif obs.slots is None or q["slot"] not in obs.slots[i]:
            continue  # only slots both sides expose are compared
        else:
            actual = obs.slots[i][q["slot"]]
        expected = a[q["expected"]][s]
        perturbed = None if q["nan_ok"] is None else np.where(a[q["nan_ok"]][s], np.nan, 0.0)
        found = engine.first_bad(q["name"], step, actual, expected, a[q["tolerance"]][s],
                                 perturbed)  # fmt: skip
        if found:
            return found
    return None


def _entry_result(entry: dict) -> dict:
    return {"id": entry["id"], "profile": entry["profile"], "optimizer": entry["optimizer"],
            "feature": entry["feature"], "dtype": entry["dtype"], "status": None}  # fmt: skip


def run_case(adapter, folder: Path, entry: dict) -> dict:
    """One case through ``adapter``; a result dict whatever the adapter does."""
    from .report import json_safe

    result = _entry_result(entry)
    started = time.perf_counter()
    try:
        case = load_case(folder, entry)
        caps = adapter.capabilities()
        d = case.doc
        missing = caps.missing(d["optimizer"]["class_name"], d["needs"], d["dtype"],
                               d["profile"])  # fmt: skip
        if missing:
            notes = [caps.notes[m] for m in (entry["optimizer"], *d["needs"]) if m in caps.notes]
            result.update(status="unsupported",
                          reason="; ".join(["lacks " + ", ".join(missing), *notes]))  # fmt: skip
        else:
            found = _run_steps(adapter, case)
            if found is None:
                result["status"] = "pass"
            else:
                from . import engine

                result.update(status="deviation", first_divergence=engine.divergence_dict(found),
                              message=str(found))  # fmt: skip
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:  # the adapter's error (SystemExit included)
        result.update(status="error", message=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc())  # fmt: skip
    result["seconds"] = round(time.perf_counter() - started, 4)
    return json_safe(result)


def _run_steps(adapter, case: VectorCase):
    scenario = case.scenario()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the implementation's business
        from . import engine

        shapes = engine.template(scenario)
        session = adapter.open(scenario)
        try:
            for step, grads in enumerate(scenario.steps, start=1):
                obs = engine.fitting(adapter, session.step(grads), shapes, scenario.names,
                                     f"step {step}")  # fmt: skip
                found = compare_step(case, step, obs)
                if found is not None:
                    return found
        finally:
            session.close()
    return None


def _adapter_info(adapter) -> dict:
    available, reason = adapter.availability()
    version = adapter.version() if available else ""
    return {"available": bool(available), "reason": reason or "", "version": version or ""}


def _unavailable_result(entry: dict, reason: str) -> dict:
    return {**_entry_result(entry), "status": "unsupported",
            "reason": f"adapter unavailable: {reason}", "seconds": 0.0}  # fmt: skip


def _error_result(entry: dict, message: str, tb: str = "", seconds: float = 0.0) -> dict:
    return {**_entry_result(entry), "status": "error", "message": message, "traceback": tb,
            "seconds": round(seconds, 4)}  # fmt: skip


# =====================================================================================
# worker processes
# =====================================================================================
def _serve(inp, out) -> None:
    """The worker side: ``{"op": "load", "adapter": NAME}`` then ``{"op": "run",
    "folder": DIR, "case": ENTRY}`` requests, one JSON reply per line."""
    from optcheck.adapters import registry

    adapter, info = None, None
    for line in inp:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request["op"] == "load":
                adapter = registry.load_adapter(request["adapter"])
                info = _adapter_info(adapter)
                reply = {"ok": True, "info": info}
            elif request["op"] == "run":
                entry = request["case"]
                if not info["available"]:
                    result = _unavailable_result(entry, info["reason"])
                else:
                    result = run_case(adapter, Path(request["folder"]), entry)
                reply = {"ok": True, "result": result}
            else:
                reply = {"ok": False, "error": f"unknown op {request['op']!r}", "traceback": ""}
        except (KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()}  # fmt: skip
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    """``python -m optcheck.conformance.vectors``: a worker (stdout kept for replies)."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # stray prints of adapters go to stderr, never into the protocol
    _serve(sys.stdin, out)


def run_isolated(adapter_name: str, folder: Path, entries: list[dict], jobs: int,
                 timeout: float, on_result, load_timeout: float | None = None) -> dict:
    """Run ``entries`` on up to ``jobs`` worker processes (per-case ``timeout``; a dead or
    hung worker costs only its case) with the suite's pool
    (:class:`optcheck.conformance.worker.WorkerPool`, serving this module).
    ``on_result(result)`` as each case ends; returns the adapter's availability and
    version as the first worker reported them."""
    from . import worker

    folder = str(Path(folder).resolve())
    info: dict = {}
    pool = worker.WorkerPool(
        jobs, timeout, worker.LOAD_TIMEOUT if load_timeout is None else load_timeout,
        module="optcheck.conformance.vectors",
    )  # fmt: skip
    pool.run_jobs(entries, {"op": "load", "adapter": adapter_name},
                  lambda entry: {"op": "run", "folder": folder, "case": entry},
                  _error_result, on_result,
                  on_load=lambda reply: info or info.update(reply["info"]))  # fmt: skip
    return info


def run_in_process(adapter_name: str, folder: Path, entries: list[dict], on_result) -> dict:
    """Like :func:`run_isolated`, in this process (no timeout, no crash isolation)."""
    from optcheck.adapters import registry

    try:
        adapter = registry.load_adapter(adapter_name)
        info = _adapter_info(adapter)
    except Exception as exc:
        for entry in entries:
            on_result(_error_result(entry, f"cannot load adapter: {type(exc).__name__}: {exc}",
                                    traceback.format_exc()))  # fmt: skip
        return {}
    for entry in entries:
        if not info["available"]:
            on_result(_unavailable_result(entry, info["reason"]))
        else:
            on_result(run_case(adapter, folder, entry))
    return info


# =====================================================================================
# check
# =====================================================================================
def select(index: dict, optimizers=None, profiles=None, dtypes_=None, features=None) -> list:
    """The case entries of ``index`` that match the filters (features: fnmatch)."""
    return [
        e for e in index["cases"]
        if (optimizers is None or e["optimizer"] in optimizers)
        and (profiles is None or e["profile"] in profiles)
        and (dtypes_ is None or e["dtype"] in dtypes_)
        and (features is None or any(fnmatch.fnmatchcase(e["feature"], p) for p in features))
    ]  # fmt: skip


def check(adapter_name: str, folder: Path, *, optimizers=None, profiles=None, dtypes_=None,
          features=None, isolate: bool = True, jobs: int | None = None,
          timeout: float = 120.0) -> dict:
    """Check an adapter against a vectors folder; the report (schema
    ``optcheck.vectors-check/1``).

    Raises :class:`VectorsError` (before running anything) on a missing or malformed
    index, a missing or altered file, a malformed case, or an empty selection.
    """
    from optcheck.adapters import registry

    from .report import summarize

    name, target = registry.resolve(adapter_name)
    folder = Path(folder)
    started = time.perf_counter()
    index = read_index(folder)
    verify_checksums(folder, index)
    entries = select(index, optimizers, profiles, dtypes_, features)
    if not entries:
        raise VectorsError("no case of the vectors matches the selection (--optimizer, "
                           "--profile, --dtype, --feature)")  # fmt: skip
    for entry in entries:
        load_case(folder, entry)  # malformed files are usage errors, found before running
    results: dict[str, dict] = {}

    def record(result):
        results[result["id"]] = result

    if isolate:
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(entries)))
        info = run_isolated(adapter_name, folder, entries, jobs, timeout, record)
    else:
        info = run_in_process(adapter_name, folder, entries, record)
    cases = [results[e["id"]] for e in entries]
    return {
        "schema": CHECK_SCHEMA,
        "adapter": name,
        "target": target,
        "version": info.get("version", ""),
        "available": info.get("available", False),
        "reason": info.get("reason", ""),
        "vectors": str(folder),
        "generator": index.get("generator", ""),
        "summary": summarize(cases),
        "seconds": round(time.perf_counter() - started, 3),
        "cases": cases,
    }


def failed(report: dict) -> bool:
    return any(c["status"] in ("deviation", "error") for c in report["cases"])


# =====================================================================================
# command line
# =====================================================================================
def configure_parser(parser) -> None:
    """Add ``export`` and ``check`` to the ``optcheck vectors`` sub-parser; each sets
    ``handler(args, parser) -> exit status``."""
    from optcheck.cli import COUNT, SECONDS  # the numeric options' one validator

    sub = parser.add_subparsers(dest="vectors_command", required=True, metavar="{export,check}")
    e = sub.add_parser(
        "export", help="write golden test vectors (JSON + NPZ, checksummed) to a folder",
        description="Write golden test vectors to DIR: index.json, schema.json, README.md, "
        "SHA256SUMS and cases/<id>.json + .npz (docs/vectors.md). DIR must be new, empty or "
        "a previous export (whose files are replaced; other files are left alone). The "
        "defaults give the sample committed in vectors/.",
    )  # fmt: skip
    e.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    e.add_argument("--profile", action="extend", nargs="+", dest="profiles", choices=PROFILES,
                   metavar="PROFILE", help="keras2 and/or keras3 (default: both)")  # fmt: skip
    e.add_argument("--optimizer", action="extend", nargs="+", dest="optimizers",
                   metavar="NAME", help="optimizers (default: all)")  # fmt: skip
    e.add_argument("--dtype", action="extend", nargs="+", dest="dtypes", choices=DTYPES,
                   metavar="DTYPE", help="only these dtypes (default: every dtype of the grid)")
    e.add_argument("--json-values", action="store_true",
                   help="also write every array's exact values into the case JSON files "
                   "(JavaScript needs no NPZ reader then; about twice the size)")
    e.set_defaults(handler=_export_command, subparser=e)
    c = sub.add_parser(
        "check", help="check an adapter against a vectors folder",
        description="Verify the checksums of a vectors folder, then step the adapter through "
        "each case and compare with the stored values and tolerances. Exit 0: every "
        "supported case passes; 1: a deviation or error; 2: usage, checksum or format error; "
        "4: no case passed (the adapter is unavailable or supports none).",
    )  # fmt: skip
    c.add_argument("folder", type=Path, metavar="DIR", help="a vectors folder (e.g. vectors/)")
    c.add_argument("--adapter", required=True, metavar="NAME|module:attr",
                   help="a name from `optcheck adapters` or an import string")
    c.add_argument("--optimizer", action="extend", nargs="+", dest="optimizers",
                   metavar="NAME", help="only these optimizers")  # fmt: skip
    c.add_argument("--profile", action="extend", nargs="+", dest="profiles", choices=PROFILES,
                   metavar="PROFILE", help="only these profiles (keras2, keras3)")  # fmt: skip
    c.add_argument("--dtype", action="extend", nargs="+", dest="dtypes", choices=DTYPES,
                   metavar="DTYPE", help="only these dtypes (float16, bfloat16, float32, "
                   "float64)")  # fmt: skip
    c.add_argument("--feature", action="extend", nargs="+", dest="features",
                   metavar="PATTERN", help="only cases whose feature matches (fnmatch)")
    c.add_argument("--jobs", type=COUNT, default=None, metavar="N",
                   help="worker processes (default: number of CPUs)")
    c.add_argument("--timeout", type=SECONDS, default=120.0, metavar="S",
                   help="seconds per case before its worker is killed (default: 120)")
    c.add_argument("--in-process", action="store_true",
                   help="run the adapter in this process: no timeout or crash isolation")
    c.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write the results as JSON (schema optcheck.vectors-check/1); a "
                   f"folder: to {CHECK_FILE} in it")  # fmt: skip
    c.set_defaults(handler=_check_command, subparser=c)


def _usage(args, message: str) -> int:
    args.subparser.print_usage(sys.stderr)
    print(f"optcheck vectors {args.vectors_command}: error: {message}", file=sys.stderr)
    return 2


#: The file ``vectors check --out DIR`` writes in an existing folder DIR.
CHECK_FILE = "vectors-check.json"


def _check_out(path: Path) -> Path:
    """The file ``--out`` names (``path/vectors-check.json`` for a folder), checked to be
    writable before any case runs; raises VectorsError naming the problem."""
    path = path / CHECK_FILE if path.is_dir() else path
    if path.parent.exists() and not path.parent.is_dir():
        raise VectorsError(f"cannot write --out {path}: {path.parent} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=".optcheck-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise VectorsError(f"cannot write --out {path}: {exc.strerror or exc}") from None
    return path


def _write_check(report: dict, path: Path) -> str:
    """Write the results to ``path``; should that fail, to a temporary file. The line
    saying where they are."""
    from .report import write_atomic

    text = json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n"
    try:
        write_atomic(path, text)
        return f"results in {path}"
    except OSError as exc:
        fd, spare = tempfile.mkstemp(prefix="optcheck-vectors-check-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return f"cannot write {path} ({exc.strerror or exc}); results in {spare} instead"


def _optimizers(args):
    """Canonical optimizer names, or raise VectorsError naming the unknown ones."""
    if not args.optimizers:
        return None
    by_lower = {n.lower(): n for n in _all_optimizers()}
    unknown = [n for n in args.optimizers if n.lower() not in by_lower]
    if unknown:
        raise VectorsError(f"unknown optimizer(s) {', '.join(unknown)}; known optimizers: "
                           f"{', '.join(by_lower.values())}")  # fmt: skip
    return list(dict.fromkeys(by_lower[n.lower()] for n in args.optimizers))


def _export_command(args, parser) -> int:
    started = time.perf_counter()
    try:
        index = export(args.out, profiles=args.profiles or PROFILES, optimizers=_optimizers(args),
                       json_values=args.json_values, dtypes_=args.dtypes)  # fmt: skip
    except VectorsError as exc:
        return _usage(args, str(exc))
    files = [args.out / INDEX, args.out / SUMS] + [args.out / f["path"] for f in index["files"]]
    files += [args.out / c[k]["path"] for c in index["cases"] for k in ("json", "npz")]
    size = sum(p.stat().st_size for p in files)
    print(f"wrote {len(index['cases'])} cases ({len(files)} files, {size} bytes) to "
          f"{args.out}/ in {time.perf_counter() - started:.1f} s")  # fmt: skip
    return 0


def _check_command(args, parser) -> int:
    import importlib.util

    from optcheck.adapters import registry

    try:
        _, target = registry.resolve(args.adapter)
    except registry.UnknownAdapterError as exc:
        return _usage(args, str(exc))
    module = target.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return _usage(args, f"no module {module!r} for adapter {args.adapter!r}")
    if args.jobs is not None and args.jobs < 1:
        return _usage(args, "--jobs must be at least 1")
    if args.timeout <= 0:
        return _usage(args, "--timeout must be positive")
    try:
        out = None if args.out is None else _check_out(args.out)
        report = check(args.adapter, args.folder, optimizers=_optimizers(args),
                       profiles=args.profiles, dtypes_=args.dtypes, features=args.features,
                       isolate=not args.in_process, jobs=args.jobs,
                       timeout=args.timeout)  # fmt: skip
    except VectorsError as exc:
        return _usage(args, str(exc))
    for case in report["cases"]:
        if case["status"] in ("deviation", "error"):
            detail = case.get("message", "").splitlines()[0] if case.get("message") else ""
            print(f"{case['status']}: {case['id']}: {detail}")
    t = report["summary"]
    line = (f"{report['adapter']}: {t['pass']}/{t['cases']} cases pass, {t['deviation']} "
            f"deviation, {t['error']} error, {t['unsupported']} unsupported "
            f"({report['seconds']:.1f} s; vectors {args.folder}, {report['generator']})")
    if report["reason"] and not report["available"]:
        line += f" - not available: {report['reason']}"
    print(line)
    if out is not None:
        print(_write_check(report, out))
    if failed(report):
        return 1
    if not any(c["status"] == "pass" for c in report["cases"]):  # never pass on nothing
        from .verify import no_case_reason

        print(f"optcheck: adapter {report['adapter']!r} checked no case: "
              f"{no_case_reason(report['available'], report['reason'], report['cases'])}",
              file=sys.stderr)  # fmt: skip
        return 4
    return 0


# =====================================================================================
# the schema and the folder's README (written by export)
# =====================================================================================
_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_PATH = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"}
_FILE = {"type": "object", "additionalProperties": False, "required": ["path", "sha256"],
         "properties": {"path": {"$ref": "#/$defs/path"}, "sha256": {"$ref": "#/$defs/sha256"}}}
_NAMES = {"type": "array", "items": {"type": "string"}}
_KEY = {"type": "string", "minLength": 1}

JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "optcheck.vectors/1",
    "title": "optcheck golden test vectors: index.json and cases/<id>.json",
    "description": "docs/vectors.md describes every field. A document is an index (it has "
    "'cases') or a case (it has 'arrays').",
    "oneOf": [{"$ref": "#/$defs/index"}, {"$ref": "#/$defs/case"}],
    "$defs": {
        "sha256": _SHA,
        "path": _PATH,
        "file": _FILE,
        "dtype": {"enum": list(DTYPES)},
        "profile": {"enum": list(PROFILES)},
        "value": {"anyOf": [{"type": "number"}, {"type": "boolean"},
                            {"enum": list(_NON_FINITE)}]},
        "array": {
            "type": "object", "additionalProperties": False,
            "required": ["dtype", "storage", "shape"],
            "properties": {
                "dtype": {"enum": [*DTYPES, "bool", "int64"]},
                "storage": {"enum": sorted(set(STORAGE_NAMES.values()))},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "values": {"type": "array", "items": {"$ref": "#/$defs/value"}},
            },
        },
        "variable": {
            "type": "object", "additionalProperties": False, "required": ["name", "shape"],
            "properties": {"name": {"type": "string"},
                           "shape": {"type": "array", "items": {"type": "integer",
                                                                "minimum": 0}}},
        },
        "quantity": {
            "type": "object", "additionalProperties": False,
            "required": ["name", "variable", "slot", "expected", "tolerance", "nan_ok"],
            "properties": {"name": {"type": "string"}, "variable": {"type": "string"},
                           "slot": {"type": ["string", "null"]}, "expected": _KEY,
                           "tolerance": _KEY, "nan_ok": {"type": ["string", "null"]}},
        },
        "case": {
            "type": "object", "additionalProperties": False,
            "required": ["schema", "id", "profile", "feature", "dtype", "optimizer", "needs",
                         "variables", "exclude_from_weight_decay", "steps", "tolerance", "npz",
                         "inputs", "expected", "arrays"],
            "properties": {
                "schema": {"const": SCHEMA},
                "id": {"type": "string"},
                "profile": {"$ref": "#/$defs/profile"},
                "feature": {"type": "string"},
                "dtype": {"$ref": "#/$defs/dtype"},
                "optimizer": {
                    "type": "object", "additionalProperties": False,
                    "required": ["class_name", "config"],
                    "properties": {"class_name": {"type": "string"},
                                   "config": {"type": "object"}},
                },
                "needs": _NAMES,
                "variables": {"type": "array", "minItems": 1,
                              "items": {"$ref": "#/$defs/variable"}},
                "exclude_from_weight_decay": {
                    "type": "object", "additionalProperties": False, "required": ["var_names"],
                    "properties": {"var_names": _NAMES},
                },
                "steps": {"type": "integer", "minimum": 1},
                "tolerance": {"type": "object", "required": ["mode", "dtype", "rule"],
                              "properties": {"mode": {"const": "free"}}},
                "npz": {"$ref": "#/$defs/path"},
                "inputs": {
                    "type": "object", "additionalProperties": False,
                    "required": ["initial", "gradients"],
                    "properties": {
                        "initial": {"type": "object", "additionalProperties": _KEY},
                        "gradients": {"type": "object", "additionalProperties": _KEY},
                    },
                },
                "expected": {
                    "type": "object", "additionalProperties": False,
                    "required": ["iterations", "learning_rate", "learning_rate_tolerance",
                                 "quantities"],
                    "properties": {
                        "iterations": _KEY, "learning_rate": _KEY,
                        "learning_rate_tolerance": _KEY,
                        "quantities": {"type": "array", "items": {"$ref": "#/$defs/quantity"}},
                    },
                },
                "arrays": {"type": "object", "additionalProperties": {"$ref": "#/$defs/array"}},
            },
        },
        "index": {
            "type": "object", "additionalProperties": False,
            "required": ["schema", "generator", "selection", "files", "cases"],
            "properties": {
                "schema": {"const": SCHEMA},
                "generator": {"type": "string"},
                "selection": {"type": "object"},
                "files": {"type": "array", "items": {"$ref": "#/$defs/file"}},
                "cases": {
                    "type": "array",
                    "items": {
                        "type": "object", "additionalProperties": False,
                        "required": ["id", "profile", "optimizer", "feature", "dtype", "needs",
                                     "json", "npz"],
                        "properties": {
                            "id": {"type": "string"},
                            "profile": {"$ref": "#/$defs/profile"},
                            "optimizer": {"type": "string"},
                            "feature": {"type": "string"},
                            "dtype": {"$ref": "#/$defs/dtype"},
                            "needs": _NAMES,
                            "json": {"$ref": "#/$defs/file"},
                            "npz": {"$ref": "#/$defs/file"},
                        },
                    },
                },
            },
        },
    },
}  # fmt: skip

README_TEXT = f"""\
# optcheck golden test vectors ({SCHEMA})

Written by `optcheck vectors export`; do not edit (`SHA256SUMS` and `index.json` hold the
SHA-256 of every file). Each case is a Keras optimizer (its serialization dict
`{{"class_name", "config"}}`), a semantic profile (`keras2`: tf-keras; `keras3`: Keras 3),
a dtype, two variables (`kernel` 2×3, `bias` 3) and {STEPS} steps of gradients; after each
step, the expected variables, slots, `iterations` and learning rate, with a tolerance per
element. An implementation in any language conforms on a case when, for every step and
element: an expected NaN is matched by a NaN; a NaN is otherwise accepted only where
`nan_ok` is true; infinities match exactly; otherwise `|actual - expected| <= tolerance`
(`iterations` exactly; the learning rate within its own tolerance).

* `index.json` — the cases (id, profile, optimizer, feature, dtype) and their files.
* `cases/<id>.json` — hyper-parameters, variables, the tolerance policy, and the key,
  dtype and shape of every array (`optcheck vectors export --json-values` also writes
  the arrays' exact values there as JSON numbers, for JavaScript).
* `cases/<id>.npz` — the arrays: NumPy `.npy` files in an uncompressed zip, little-endian,
  bfloat16 as uint16 bit patterns (the upper half of the float32's bits).
* `schema.json` — JSON Schema of `index.json` and the case files.

Verify the files with `sha256sum -c SHA256SUMS`. The format, the tolerance and NaN rules,
the bfloat16 encoding and a check loop in C++, Rust and JavaScript are in optcheck's
docs/vectors.md. A Python adapter is checked with
`optcheck vectors check --adapter NAME DIR`.
"""


if __name__ == "__main__":
    main()
