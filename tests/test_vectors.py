"""Golden test vectors: ``optcheck vectors export`` and ``optcheck vectors check``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from optcheck.adapters.numpy_reference import ReferenceAdapter, ReferenceSession
from optcheck.cli import main
from optcheck.conformance import diagnosis, engine, vectors
from optcheck.conformance.tolerance import Policy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "vectors"
HERE = "tests.test_vectors"
VARIANTS = {v.name: v for v in diagnosis.VARIANTS}


# -- adapters for the tests (import strings tests.test_vectors:NAME) ---------------------
def adam_epsilon_corrected():
    """ε added to √v̂ (torch.optim.Adam's placement): a wrong Keras Adam/AdamW."""
    return ReferenceAdapter(variant=VARIANTS["adam_epsilon=corrected"])


class RaisingOnAdam(ReferenceAdapter):
    def open(self, scenario):
        if scenario.optimizer == "Adam":
            raise RuntimeError("this adapter cannot open Adam")
        return super().open(scenario)


class _Crashing(ReferenceSession):
    def step(self, gradients, skip_gradients_aggregation=False):
        os._exit(3)


class _Hanging(ReferenceSession):
    def step(self, gradients, skip_gradients_aggregation=False):
        import time

        time.sleep(60)


class MisbehavingOnAdam(ReferenceAdapter):
    """Adam: the interpreter dies (float32) or the step hangs (float64)."""

    def open(self, scenario):
        if scenario.optimizer == "Adam":
            cls = _Crashing if scenario.dtype == "float32" else _Hanging
            return cls(self._package, scenario)
        return super().open(scenario)


@pytest.fixture
def on_path(monkeypatch):
    """Worker processes import the test adapters from the repository root."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                               "")]))  # fmt: skip


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A fresh export with the default options."""
    out = tmp_path_factory.mktemp("vectors") / "vectors"
    assert main(["vectors", "export", "--out", str(out)]) == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _copy(tmp_path, selection=None) -> Path:
    """A writable copy of the sample (or a small fresh export of ``selection``)."""
    out = tmp_path / "v"
    if selection is None:
        shutil.copytree(SAMPLE, out)
    else:
        assert main(["vectors", "export", "--out", str(out), *selection]) == 0
    return out


def _check(capsys, *argv) -> tuple[int, str, str]:
    status = main(["vectors", "check", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# -- the export ------------------------------------------------------------------------
def test_a_fresh_export_is_identical_to_the_committed_sample(fresh):
    committed, new = _files(SAMPLE), _files(fresh)
    assert sorted(new) == sorted(committed), "regenerate: optcheck vectors export --out vectors"
    changed = [path for path in sorted(new) if new[path] != committed[path]]
    assert not changed, (
        f"{len(changed)} files differ from the committed vectors/ (e.g. {changed[:3]}): the "
        "golden, the tolerance policy, optcheck's version or NumPy's elementary functions "
        "changed. Review, then regenerate: optcheck vectors export --out vectors"
    )


def test_the_sample_covers_every_optimizer_profile_dtype_and_feature():
    index = json.loads((SAMPLE / "index.json").read_text())
    cases = index["cases"]
    from optcheck.conformance.registry import OPTIMIZERS

    assert {c["optimizer"] for c in cases} == set(OPTIMIZERS)
    assert {c["profile"] for c in cases} == {"keras2", "keras3"}
    assert {c["dtype"] for c in cases} == {"float16", "bfloat16", "float32", "float64"}
    assert {c["feature"] for c in cases} >= {"plain", "config", "clipnorm", "clipvalue",
                                            "global_clipnorm", "ema", "weight_decay", "schedule"}
    assert len(cases) == len({c["id"] for c in cases}) == 264
    size = sum(len(b) for b in _files(SAMPLE).values())
    assert size < 3_000_000, f"the sample grew to {size} bytes"
    # Adafactor factors the 2-D variable; nan_ok masks exist where FTZ can give NaN.
    adafactor = json.loads((SAMPLE / "cases/keras2-Adafactor-plain-float32.json").read_text())
    slots = {(q["variable"], q["slot"]) for q in adafactor["expected"]["quantities"]}
    assert {("kernel", "r"), ("kernel", "c"), ("kernel", "v"), ("bias", "v")} <= slots
    assert any('"nan_ok": "nan_ok/' in p.read_text() for p in SAMPLE.glob("cases/*.json"))


def test_checksums_in_the_index_and_sha256sums(fresh):
    index = json.loads((fresh / "index.json").read_text())
    listed = {f["path"]: f["sha256"] for f in index["files"]}
    listed |= {c[k]["path"]: c[k]["sha256"] for c in index["cases"] for k in ("json", "npz")}
    files = _files(fresh)
    assert set(files) == set(listed) | {"index.json", "SHA256SUMS"}
    for path, digest in listed.items():
        assert hashlib.sha256(files[path]).hexdigest() == digest, path
    sums = dict(reversed(line.split("  ")) for line in files["SHA256SUMS"].decode().splitlines())
    assert set(sums) == set(files) - {"SHA256SUMS"}
    assert all(hashlib.sha256(files[p]).hexdigest() == d for p, d in sums.items())


def test_npz_arrays_round_trip_with_numpy_and_bfloat16_is_stored_as_bits():
    doc = json.loads((SAMPLE / "cases/keras3-Adam-plain-bfloat16.json").read_text())
    case = vectors.load_case(SAMPLE, {"id": doc["id"],
                                      "json": {"path": f"cases/{doc['id']}.json"},
                                      "npz": {"path": f"cases/{doc['id']}.npz"}})  # fmt: skip
    with np.load(SAMPLE / "cases" / doc["npz"]) as npz:
        raw = npz["expected/variable/kernel"]
        assert raw.dtype == np.dtype("<u2") and raw.shape == (4, 2, 3)
        assert npz["tolerance/variable/kernel"].dtype == np.dtype("<f8")
        assert npz["expected/iterations"].tolist() == [1, 2, 3, 4]
    value = case.arrays["expected/variable/kernel"]
    as_float32 = (raw.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(value.astype(np.float32), as_float32, equal_nan=True)
    assert doc["arrays"]["expected/variable/kernel"] == {"dtype": "bfloat16", "storage": "uint16",
                                                         "shape": [4, 2, 3]}  # fmt: skip
    scenario = case.scenario()
    assert scenario.names == ["kernel", "bias"] and len(scenario.steps) == 4
    assert scenario.steps[0][0].dtype == value.dtype


def test_index_and_case_files_validate_against_the_schema(fresh, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((fresh / "schema.json").read_text())
    assert schema == json.loads(vectors.dumps(vectors.JSON_SCHEMA))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    index = json.loads((fresh / "index.json").read_text())
    validator.validate(index)
    part = {**schema, "$ref": "#/$defs/case"}
    part.pop("oneOf")
    case_validator = jsonschema.Draft202012Validator(part)
    for entry in index["cases"]:
        case_validator.validate(json.loads((fresh / entry["json"]["path"]).read_text()))
    # With --json-values every array carries its exact values.
    small = tmp_path / "small"
    assert main(["vectors", "export", "--out", str(small), "--optimizer", "Adam", "--profile",
                 "keras2", "--json-values"]) == 0  # fmt: skip
    doc = json.loads((small / "cases/keras2-Adam-plain-float16.json").read_text())
    validator.validate(doc)
    case = vectors.load_case(small, json.loads((small / "index.json").read_text())["cases"][0])
    for key, meta in case.doc["arrays"].items():
        decoded = np.array([vectors._NON_FINITE.get(v, v) if isinstance(v, str) else v
                            for v in meta["values"]])  # fmt: skip
        exact = case.arrays[key].astype(decoded.dtype).ravel()
        assert np.array_equal(decoded, exact, equal_nan=True), key


def test_export_replaces_its_own_files_and_refuses_a_foreign_folder(tmp_path, capsys):
    out = _copy(tmp_path, ["--optimizer", "SGD", "Lion", "--profile", "keras2"])
    (out / "notes.txt").write_text("mine")
    assert main(["vectors", "export", "--out", str(out), "--optimizer", "Adam", "--profile",
                 "keras3"]) == 0  # fmt: skip
    names = {p.name for p in (out / "cases").iterdir()}
    assert names and all(n.startswith("keras3-Adam-") for n in names)
    assert (out / "notes.txt").read_text() == "mine"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1,2\n")
    capsys.readouterr()
    assert main(["vectors", "export", "--out", str(foreign)]) == 2
    assert f"{foreign} is not empty" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["data.csv"]


# -- integrity errors (exit 2, naming the file) ------------------------------------------
def test_a_tampered_byte_exits_2_naming_the_file(tmp_path, capsys):
    out = _copy(tmp_path)
    target = out / "cases" / "keras2-RMSprop-config-float32.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    status, _, err = _check(capsys, "--adapter", "numpy", out)
    assert status == 2
    assert "checksum mismatch" in err and str(target) in err


def test_a_missing_file_or_a_tampered_index_exits_2_naming_it(tmp_path, capsys):
    out = _copy(tmp_path)
    gone = out / "cases" / "keras3-Lion-ema-float32.json"
    gone.unlink()
    status, _, err = _check(capsys, "--adapter", "numpy", out)
    assert status == 2 and "missing file" in err and str(gone) in err
    index = out / "index.json"
    index.write_text(index.read_text().replace('"optcheck 0.', '"optcheck 9.'))
    status, _, err = _check(capsys, "--adapter", "numpy", out)
    assert status == 2 and "checksum mismatch" in err and str(index) in err


def _rechecksum(folder: Path) -> None:
    """Recompute index.json's and SHA256SUMS's digests (a consistent but edited folder)."""
    index = json.loads((folder / "index.json").read_text())
    for entry in [*index["files"], *(c[k] for c in index["cases"] for k in ("json", "npz"))]:
        entry["sha256"] = hashlib.sha256((folder / entry["path"]).read_bytes()).hexdigest()
    (folder / "index.json").write_text(vectors.dumps(index))
    (folder / "SHA256SUMS").unlink(missing_ok=True)


def test_a_malformed_case_exits_2_naming_it(tmp_path, capsys):
    out = _copy(tmp_path, ["--optimizer", "SGD", "--profile", "keras2"])
    path = out / "cases" / "keras2-SGD-clipnorm-float32.json"
    doc = json.loads(path.read_text())
    doc["arrays"]["expected/variable/kernel"]["shape"] = [4, 3, 2]
    path.write_text(vectors.dumps(doc))
    _rechecksum(out)
    status, _, err = _check(capsys, "--adapter", "numpy", out)
    assert status == 2 and f"malformed {out / 'cases' / 'keras2-SGD-clipnorm-float32.npz'}" in err
    path.write_text("{not json")
    _rechecksum(out)
    status, _, err = _check(capsys, "--adapter", "numpy", out)
    assert status == 2 and f"malformed {path}" in err


def test_usage_errors_exit_2_naming_the_culprit(tmp_path, capsys):
    status, _, err = _check(capsys, "--adapter", "numpy", tmp_path / "nowhere")
    assert status == 2 and "no such vectors folder" in err and "nowhere" in err
    status, _, err = _check(capsys, "--adapter", "no-such-adapter", SAMPLE)
    assert status == 2 and "unknown adapter 'no-such-adapter'" in err
    status, _, err = _check(capsys, "--adapter", "no_such_module:factory", SAMPLE)
    assert status == 2 and "no_such_module" in err
    status, _, err = _check(capsys, "--adapter", "numpy", SAMPLE, "--optimizer", "Adamm")
    assert status == 2 and "Adamm" in err
    status, _, err = _check(capsys, "--adapter", "numpy", tmp_path)
    assert status == 2 and "index.json" in err
    status, _, err = _check(capsys, "--adapter", "numpy", SAMPLE, "--feature", "sparse")
    assert status == 2 and "no case" in err


# -- checking adapters -------------------------------------------------------------------
def test_the_numpy_adapter_passes_every_case(tmp_path, capsys):
    result = tmp_path / "result.json"
    status, out, _ = _check(capsys, "--adapter", "numpy", SAMPLE, "--out", result)
    assert status == 0, out
    report = json.loads(result.read_text())
    assert report["schema"] == "optcheck.vectors-check/1" and report["adapter"] == "numpy"
    assert report["summary"]["cases"] == report["summary"]["pass"] == 264
    assert "numpy: 264/264 cases pass, 0 deviation, 0 error, 0 unsupported" in out


def test_a_wrong_epsilon_placement_deviates_on_adam_cases_only(capsys):
    status, out, _ = _check(capsys, "--adapter", f"{HERE}:adam_epsilon_corrected", SAMPLE,
                            "--optimizer", "SGD", "Adam", "AdamW", "--in-process")  # fmt: skip
    assert status == 1
    deviating = [line for line in out.splitlines() if line.startswith("deviation: ")]
    assert len(deviating) >= 12
    assert all("-Adam-" in line or "-AdamW-" in line for line in deviating)
    # The message names the step, the quantity, the element and the tolerance.
    assert any("deviation: keras2-Adam-config-float32: step 1, variable kernel[" in line
               and "tolerance" in line for line in deviating)  # fmt: skip
    assert ", 0 error, 0 unsupported" in out.splitlines()[-1]


def test_vectors_verdicts_agree_with_the_engine_in_free_mode():
    """A case the engine passes in free mode passes the vectors, and a deviation is the
    same first divergence."""
    index = vectors.read_index(SAMPLE)
    entries = vectors.select(index, optimizers=["Adam", "Nadam", "Adafactor"],
                             profiles=["keras2"])  # fmt: skip
    candidates = [adam_epsilon_corrected(),
                  ReferenceAdapter(variant=VARIANTS["nadam_schedule_rate=0.004"])]
    verdicts = set()
    for entry in entries:
        case = vectors.load_case(SAMPLE, entry)
        for candidate in candidates:
            expected = engine.check(case.scenario(), candidate, Policy(mode="free"))
            found = vectors._run_steps(candidate, case)
            assert (found is None) == (expected is None), entry["id"]
            if found is not None:
                assert engine.divergence_dict(found) == engine.divergence_dict(expected)
            verdicts.add(found is None)
    assert verdicts == {True, False}


def test_the_documented_check_loop_reproduces_the_verdicts():
    """The check of docs/vectors.md, from the files alone (json + np.load), matches
    ``optcheck vectors check`` on a correct and a wrong implementation."""

    def documented(folder, entry, adapter) -> bool:
        doc = json.loads((folder / entry["json"]["path"]).read_text())
        npz = np.load(folder / "cases" / doc["npz"])

        def array(key):
            raw, dtype = npz[key], doc["arrays"][key]["dtype"]
            if dtype == "bfloat16":
                return (raw.astype(np.uint32) << 16).view(np.float32)
            return raw

        case = vectors.load_case(folder, entry)
        session = adapter.open(case.scenario())
        exp = doc["expected"]
        names = [v["name"] for v in doc["variables"]]
        for s in range(doc["steps"]):
            grads = [array(doc["inputs"]["gradients"][n])[s] for n in names]
            obs = session.step([g.astype(case.arrays[doc["inputs"]["gradients"][n]].dtype)
                                for g, n in zip(grads, names, strict=True)])  # fmt: skip
            if obs.iterations != array(exp["iterations"])[s]:
                return False
            lr, lr_tol = array(exp["learning_rate"])[s], array(exp["learning_rate_tolerance"])[s]
            if not np.isnan(lr) and not abs(obs.learning_rate - lr) <= lr_tol:
                return False
            for q in exp["quantities"]:
                i = names.index(q["variable"])
                actual = obs.variables[i] if q["slot"] is None else obs.slots[i][q["slot"]]
                a = np.asarray(actual, np.float64).ravel()
                e = np.asarray(array(q["expected"])[s], np.float64).ravel()
                t = array(q["tolerance"])[s].ravel()
                nan_ok = (array(q["nan_ok"])[s].ravel() if q["nan_ok"]
                          else np.zeros(a.shape, bool))  # fmt: skip
                for ai, ei, ti, oki in zip(a, e, t, nan_ok, strict=True):
                    if np.isnan(ei):
                        ok = bool(np.isnan(ai))
                    elif np.isnan(ai):
                        ok = bool(oki)
                    elif np.isinf(ai) or np.isinf(ei):
                        ok = ai == ei
                    else:
                        ok = abs(ai - ei) <= ti
                    if not ok:
                        return False
        return True

    index = vectors.read_index(SAMPLE)
    entries = vectors.select(index, optimizers=["Adam", "RMSprop"], profiles=["keras3"])
    entries += vectors.select(index, dtypes_=["float16"])  # nan_ok masks
    for adapter in (ReferenceAdapter(), adam_epsilon_corrected()):
        for entry in entries:
            result = vectors.run_case(adapter, SAMPLE, entry)
            assert documented(SAMPLE, entry, adapter) == (result["status"] == "pass"), entry["id"]


def test_an_adapter_that_raises_costs_only_its_cases(tmp_path, capsys, on_path):
    result = tmp_path / "r.json"
    status, _, _ = _check(capsys, "--adapter", f"{HERE}:RaisingOnAdam", SAMPLE, "--optimizer",
                            "SGD", "Adam", "--profile", "keras2", "--jobs", "1", "--out",
                            result)  # fmt: skip
    assert status == 1
    cases = json.loads(result.read_text())["cases"]
    by_status = {c["id"]: c["status"] for c in cases}
    assert {s for i, s in by_status.items() if "-Adam-" in i} == {"error"}
    assert {s for i, s in by_status.items() if "-SGD-" in i} == {"pass"}
    adam = next(c for c in cases if c["id"] == "keras2-Adam-plain-float32")
    assert "cannot open Adam" in adam["message"] and "Traceback" in adam["traceback"]


def test_a_crash_or_a_hang_costs_only_its_case(tmp_path, capsys, on_path):
    result = tmp_path / "r.json"
    status, _, _ = _check(capsys, "--adapter", f"{HERE}:MisbehavingOnAdam", SAMPLE,
                          "--optimizer", "SGD", "Adam", "--profile", "keras3", "--feature",
                          "plain", "--dtype", "float32", "float64", "--jobs", "2",
                          "--timeout", "3", "--out", result)  # fmt: skip
    assert status == 1
    cases = {c["id"]: c for c in json.loads(result.read_text())["cases"]}
    assert "worker process died (exit status 3)" in cases["keras3-Adam-plain-float32"]["message"]
    assert "timeout after 3s" in cases["keras3-Adam-plain-float64"]["message"]
    assert cases["keras3-SGD-plain-float32"]["status"] == "pass"
    assert cases["keras3-SGD-plain-float64"]["status"] == "pass"


def test_the_jax_adapter_passes_a_subset(capsys):
    pytest.importorskip("jax")
    status, out, _ = _check(capsys, "--adapter", "jax", SAMPLE, "--optimizer", "Adam",
                            "Adafactor", "--profile", "keras3", "--feature", "plain",
                            "config", "--jobs", "1")  # fmt: skip
    assert status == 0, out
    assert "jax: 12/12 cases pass" in out
