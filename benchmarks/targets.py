"""The issue's performance targets, evaluated on pytest-benchmark JSON.

    python -m benchmarks.targets reports/out/bench/bench.json   # from the repository root
    python benchmarks/targets.py FILE.json [--device cpu] [--stat min]

Prints one row per target and implementation (measured value, limit, pass / FAIL /
no data) and an information table of Adam at N = 1e7 and 1e3, one tensor, for every
implementation. Exit status 1 when a target that has data fails, 0 otherwise (missing
records are "no data", not failures). Targets (issue 4; 2-core CPU, Adam float32):

* ``vs torch fused``: our jax and tf step ≤ 1.0× torch.optim.Adam(fused=True), N = 1e7
  in one tensor, measured in the same run;
* ``roof fraction``: the same steps reach ≥ 90 % of the session's in-place roof;
* ``1000 tensors``: the 1000-tensor layout ≤ 1.5× the one-tensor layout at N = 1e7;
* ``byte ratio``: for each optimizer X, (t_X / t_Adam) / (bytes_X / bytes_Adam) within
  [1/1.2, 1.2], plain, one tensor, at N = 1e7 or the largest N both have (no data
  below 1e6, where steps are overhead-bound);
* ``overhead``: the N = 1e3 one-tensor Adam step ≤ 20 µs (jax), ≤ 150 µs (tf).

Step times are the ``min`` of the pytest-benchmark rounds by default (``--stat``): on
a shared machine the fastest round is the one least disturbed.

Needs only the standard library and optcheck: it reads what the records carry.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

REFERENCE_N = 10**7
OVERHEAD_N = 10**3
TORCH_RATIO = 1.0
ROOF_FRACTION = 0.90
LAYOUT_RATIO = 1.5
LAYOUT_TENSORS = 1000
BYTE_RATIO = 1.2
#: Below this N a step is overhead-bound and byte ratios say nothing.
BYTE_RATIO_MIN_N = 10**6
OVERHEAD_S = {"jax": 20e-6, "tf": 150e-6}
#: Implementations the targets hold for (optcheck's own); jax-flat only where packing
#: many tensors matters (the layout target).
OURS = ("jax", "tf")


@dataclass
class Row:
    target: str
    implementation: str
    measured: str
    limit: str
    status: str  # "pass", "FAIL" or "no data"
    detail: str = ""


def load(path) -> list[dict]:
    """The ``benchmarks`` entries of a pytest-benchmark JSON file, or the lines of a
    ``--bench-records`` JSON-lines file (the report reads them the same way)."""
    from optcheck.reports.bench import load_entries

    return load_entries(path)


def step_time(entry: dict, stat: str = "min") -> float | None:
    stats = entry.get("stats") or {}
    value = stats.get(stat)
    if value is None and stat == "min":
        value = (entry.get("extra_info") or {}).get("step_s")
    return value


class Index:
    """Step records of one device, by (implementation, optimizer, feature, N, layout)."""

    def __init__(self, records, device: str = "cpu", stat: str = "min"):
        self.entries: dict[tuple, dict] = {}
        self.times: dict[tuple, float] = {}
        for entry in records:
            info = entry.get("extra_info") or {}
            if "implementation" not in info or info.get("device", "cpu") != device:
                continue
            t = step_time(entry, stat)
            if t is None or t <= 0:
                continue
            key = (info["implementation"], info["optimizer"], info.get("feature", "plain"),
                   int(info["N"]), int(info["layout"]))  # fmt: skip
            if key not in self.times or t < self.times[key]:  # several runs merged: best
                self.times[key], self.entries[key] = t, entry

    def time(self, impl, optimizer="Adam", n=REFERENCE_N, layout=1, feature="plain"):
        return self.times.get((impl, optimizer, feature, n, layout))

    def info(self, impl, optimizer="Adam", n=REFERENCE_N, layout=1, feature="plain") -> dict:
        entry = self.entries.get((impl, optimizer, feature, n, layout))
        return (entry or {}).get("extra_info") or {}

    def optimizers(self, impl) -> set[str]:
        return {k[1] for k in self.times if k[0] == impl and k[2] == "plain" and k[4] == 1}

    def sizes(self, impl, optimizer) -> set[int]:
        return {k[3] for k in self.times if k[:3] == (impl, optimizer, "plain") and k[4] == 1}


def label(n: int) -> str:
    """``10**7 -> "1e7"`` (as the benchmark ids write N)."""
    exponent = len(str(n)) - 1
    mantissa, rest = divmod(n, 10**exponent)
    return f"{mantissa}e{exponent}" if rest == 0 else str(n)


def _status(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def _no_data(target, impl, limit, detail) -> Row:
    return Row(target, impl, "-", limit, "no data", detail)


def evaluate(records, device: str = "cpu", stat: str = "min") -> list[Row]:
    index = Index(records, device, stat)
    rows: list[Row] = []
    n_label = f"N={label(REFERENCE_N)}"

    target = "vs torch fused"
    limit = f"<= {TORCH_RATIO:.1f}x"
    torch_t = index.time("torch-fused")
    for impl in OURS:
        t = index.time(impl)
        if t is None or torch_t is None:
            missing = impl if t is None else "torch-fused"
            rows.append(_no_data(target, impl, limit, f"no {missing} Adam {n_label} T=1"))
            continue
        ratio = t / torch_t
        rows.append(Row(target, impl, f"{ratio:.2f}x", limit, _status(ratio <= TORCH_RATIO),
                        f"{t * 1e3:.2f} ms vs {torch_t * 1e3:.2f} ms"))  # fmt: skip

    target = "roof fraction"
    limit = f">= {ROOF_FRACTION:.0%}"
    for impl in OURS:
        t, info = index.time(impl), index.info(impl)
        if t is None or not info.get("roof_gbps"):
            rows.append(_no_data(target, impl, limit, f"no {impl} Adam {n_label} T=1 with a roof"))
            continue
        gbps = info["bytes_per_step"] / t / 1e9
        fraction = gbps / info["roof_gbps"]
        rows.append(Row(target, impl, f"{fraction:.0%}", limit, _status(fraction >= ROOF_FRACTION),
                        f"{gbps:.1f} of {info['roof_gbps']:.1f} GB/s"))  # fmt: skip

    target = f"{LAYOUT_TENSORS} tensors"
    limit = f"<= {LAYOUT_RATIO:.1f}x"
    for impl in (*OURS, "jax-flat"):
        many = index.time(impl, layout=LAYOUT_TENSORS)
        one = index.time(impl) or (index.time("jax") if impl == "jax-flat" else None)
        if many is None or one is None:
            if impl == "jax-flat" and many is None:
                continue  # optional: only reported when run
            rows.append(_no_data(target, impl, limit, f"no Adam {n_label} T=1 and T=1000"))
            continue
        ratio = many / one
        rows.append(Row(target, impl, f"{ratio:.2f}x", limit, _status(ratio <= LAYOUT_RATIO),
                        f"{many * 1e3:.2f} ms vs {one * 1e3:.2f} ms"))  # fmt: skip

    target = "byte ratio"
    limit = f"in [{1 / BYTE_RATIO:.2f}, {BYTE_RATIO:.2f}]"
    for impl in OURS:
        others = sorted(index.optimizers(impl) - {"Adam"})
        if not others or not index.sizes(impl, "Adam"):
            rows.append(_no_data(target, impl, limit, "no plain one-tensor records besides Adam"
                                 if index.sizes(impl, "Adam") else "no Adam record"))  # fmt: skip
            continue
        for opt in others:
            common = index.sizes(impl, opt) & index.sizes(impl, "Adam")
            if not common:
                rows.append(_no_data(target, f"{impl} {opt}", limit, "no common N with Adam"))
                continue
            n = max(common)
            if n < BYTE_RATIO_MIN_N:
                rows.append(_no_data(target, f"{impl} {opt}", limit,
                                     f"largest common N {label(n)} < {label(BYTE_RATIO_MIN_N)}: "
                                     "overhead-bound, not bandwidth-bound"))  # fmt: skip
                continue
            t_x, t_a = index.time(impl, opt, n), index.time(impl, "Adam", n)
            b_x = index.info(impl, opt, n)["bytes_per_param"]
            b_a = index.info(impl, "Adam", n)["bytes_per_param"]
            measured = (t_x / t_a) / (b_x / b_a)
            ok = 1 / BYTE_RATIO <= measured <= BYTE_RATIO
            rows.append(Row(target, f"{impl} {opt}", f"{measured:.2f}", limit, _status(ok),
                            f"t {t_x / t_a:.2f} vs bytes {b_x}/{b_a} = {b_x / b_a:.2f} "
                            f"at N={label(n)}"))  # fmt: skip

    target = "overhead N=1e3"
    for impl, bound in OVERHEAD_S.items():
        limit = f"<= {bound * 1e6:.0f} us"
        t = index.time(impl, n=OVERHEAD_N)
        if t is None:
            rows.append(_no_data(target, impl, limit, f"no {impl} Adam N=1e3 T=1"))
            continue
        rows.append(Row(target, impl, f"{t * 1e6:.1f} us", limit, _status(t <= bound)))
    return rows


def _table(header, lines) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*map(str, line)) for line in lines]
    return out


def information(records, device: str = "cpu", stat: str = "min") -> list[str]:
    """Adam plain, one tensor, at N = 1e7 and 1e3: every implementation's numbers."""
    index = Index(records, device, stat)
    lines = []
    for n in (REFERENCE_N, OVERHEAD_N):
        for impl in sorted({k[0] for k in index.times}):
            t, info = index.time(impl, n=n), index.info(impl, n=n)
            if t is None:
                continue
            gbps = info["bytes_per_step"] / t / 1e9
            roof = info.get("roof_gbps")
            compile_s = info.get("compile_s")
            lines.append((
                label(n), impl, f"{t * 1e3:.4g}", f"{gbps:.2f}",
                f"{gbps / roof:.0%}" if roof else "-", f"{roof:.1f}" if roof else "-",
                f"{compile_s:.3f}" if compile_s is not None else "-",
            ))  # fmt: skip
    if not lines:
        return []
    header = ("N", "implementation", "step ms", "GB/s", "of roof", "roof GB/s", "compile s")
    return _table(header, lines)


def report(records, device: str = "cpu", stat: str = "min") -> str:
    rows = evaluate(records, device, stat)
    out = [f"targets on {device}, step time = {stat} of the rounds"]
    out += _table(("target", "implementation", "measured", "limit", "result", "detail"),
                  [(r.target, r.implementation, r.measured, r.limit, r.status, r.detail)
                   for r in rows])  # fmt: skip
    info = information(records, device, stat)
    if info:
        out += ["", "Adam, plain, one tensor (information)", *info]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--stat", default="min", choices=("min", "median", "mean"))
    args = parser.parse_args(argv)
    records = load(args.json)
    print(report(records, args.device, args.stat))
    failed = [r for r in evaluate(records, args.device, args.stat) if r.status == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
