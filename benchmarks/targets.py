"""The issue's performance targets, evaluated on pytest-benchmark JSON.

    python -m benchmarks.targets reports/out/bench/bench.json   # from the repository root
    python benchmarks/targets.py FILE.json [--device cpu] [--stat min]

Prints one row per target and implementation (measured value, limit, pass / FAIL /
no data) and an information table of Adam at N = 1e7 and 1e3, one tensor, for every
implementation. Exit status 1 when a target that has data fails, 0 otherwise (missing
records are "no data", not failures). Targets (issue 4; 2-core CPU, Adam float32):

* ``vs torch fused``: our jax and tf step ≤ 1.0× torch.optim.Adam(fused=True), N = 1e7
  in one tensor, measured in the same run;
* ``roof fraction``: the same steps reach ≥ 90 % of the in-place roof (interleaved:
  the median over blocks of the step's fraction of that block's roof);
* ``1000 tensors``: the 1000-tensor layout ≤ 1.5× the one-tensor layout at N = 1e7.
  Where the interleaved group timed the layout floors (``p ← p − c·g`` compiled over
  each layout's arrays), the detail adds the least ratio they leave reachable,
  ``1 + (floor_1000 − floor_1) / step_1`` (median over blocks);
* ``byte ratio``: for each optimizer X, (t_X / t_Adam) / (bytes_X / bytes_Adam) within
  [1/1.2, 1.2], plain, one tensor, at N = 1e7 or the largest N both have (no data
  below 1e6, where steps are overhead-bound);
* ``overhead``: the N = 1e3 one-tensor Adam step ≤ 20 µs (jax), ≤ 150 µs (tf).

Step times are the ``min`` of the pytest-benchmark rounds by default (``--stat``): on
a shared machine the fastest round is the one least disturbed. A ratio takes both its
times from one ``test_paired`` group when the run has one with both cases (timed in
alternating blocks, so the machine's drift falls on both alike; the ratio is then the
median over blocks of the two cases' ratio in the same block, and the detail says
"interleaved"), else from the cases timed apart.

Needs only the standard library and optcheck: it reads what the records carry.
"""

from __future__ import annotations

import argparse
import statistics
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


@dataclass
class Pair:
    """Two cases' step times for a ratio, where they come from, and their records."""

    a: float | None
    b: float | None
    #: the test_paired group both come from, or None: timed apart
    group: str | None
    a_info: dict
    b_info: dict

    @property
    def how(self) -> str:
        return f"interleaved ({self.group})" if self.group else "timed apart"

    @property
    def ratio(self) -> float:
        """``a / b``. Interleaved: the median over blocks of the two cases' ratio in the
        same block. A shared machine has fast and slow spells shorter than a block
        cycle, which the best blocks of two cases need not share (a case's best block
        can be 1.5× another's by luck alone, measured); neighbouring timings share
        them. Timed apart: the ratio of the two times."""
        blocks = [info.get("block_min_s") for info in (self.a_info, self.b_info)]
        if self.group and all(blocks):
            return statistics.median(x / y for x, y in zip(*blocks, strict=True))
        return self.a / self.b

    def detail(self) -> str:
        """The two times and where the ratio comes from."""
        if self.group:
            n = len(self.a_info.get("block_min_s") or ())
            return (f"best blocks {self.a * 1e3:.2f} vs {self.b * 1e3:.2f} ms; median of "
                    f"{n} block ratios, {self.how}")  # fmt: skip
        return f"{self.a * 1e3:.2f} ms vs {self.b * 1e3:.2f} ms, {self.how}"


def key(impl, optimizer="Adam", n=REFERENCE_N, layout=1, feature="plain") -> tuple:
    """An :class:`Index` key."""
    return (impl, optimizer, feature, n, layout)


def _key(info: dict) -> tuple:
    return key(info["implementation"], info["optimizer"], int(info["N"]), int(info["layout"]),
               info.get("feature", "plain"))  # fmt: skip


