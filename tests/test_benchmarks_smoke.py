"""CI smoke test of benchmarks/: the byte model, the roof, one golden case through the
suite's own code path, the grid, and the targets script. NumPy only (torch / JAX
cases run when installed); seconds; no pytest-benchmark needed."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import harness, targets
from optcheck.reference.optimizers import MODULES
from optcheck.reference.optimizers import bytes as byte_model

ROOT = Path(__file__).resolve().parents[1]
SMALL_ROOF = {"n": 1 << 20, "repeats": 3, "methods": ("numpy",)}


# --- byte model ---------------------------------------------------------------------------


def test_adam_float32_moves_28_bytes_per_parameter():
    assert byte_model.bytes_per_parameter("Adam", {}, 4) == 28
    assert byte_model.bytes_per_parameter("Adam", {"learning_rate": 0.1}, "float32") == 28
    assert byte_model.describe("Adam") == "update: read g p m v; write p m v"


def test_every_optimizer_has_a_byte_model():
    assert set(byte_model.BASE) == set(MODULES)
    for name in MODULES:
        arrays = byte_model.arrays_per_parameter(name)
        assert 3 <= arrays <= 8, name
        assert byte_model.bytes_per_parameter(name, {}, 4) == 4 * arrays


@pytest.mark.parametrize("itemsize", [2, 4, 8, "float16", "bfloat16", "float64"])
def test_bytes_scale_with_itemsize(itemsize):
    size = itemsize if isinstance(itemsize, int) else {"float16": 2, "bfloat16": 2}.get(itemsize, 8)
    for name in MODULES:
        assert byte_model.bytes_per_parameter(name, {}, itemsize) == (
            byte_model.arrays_per_parameter(name) * size
        )


@pytest.mark.parametrize(
    ("name", "config", "features", "kwargs", "arrays"),
    [
        ("SGD", {}, (), {}, 3),
        ("SGD", {"momentum": 0.9}, (), {}, 5),
        ("SGD", {"momentum": 0.9, "nesterov": True}, (), {}, 5),
        ("SGD", {}, (), {"keras_slots": True}, 5),
        ("Adam", {"amsgrad": True}, (), {}, 9),
        ("AdamW", {"weight_decay": 0.1}, (), {}, 7),
        ("Lion", {}, (), {}, 5),
        ("Ftrl", {}, (), {}, 7),
        ("RMSprop", {}, (), {}, 5),
        ("RMSprop", {"centered": True, "momentum": 0.9}, (), {}, 9),
        ("Adafactor", {}, (), {}, 6),
        ("Adafactor", {}, (), {"rank": 1}, 8),
        ("Adafactor", {}, (), {"keras_slots": True}, 7),
        ("Adam", {"use_ema": True}, (), {}, 9),
        ("Adam", {}, ("ema",), {}, 9),
        ("Adam", {"use_ema": True}, ("ema",), {}, 9),  # counted once
        ("Adam", {"global_clipnorm": 1.0}, (), {}, 8),
        ("Adam", {}, ("global_clipnorm", "ema"), {}, 10),
        ("Adam", {"clipnorm": 1.0}, (), {}, 8),
        ("Adam", {"clipvalue": 1.0}, ("plain",), {}, 7),
    ],
)
def test_byte_model_counts(name, config, features, kwargs, arrays):
    assert byte_model.arrays_per_parameter(name, config, features, **kwargs) == arrays


def test_byte_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="No byte model"):
        byte_model.bytes_per_parameter("Adagrad2", {}, 4)
    with pytest.raises(ValueError, match="Unknown features"):
        byte_model.bytes_per_parameter("Adam", {}, 4, ("fused",))


# --- roof, layouts and grid ---------------------------------------------------------------


def test_roof_is_a_positive_finite_bandwidth():
    roof = harness.measure_roof("cpu", **SMALL_ROOF)
    assert roof.method == "numpy" and set(roof.by_method) == {"numpy"}
    assert math.isfinite(roof.gbps) and roof.gbps > 0.1
    assert roof.n == 1 << 20 and roof.device_name


def test_every_installed_roof_method_runs():
    roof = harness.measure_roof("cpu", n=1 << 18, repeats=2)
    assert "numpy" in roof.by_method and "torch-triad" not in roof.by_method
    assert all(math.isfinite(v) and v > 0 for v in roof.by_method.values())
    assert roof.gbps == max(roof.by_method.values())
    assert (roof.triad_gbps is None) == (importlib.util.find_spec("torch") is None)
    kernel, nbytes = harness.roof_kernel("cpu", roof.method, 1 << 10)
    kernel()
    assert nbytes in (12 << 10, 14 << 10)  # a += b, or the 4-read/3-write kernel on n/2


@pytest.mark.parametrize("n", [10**3, 10**7, 3 * 10**7, 997, 12])
@pytest.mark.parametrize("tensors", [1, 10, 1000])
def test_layouts_split_n_into_2d_tensors(n, tensors):
    if tensors > n:
        with pytest.raises(ValueError):
            harness.split(n, tensors)
        return
    sizes = harness.split(n, tensors)
    assert sum(sizes) == n and len(sizes) == tensors and max(sizes) - min(sizes) <= 1
    case = harness.Case("numpy", "Adafactor", n=n, tensors=tensors)
    shapes = case.shapes
    assert [r * c for r, c in shapes] == sizes
    assert all(len(s) == 2 and s[0] <= s[1] for s in shapes)


def test_near_square_shapes():
    assert harness.near_square(10**7) == (3125, 3200)
    assert harness.near_square(10**3) == (25, 40)
    assert harness.near_square(997) == (1, 997)  # prime


def test_grids():
    for name in ("smoke", "default", "report", "full"):
        cases = harness.grid(name)
        assert len({c.id for c in cases}) == len(cases), name
        assert all(c.tensors <= c.n for c in cases)
        assert all(c.class_name == "Adam" for c in cases if c.implementation in harness.PEERS)
        assert all(c.device == "cpu" for c in cases if c.implementation == harness.GOLDEN)
        assert all(("large" in c.marks) == (c.n >= harness.LARGE) for c in cases)
        assert all(("gpu" in c.marks) == (c.device == "gpu") for c in cases)
    default = harness.grid("default")
    assert max(c.n for c in default if c.implementation == "numpy") == harness.GOLDEN_MAX_N
    assert {c.optimizer for c in default if c.implementation == "jax"} == set(harness.OPTIMIZERS)
    # What the targets need: Adam at 1e3 and 1e7, in 1 and 1000 tensors, for ours and torch.
    have = {(c.implementation, c.optimizer, c.feature, c.n, c.tensors, c.device) for c in default}
    for impl in ("jax", "tf", "torch-fused"):
        for n, t in [(10**3, 1), (10**7, 1), (10**7, 1000)]:
            assert (impl, "Adam", "plain", n, t, "cpu") in have
    assert len(harness.grid("full")) > 3 * len(default)
    # What the report draws: every optimizer against N, Adam's layouts and features.
    report = {(c.implementation, c.optimizer, c.feature, c.n, c.tensors)
              for c in harness.grid("report") if c.device == "cpu"}  # fmt: skip
    for opt in harness.OPTIMIZERS:
        assert {n for i, o, f, n, t in report if (i, o, f, t) == ("numpy", opt, "plain", 1)} == {
            10**3, 10**4, 10**5, 10**6}, opt
    for t in (1, 10, 100, 1000):
        assert ("torch-fused", "Adam", "plain", 10**5, t) in report
    assert {f for i, o, f, n, t in report if (i, o) == ("jax", "Adam")} == {"plain", "ema",
                                                                           "clipnorm"}


def test_case_ids_select_with_k_words():
    case = harness.Case("jax", "Adam", "ema", 10**7, 100, "gpu")
    assert case.id == "jax-Adam-ema-N1e7-T100-gpu"
    assert case.spec == {"class_name": "Adam", "config": {"use_ema": True}}
    assert case.bytes_per_param == 36
    assert harness.label(3 * 10**7) == "3e7" and harness.label(1234) == "1234"


# --- one case through the suite's code path ----------------------------------------------


def _check_record(entry, case):
    info, stats = entry["extra_info"], entry["stats"]
    assert entry["name"] == f"test_step[{case.id}]"
    assert (info["implementation"], info["optimizer"], info["feature"]) == (
        case.implementation,
        case.optimizer,
        case.feature,
    )
    assert (info["N"], info["layout"], info["dtype"], info["device"]) == (
        case.n,
        case.tensors,
        "float32",
        "cpu",
    )
    assert info["bytes_per_param"] == case.bytes_per_param
    assert info["bytes_per_step"] == case.bytes_per_param * case.n
    assert stats["rounds"] >= 5 and stats["iterations"] >= 1
    assert 0 < stats["min"] <= stats["median"] == info["step_s_median"]
    assert info["step_s"] == stats["min"]
    assert info["gbps"] == pytest.approx(info["bytes_per_step"] / stats["min"] / 1e9)
    assert info["roof_fraction"] == pytest.approx(info["gbps"] / info["roof_gbps"])
    assert 0 < info["roof_fraction"] < 10  # a step is no faster than memory allows
    assert info["compile_s"] > 0 and info["init_s"] >= 0
    assert info["versions"]["numpy"] and info["device_name"]
    assert info["mapping"]
    json.dumps(entry)  # the record is what pytest-benchmark writes to JSON


@pytest.mark.parametrize(
    "case",
    [
        harness.Case("numpy", "Adam", "plain", 10**3, 1),
        harness.Case("numpy", "Adafactor", "ema", 10**3, 10),
        harness.Case("numpy", "SGD", "clipnorm", 10**3, 1),
    ],
    ids=lambda c: c.id,
)
def test_golden_case_record(case):
    roofs = harness.RoofCache(**SMALL_ROOF)
    _check_record(harness.run_case(case, roofs, budget_s=0.02), case)


def test_golden_case_steps_the_variables(monkeypatch):
    """The timed step really applies the golden optimizer (the variables move)."""
    seen = {}
    original = harness._golden

    def spy(case, params, grads):
        step, mapping = original(case, params, grads)
        from optcheck.reference import Variable

        cells = [c.cell_contents for c in step.__closure__ or ()]
        pairs = next(c for c in cells if isinstance(c, list))
        seen["vars"] = [v for _, v in pairs if isinstance(v, Variable)]
        seen["before"] = [v.numpy().copy() for v in seen["vars"]]
        return step, mapping

    monkeypatch.setitem(harness.BUILDERS, "numpy", spy)
    built = harness.build(harness.Case("numpy", "Adam", n=10**3, tensors=10))
    steps_so_far = [v.numpy() for v in seen["vars"]]
    assert all((a != b).any() for a, b in zip(steps_so_far, seen["before"], strict=True))
    assert built.compile_s > 0 and built.estimate_s > 0


@pytest.mark.parametrize("implementation", ["optax", "torch-fused"])
def test_peer_case_record_when_installed(implementation):
    module = "optax" if implementation == "optax" else "torch"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    case = harness.Case(implementation, "Adam", "ema", 10**3, 1)
    roofs = harness.RoofCache(**SMALL_ROOF)
    _check_record(harness.run_case(case, roofs, budget_s=0.02), case)


@pytest.mark.parametrize("implementation", ["jax", "tf"])
def test_floor_record(implementation):
    module = "jax" if implementation == "jax" else "tensorflow"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    if implementation == "tf":
        # Split the host CPU before this test starts TensorFlow, as the tf adapters do:
        # MirroredStrategy tests later in the session need the logical devices.
        from optcheck.adapters.tf_xla import ensure_host_devices

        ensure_host_devices()
    case = harness.Case(implementation, "SGD", n=10**3, tensors=10)
    built = harness.build(case, harness.FLOOR_BUILDERS)
    info = harness.floor_record(case, built, {"min": 1e-3, "median": 2e-3})
    assert info["kind"] == "floor" and info["floor_of"] == implementation
    assert info["layout"] == 10 and "step_s" not in info and "0.001*g" in info["mapping"]


def test_unmapped_peer_is_unavailable():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    with pytest.raises(harness.Unavailable, match="Adam only"):
        harness.build(harness.Case("torch-fused", "Lion"))


# --- targets ------------------------------------------------------------------------------


def _entry(impl, seconds, optimizer="Adam", n=10**7, layout=1, roof=40.0, device="cpu"):
    bpp = byte_model.bytes_per_parameter(optimizer, {}, 4)
    return {
        "name": f"test_step[{impl}-{optimizer}-plain-N{n}-T{layout}-{device}]",
        "extra_info": {
            "implementation": impl,
            "optimizer": optimizer,
            "feature": "plain",
            "N": n,
            "layout": layout,
            "device": device,
            "bytes_per_param": bpp,
            "bytes_per_step": bpp * n,
            "roof_gbps": roof,
            "compile_s": 0.5,
        },
        "stats": {"min": seconds, "median": seconds * 1.1, "mean": seconds * 1.2},
    }


def _passing():
    t = 28 * 10**7 / 40e9 / 0.95  # 95 % of a 40 GB/s roof
    return [
        _entry("torch-fused", t * 1.05),
        _entry("jax", t),
        _entry("tf", t * 1.01),
        _entry("jax", t * 1.2, layout=1000),
        _entry("tf", t * 1.4, layout=1000),
        _entry("jax", t * 12 / 28, "SGD"),
        _entry("tf", t * 20 / 28 * 1.1, "Lion"),
        _entry("jax", 15e-6, n=10**3),
        _entry("tf", 140e-6, n=10**3),
        # Ignored: another device, a slower duplicate, the roof record.
        _entry("jax", t * 5, device="gpu"),
        _entry("jax", t * 3),
        {"extra_info": {"kind": "roof", "roof_gbps": 40.0}, "stats": {"min": 1.0}},
    ]


def _write(tmp_path, entries):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"benchmarks": entries}))
    return path


def _statuses(rows):
    return {(r.target, r.implementation): r.status for r in rows}


def test_targets_pass(tmp_path, capsys):
    rows = targets.evaluate(_passing())
    statuses = _statuses(rows)
    assert set(statuses.values()) == {"pass"}, rows
    assert statuses[("vs torch fused", "jax")] == "pass"
    assert statuses[("byte ratio", "tf Lion")] == "pass"
    assert targets.main([str(_write(tmp_path, _passing()))]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "0.95x" in out and "95%" in out


def test_targets_fail(tmp_path, capsys):
    entries = _passing()
    entries[1] = _entry("jax", 28 * 10**7 / 40e9 / 0.5)  # half the roof, slower than torch
    entries[5] = _entry("jax", entries[1]["stats"]["min"] * 0.9, "SGD")  # SGD not faster
    entries[7] = _entry("jax", 25e-6, n=10**3)
    statuses = _statuses(targets.evaluate(entries))
    assert statuses[("vs torch fused", "jax")] == "FAIL"
    assert statuses[("roof fraction", "jax")] == "FAIL"
    assert statuses[("byte ratio", "jax SGD")] == "FAIL"
    assert statuses[("overhead N=1e3", "jax")] == "FAIL"
    assert statuses[("1000 tensors", "jax")] == "pass"  # 1.2·t / (t/0.5·0.95) is small
    assert statuses[("vs torch fused", "tf")] == "pass"
    assert targets.main([str(_write(tmp_path, entries))]) == 1
    assert "FAIL" in capsys.readouterr().out


def _paired(name, entries, floors=()):
    return {"name": f"test_paired[{name}]", "extra_info": {"kind": "paired", "group": name,
            "records": entries, "floors": list(floors)}, "stats": {"min": 1.0}}  # fmt: skip


def _blocks(entry, times):
    entry["extra_info"]["block_min_s"] = times
    entry["stats"]["min"] = min(times)
    return entry


def _floor(impl, layout, times):
    return {"extra_info": {"kind": "floor", "floor_of": impl, "N": 10**7, "layout": layout,
                           "device": "cpu", "block_min_s": times}}  # fmt: skip


def test_targets_add_the_layout_floor():
    entries = _passing()
    one = [1.0, 2.0, 1.0]  # the machine's slow spell in the second block
    entries.append(_paired(
        "layout-jax",
        [_blocks(_entry("jax", 0, layout=1000), [1.4, 2.8, 1.4]), _blocks(_entry("jax", 0), one)],
        [_floor("jax", 1, [0.2, 0.4, 0.2]), _floor("jax", 1000, [1.0, 2.0, 0.6])],
    ))  # fmt: skip
    rows = {(r.target, r.implementation): r for r in targets.evaluate(entries)}
    row = rows[("1000 tensors", "jax")]
    assert row.measured == "1.40x" and "interleaved (layout-jax)" in row.detail
    # Per block 1 + (1.0 - 0.2) / 1, 1 + 1.6 / 2, 1 + 0.4 / 1: the median is 1.8.
    assert "least reachable over the floor p-c*g: 1.80x" in row.detail, row.detail
    assert row.status == "pass"  # the floor informs, never decides
    assert "floor" not in rows[("1000 tensors", "tf")].detail  # no floors for tf
    # Floors are not steps: no target reads them as SGD times.
    assert targets.Index(entries).time("jax", "SGD") == targets.Index(_passing()).time("jax", "SGD")


def test_targets_take_ratios_from_interleaved_groups():
    entries = _passing()
    t = entries[0]["stats"]["min"]  # torch fused, timed apart
    # Interleaved, torch was faster than it was alone and jax slower than alone.
    # Per block the ratios are 1.25, 1.125 and 0.5 (jax caught a fast spell torch did
    # not): the median, 1.125, not the ratio of the best blocks, 0.5 / 0.8.
    entries.append(_paired("vs-torch", [
        _blocks(_entry("torch-fused", 0), [0.8 * t, 0.8 * t, 1.0 * t]),
        _blocks(_entry("jax", 0), [1.0 * t, 0.9 * t, 0.5 * t]),
    ]))  # fmt: skip
    rows = {(r.target, r.implementation): r for r in targets.evaluate(entries)}
    jax_row = rows[("vs torch fused", "jax")]
    assert jax_row.measured == "1.12x" and jax_row.status == "FAIL", jax_row
    assert "median of 3 block ratios, interleaved (vs-torch)" in jax_row.detail
    # The roof fraction pairs each block's step with that block's roof: fractions
    # 0.9, 0.95 and 0.5 by construction, whose median is 0.9.
    jax = entries[-1]["extra_info"]["records"][1]["extra_info"]
    jax["roof_block_gbps"] = [jax["bytes_per_step"] / x / 1e9 / f
                              for x, f in zip(jax["block_min_s"], (0.9, 0.95, 0.5), strict=True)]
    rows = {(r.target, r.implementation): r for r in targets.evaluate(entries)}
    assert rows[("roof fraction", "jax")].measured == "90%", rows[("roof fraction", "jax")]
    assert "median of 3 blocks' fractions" in rows[("roof fraction", "jax")].detail
    # tf is not in the group: its ratio still compares the cases timed apart.
    assert "timed apart" in rows[("vs torch fused", "tf")].detail
    # A group's records count as steps too (the best of all runs for the information).
    assert targets.Index(entries).time("torch-fused") == 0.8 * t


def test_paired_group_interleaves_its_cases():
    cases = [harness.Case("numpy", "Adam"), harness.Case("numpy", "SGD"),
             harness.Case("numpy", "Adam", device="gpu")]  # fmt: skip
    bench = harness.PlainBenchmark()
    info = harness.bench_paired("g", harness.Group(cases), bench, None, budget_s=0.02, blocks=3)
    assert info["kind"] == "paired" and list(info["skipped"]) == [cases[2].id]
    assert bench.stats.stats.rounds == 3  # one pytest-benchmark round per block
    for sub, case in zip(info["records"], cases, strict=False):
        extra = sub["extra_info"]
        assert extra["timing"] == "interleaved" and extra["optimizer"] == case.optimizer
        assert len(extra["block_min_s"]) == 3
        assert sub["stats"]["min"] == min(extra["block_min_s"]) == extra["step_s"]
    # With a session roof, its kernels are timed in the same blocks over the cases'
    # working set, and that roof is the records' roof.
    roofs = harness.RoofCache(**SMALL_ROOF)
    info = harness.bench_paired("g", harness.Group(cases[:2]), harness.PlainBenchmark(), roofs,
                                budget_s=0.02, blocks=2)  # fmt: skip
    extra = info["records"][0]["extra_info"]
    assert set(extra["roof_by_method"]) == set(roofs.get("cpu").by_method)
    assert extra["roof_gbps"] == max(extra["roof_by_method"].values()) > 0
    assert extra["roof_method"].endswith(", interleaved")
    assert extra["roof_fraction"] == extra["gbps"] / extra["roof_gbps"]
    assert len(extra["roof_block_gbps"]) == 2
    assert max(extra["roof_block_gbps"]) == extra["roof_gbps"]
    with pytest.raises(harness.Unavailable, match="fewer than two"):
        harness.bench_paired("g", harness.Group(cases[1:]), harness.PlainBenchmark(), None,
                             budget_s=0.02)  # fmt: skip


def test_paired_group_times_its_floors_in_the_same_blocks():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    floors = [harness.Case("jax", "SGD", n=10**3, tensors=t) for t in (1, 10)]
    group = harness.Group([harness.Case("numpy", "Adam"), harness.Case("numpy", "SGD")], floors)
    info = harness.bench_paired("g", group, harness.PlainBenchmark(), None, budget_s=0.02,
                                blocks=2)  # fmt: skip
    assert [f["extra_info"]["layout"] for f in info["floors"]] == [1, 10]
    for f in info["floors"]:
        assert f["extra_info"]["kind"] == "floor" and len(f["extra_info"]["block_min_s"]) == 2
    assert len(info["records"]) == 2  # the floors are not step records


def test_targets_without_data(tmp_path):
    rows = targets.evaluate([])
    assert rows and {r.status for r in rows} == {"no data"}
    assert targets.main([str(_write(tmp_path, []))]) == 0
    # Byte ratios need a bandwidth-bound N: 1e3 alone is no data, not a failure.
    small = [_entry("jax", 30e-6, n=10**3), _entry("jax", 10e-6, "SGD", n=10**3)]
    assert _statuses(targets.evaluate(small))[("byte ratio", "jax SGD")] == "no data"


@pytest.mark.parametrize("how", ["module", "script"])
def test_targets_command_line(tmp_path, how):
    path = _write(tmp_path, _passing()[:3])
    args = ["-m", "benchmarks.targets"] if how == "module" else ["benchmarks/targets.py"]
    done = subprocess.run(
        [sys.executable, *args, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "vs torch fused" in done.stdout and "no data" in done.stdout


def test_cases_count_the_state_of_the_semantics_they_run():
    """The benchmarks run the keras2 profile, whose SGD keeps a momentum slot at μ = 0
    and whose Adafactor keeps a full-size v: both are state the step must write."""
    assert harness.PROFILE == "keras2" and harness.KERAS_SLOTS
    assert harness.Case("numpy", "SGD", "plain", 10**3, 1).bytes_per_param == 4 * 5
    assert harness.Case("numpy", "Adafactor", "plain", 10**3, 1).bytes_per_param == 4 * 7
    assert harness.Case("numpy", "Adam", "plain", 10**3, 1).bytes_per_param == 4 * 7
