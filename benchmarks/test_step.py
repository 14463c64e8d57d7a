"""Step time of every case of the grid (``--bench-grid``), and the roof itself.

Every test uses the ``benchmark`` fixture, so ``--benchmark-only`` keeps them all.
"""

from __future__ import annotations

import pytest

from benchmarks import harness


def test_step(case, benchmark, roofs, bench_budget, bench_pause, bench_records):
    try:
        info = harness.bench_case(case, benchmark, roofs, bench_budget, bench_pause)
    except harness.Unavailable as e:
        pytest.skip(str(e))
    bench_records.append(
        {
            "name": f"test_step[{case.id}]",
            "extra_info": info,
            "stats": harness.step_stats(benchmark),
        }
    )


def test_paired(paired_group, benchmark, roofs, bench_budget, bench_pause, bench_records):
    """The cases a ratio target compares, and the layout floors, timed in alternating
    blocks (``harness.paired_groups``); the targets prefer these to cases timed apart."""
    name, group = paired_group
    try:
        info = harness.bench_paired(name, group, benchmark, roofs, bench_budget, bench_pause)
    except harness.Unavailable as e:
        pytest.skip(str(e))
    bench_records.append({"name": f"test_paired[{name}]", "extra_info": info,
                          "stats": harness.step_stats(benchmark)})  # fmt: skip


def test_roof(roof_device, benchmark, roofs):
    """The session roof (best method, best of repeats, in ``extra_info``) and its kernel,
    one synchronised run of the winning method, timed by pytest-benchmark."""
    try:
        roof = roofs.get(roof_device)
    except harness.Unavailable as e:
        pytest.skip(str(e))
    benchmark.group = f"roof {roof_device}"
    kernel, nbytes = harness.roof_kernel(roof_device, roof.method, roof.n)
    benchmark.extra_info.update(
        kind="roof",
        device=roof_device,
        device_name=roof.device_name,
        N=roof.n,
        kernel_bytes=nbytes,
        roof_gbps=roof.gbps,
        roof_method=roof.method,
        roof_by_method=roof.by_method,
        triad_gbps=roof.triad_gbps,
    )
    benchmark.pedantic(kernel, rounds=10, warmup_rounds=1)
    stats = harness.step_stats(benchmark)
    if stats:
        benchmark.extra_info["kernel_gbps"] = nbytes / stats["min"] / 1e9