class Index:
    """Step records of one device, by (implementation, optimizer, feature, N, layout):
    cases timed apart (``test_step``) and interleaved groups (``test_paired``)."""

    def __init__(self, records, device: str = "cpu", stat: str = "min"):
        self.entries: dict[tuple, dict] = {}
        self.times: dict[tuple, float] = {}
        #: test_paired groups: name -> {key: (seconds, extra_info)} (runs merged: the last)
        self.groups: dict[str, dict[tuple, tuple[float, dict]]] = {}
        #: layout floors of the test_paired groups: name -> {(implementation, N, layout):
        #: each block's best}
        self.floors: dict[str, dict[tuple, list[float]]] = {}
        for entry in records:
            info = entry.get("extra_info") or {}
            if info.get("kind") == "paired":
                self.floors[info["group"]] = {
                    (f["floor_of"], int(f["N"]), int(f["layout"])): f["block_min_s"]
                    for f in (sub["extra_info"] for sub in info.get("floors", ()))
                    if f.get("device", "cpu") == device
                }
                group = {}
                for sub in info.get("records", ()):
                    t = step_time(sub, stat)
                    if sub["extra_info"].get("device", "cpu") == device and t and t > 0:
                        group[_key(sub["extra_info"])] = (t, sub["extra_info"])
                        self._add(sub, t)
                self.groups[info["group"]] = group
                continue
            if "implementation" not in info or info.get("device", "cpu") != device:
                continue
            t = step_time(entry, stat)
            if t is not None and t > 0:
                self._add(entry, t)

    def _add(self, entry, t):
        key = _key(entry["extra_info"])
        if key not in self.times or t < self.times[key]:  # several runs merged: best
            self.times[key], self.entries[key] = t, entry

    def pair(self, a: tuple, b: tuple) -> Pair:
        """Keys ``a`` and ``b`` from an interleaved group that has both, else each
        case's best timed apart."""
        for name, group in self.groups.items():
            if a in group and b in group:
                (ta, ia), (tb, ib) = group[a], group[b]
                return Pair(ta, tb, name, ia, ib)
        ia, ib = (((self.entries.get(k) or {}).get("extra_info") or {}) for k in (a, b))
        return Pair(self.times.get(a), self.times.get(b), None, ia, ib)

    def least_layout_ratio(self, pair: Pair, impl: str) -> float | None:
        """For an interleaved layout pair (``LAYOUT_TENSORS`` tensors against one) whose
        group timed ``impl``'s floors: the median over blocks of
        ``1 + (floor_many − floor_one) / step_one``, the ratio a step would have if the
        many arrays cost it no more than they cost the least update there is."""
        floors = self.floors.get(pair.group) or {}
        many, one = (floors.get((impl, REFERENCE_N, t)) for t in (LAYOUT_TENSORS, 1))
        step = pair.b_info.get("block_min_s")
        if not (many and one and step):
            return None
        return statistics.median(1 + (m - o) / s for m, o, s in zip(many, one, step, strict=True))

    def time(self, impl, optimizer="Adam", n=REFERENCE_N, layout=1, feature="plain"):
        return self.times.get(key(impl, optimizer, n, layout, feature))

    def info(self, impl, optimizer="Adam", n=REFERENCE_N, layout=1, feature="plain") -> dict:
        entry = self.entries.get(key(impl, optimizer, n, layout, feature))
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
    for impl in OURS:
        pair = index.pair(key(impl), key("torch-fused"))
        if pair.a is None or pair.b is None:
            missing = impl if pair.a is None else "torch-fused"
            rows.append(_no_data(target, impl, limit, f"no {missing} Adam {n_label} T=1"))
            continue
        ratio = pair.ratio
        rows.append(Row(target, impl, f"{ratio:.2f}x", limit, _status(ratio <= TORCH_RATIO),
                        pair.detail()))  # fmt: skip

    target = "roof fraction"
    limit = f">= {ROOF_FRACTION:.0%}"
    for impl in OURS:
        pair = index.pair(key(impl), key("torch-fused"))
        t, info = pair.a, pair.a_info
        if t is None or not info.get("roof_gbps"):
            rows.append(_no_data(target, impl, limit, f"no {impl} Adam {n_label} T=1 with a roof"))
            continue
        gbps = info["bytes_per_step"] / t / 1e9
        detail = f"best {gbps:.1f} of {info['roof_gbps']:.1f} GB/s ({info.get('roof_method')})"
        blocks, roofs = info.get("block_min_s"), info.get("roof_block_gbps")
        if pair.group and blocks and roofs:
            # As the ratios: step and roof in the same block, the median over blocks.
            fraction = statistics.median(info["bytes_per_step"] / s / 1e9 / r
                                         for s, r in zip(blocks, roofs, strict=True))  # fmt: skip
            detail += f"; median of {len(blocks)} blocks' fractions, {pair.how}"
        else:
            fraction = gbps / info["roof_gbps"]
            detail += f", {pair.how}"
        rows.append(Row(target, impl, f"{fraction:.0%}", limit, _status(fraction >= ROOF_FRACTION),
                        detail))  # fmt: skip

    target = f"{LAYOUT_TENSORS} tensors"
    limit = f"<= {LAYOUT_RATIO:.1f}x"
    for impl in (*OURS, "jax-flat"):
        one_impl = "jax" if impl == "jax-flat" else impl
        pair = index.pair(key(impl, layout=LAYOUT_TENSORS), key(one_impl))
        one = pair.b
        if pair.a is None or one is None:
            if impl == "jax-flat" and pair.a is None:
                continue  # optional: only reported when run
            rows.append(_no_data(target, impl, limit, f"no Adam {n_label} T=1 and T=1000"))
            continue
        ratio = pair.ratio
        detail = pair.detail()
        least = index.least_layout_ratio(pair, impl)
        if least is not None:
            detail += f"; least reachable over the floor p-c*g: {least:.2f}x"
        rows.append(Row(target, impl, f"{ratio:.2f}x", limit, _status(ratio <= LAYOUT_RATIO),
                        detail))  # fmt: skip

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
            pair = index.pair(key(impl, opt, n), key(impl, "Adam", n))
            b_x, b_a = pair.a_info["bytes_per_param"], pair.b_info["bytes_per_param"]
            ratio = pair.ratio
            measured = ratio / (b_x / b_a)
            ok = 1 / BYTE_RATIO <= measured <= BYTE_RATIO
            rows.append(Row(target, f"{impl} {opt}", f"{measured:.2f}", limit, _status(ok),
                            f"t {ratio:.2f} vs bytes {b_x}/{b_a} = {b_x / b_a:.2f} "
                            f"at N={label(n)}; {pair.detail()}"))  # fmt: skip

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
