"""Benchmark records for the report: loading and the derived tables.

A record is one case of ``benchmarks/`` (benchmarks/README.md, "Records"): what ran
(``implementation``, ``optimizer``, ``feature``, ``N``, ``layout``, ``device``,
``dtype``), its step time (``step_s`` = min of the rounds, ``step_s_median``), the byte
model's ``bytes_per_step``, the session roof (``roof_gbps``) and ``compile_s``. Every
table here is computed from those fields; nothing is measured.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


class BenchFileError(ValueError):
    """A file that is not a pytest-benchmark JSON nor a ``--bench-records`` file."""


def load_entries(path) -> list[dict]:
    """The ``benchmarks`` entries of a pytest-benchmark JSON file, or the lines of a
    ``--bench-records`` JSON-lines file (``.jsonl``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchFileError(f"cannot read benchmark file {path}: {exc.strerror}") from None
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BenchFileError(f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchFileError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return data["benchmarks"]


@dataclass
class Run:
    """One benchmark session: its step records, its roofs, where it ran."""

    path: str
    records: list[dict]  # extra_info of the step cases, plus "stats"
    roofs: list[dict]  # extra_info of test_roof
    machine: dict = field(default_factory=dict)
    datetime: str | None = None
    commit: dict = field(default_factory=dict)


def load(path) -> Run:
    entries = load_entries(path)
    records, roofs = [], []
    for i, entry in enumerate(entries):
        info = entry.get("extra_info") if isinstance(entry, dict) else None
        if not isinstance(info, dict):
            raise BenchFileError(f"{path}: entry {i} has no extra_info (not an optcheck benchmark)")
        if info.get("kind") == "roof":
            _check_fields(info, _ROOF_FIELDS, path, i)
            roofs.append(info)
        elif "step_s" in info:
            _check_fields(info, _RECORD_FIELDS, path, i)
            stats = entry.get("stats") or {}
            records.append({**info, "name": entry.get("name", ""), "stats": stats})
    if not records and not roofs:
        raise BenchFileError(f"{path} holds no optcheck benchmark record")
    meta = {}
    if Path(path).suffix != ".jsonl":
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    return Run(str(path), records, roofs, meta.get("machine_info") or {}, meta.get("datetime"),
               meta.get("commit_info") or {})  # fmt: skip


_NUMBER = (int, float)
#: The fields of a step record (or a roof) the report reads, and their types.
_RECORD_FIELDS = {"device": str, "implementation": str, "optimizer": str, "feature": str,
                  "N": int, "layout": int, "step_s": _NUMBER, "bytes_per_step": _NUMBER,
                  "gbps": _NUMBER}  # fmt: skip
_ROOF_FIELDS = {"device": str}


def _check_fields(info: dict, spec: dict, path, i: int) -> None:
    """Raise BenchFileError naming the file, the entry and the first field of ``spec``
    that ``info`` lacks or holds with another type (a null step time: a run without
    measurements, e.g. ``--benchmark-disable``)."""
    for name, kind in spec.items():
        value = info.get(name)
        if value is None or not isinstance(value, kind) or isinstance(value, bool):
            what = ("null" if name in info else "missing") if value is None else \
                type(value).__name__  # fmt: skip
            raise BenchFileError(f"{path}: entry {i}: field extra_info.{name} is {what}")


def merge(runs: list[Run]) -> list[dict]:
    """Every step record of ``runs`` (a later run's record replaces an earlier one's of
    the same case)."""
    by_key = {}
    for run in runs:
        for r in run.records:
            by_key[key(r)] = r
    return list(by_key.values())


def key(r: dict) -> tuple:
    return (r["device"], r["implementation"], r["optimizer"], r["feature"], r["N"],
            r["layout"], r.get("dtype", "float32"))  # fmt: skip


def roof_gbps(records: list[dict], device: str) -> float | None:
    """The session roof on ``device`` (the records carry it; the best if runs differ)."""
    values = [r["roof_gbps"] for r in records if r["device"] == device and r.get("roof_gbps")]
    return max(values) if values else None


def devices(records) -> list[str]:
    return sorted({r["device"] for r in records}, key=lambda d: (d != "cpu", d))


def implementations(records) -> list[str]:
    order = ("numpy", "jax", "jax-flat", "tf", "optax", "torch-fused", "torch-foreach")
    found = {r["implementation"] for r in records}
    return [i for i in order if i in found] + sorted(found - set(order))


def optimizers(records) -> list[str]:
    order = ("SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Ftrl", "Nadam",
             "RMSprop", "Adafactor", "Lion")  # fmt: skip
    found = {r["optimizer"] for r in records}
    return [o for o in order if o in found] + sorted(found - set(order))


def scaling(records, device: str, optimizer: str) -> dict[str, list[tuple[int, float]]]:
    """Implementation -> [(N, step_s)], plain, one tensor."""
    out: dict[str, list] = {}
    for r in records:
        if (r["device"], r["optimizer"], r["feature"], r["layout"]) == (device, optimizer,
                                                                       "plain", 1):  # fmt: skip
            out.setdefault(r["implementation"], []).append((r["N"], r["step_s"]))
    return {k: sorted(v) for k, v in out.items()}


def bytes_per_param(records, optimizer: str, feature: str = "plain") -> float | None:
    for r in records:
        if r["optimizer"] == optimizer and r["feature"] == feature:
            return r["bytes_per_step"] / r["N"]
    return None


def fastest_ratios(records, device: str) -> list[dict]:
    """Per problem (optimizer, feature, N, layout): each implementation's step over the
    fastest one's (1.0 is the fastest)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["device"] == device:
            groups.setdefault((r["optimizer"], r["feature"], r["N"], r["layout"]), []).append(r)
    rows = []
    for (opt, feature, n, layout), group in groups.items():
        best = min(group, key=lambda r: r["step_s"])
        rows.append({
            "optimizer": opt, "feature": feature, "N": n, "layout": layout,
            "fastest": best["implementation"],
            "ratios": {r["implementation"]: r["step_s"] / best["step_s"] for r in group},
        })  # fmt: skip
    return sorted(rows, key=lambda row: (_opt_rank(row["optimizer"]), row["feature"], row["N"],
                                         row["layout"]))  # fmt: skip


def _opt_rank(name: str) -> tuple:
    order = ("SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "Ftrl", "Nadam",
             "RMSprop", "Adafactor", "Lion")  # fmt: skip
    return (order.index(name) if name in order else len(order), name)


def layout_penalty(records, device: str) -> list[dict]:
    """Per (implementation, optimizer, N) with several layouts: step(T tensors) /
    step(one tensor), plain."""
    groups: dict[tuple, dict[int, float]] = {}
    for r in records:
        if r["device"] == device and r["feature"] == "plain":
            groups.setdefault((r["implementation"], r["optimizer"], r["N"]), {})[r["layout"]] = (
                r["step_s"]
            )
    rows = []
    for (impl, opt, n), by_layout in groups.items():
        if 1 in by_layout and len(by_layout) > 1:
            rows.append({"implementation": impl, "optimizer": opt, "N": n,
                         "penalty": {t: s / by_layout[1] for t, s in sorted(by_layout.items())}})
    return sorted(rows, key=lambda row: (_opt_rank(row["optimizer"]), row["N"],
                                         implementations(records).index(row["implementation"])))


def feature_cost(records, device: str) -> list[dict]:
    """Per (implementation, optimizer, N, layout) measured with features: step(feature)
    / step(plain)."""
    groups: dict[tuple, dict[str, float]] = {}
    for r in records:
        if r["device"] == device:
            k = (r["implementation"], r["optimizer"], r["N"], r["layout"])
            groups.setdefault(k, {})[r["feature"]] = r["step_s"]
    rows = []
    for (impl, opt, n, layout), by_feature in groups.items():
        if "plain" in by_feature and len(by_feature) > 1:
            rows.append({"implementation": impl, "optimizer": opt, "N": n, "layout": layout,
                         "cost": {f: s / by_feature["plain"] for f, s in sorted(by_feature.items())
                                  if f != "plain"}})  # fmt: skip
    return sorted(rows, key=lambda row: (_opt_rank(row["optimizer"]), row["N"], row["layout"],
                                         row["implementation"]))  # fmt: skip


@dataclass
class Change:
    key: tuple
    before: dict
    after: dict

    @property
    def ratio(self) -> float:
        return self.after["step_s"] / self.before["step_s"]

    @property
    def ratio_median(self) -> float | None:
        a, b = self.after.get("step_s_median"), self.before.get("step_s_median")
        return a / b if a and b else None

    def verdict(self, threshold: float) -> str:
        if math.isnan(self.ratio):
            return "regression"  # a NaN time is never hidden
        if self.ratio > threshold:
            return "regression"
        if self.ratio < 1 / threshold:
            return "improvement"
        return "same"


def compare(before: list[dict], after: list[dict]) -> tuple[list[Change], list, list]:
    """Cases in both runs (matched on device, implementation, optimizer, feature, N,
    layout, dtype), and the keys only before / only after."""
    b = {key(r): r for r in before}
    a = {key(r): r for r in after}
    both = [Change(k, b[k], a[k]) for k in b if k in a]
    both.sort(key=lambda c: -c.ratio if not math.isnan(c.ratio) else -math.inf)
    return both, sorted(set(b) - set(a)), sorted(set(a) - set(b))


def case_label(k: tuple) -> str:
    device, impl, opt, feature, n, layout, dtype = k
    return f"{impl} {opt} {feature} N={n_label(n)} T={layout} {device}" + (
        f" {dtype}" if dtype != "float32" else ""
    )


def n_label(n: int) -> str:
    """``1000 -> "1e3"``; other values as they are."""
    exponent = len(str(n)) - 1
    mantissa, rest = divmod(n, 10**exponent)
    return f"{mantissa}e{exponent}" if rest == 0 else str(n)


def environment(runs: list[Run]) -> list[dict]:
    """Per run: where and with what it ran."""
    out = []
    for run in runs:
        versions: dict[str, str] = {}
        names: dict[str, str] = {}
        for r in run.records:
            versions.update(r.get("versions") or {})
            names[r["device"]] = r.get("device_name", "")
        for roof in run.roofs:
            names.setdefault(roof["device"], roof.get("device_name", ""))
        cpu = run.machine.get("cpu") or {}
        out.append({
            "path": run.path,
            "datetime": run.datetime,
            "devices": names,
            "cpu": cpu.get("brand_raw") or cpu.get("brand") or "",
            "cores": cpu.get("count"),
            "python": run.machine.get("python_version", ""),
            "node": run.machine.get("node", ""),
            "versions": dict(sorted(versions.items())),
            "roofs": [{k: roof.get(k) for k in ("device", "roof_gbps", "roof_method",
                                                 "roof_by_method", "triad_gbps", "N")}
                      for roof in run.roofs],
            "commit": run.commit.get("id", ""),
            "cases": len(run.records),
        })  # fmt: skip
    return out
