"""Build a mutant of the reference package and drive it as an adapter.

:func:`build_package` copies the ``optcheck.reference`` package directory (found from
``optcheck.reference.__file__``) into a per-process temporary directory under the
package name ``optcheck_mutant_<id>``, applies the mutant's edits (each snippet must
occur exactly once: :class:`~tests.mutants.catalogue.PatchError` otherwise) and imports
the copy without touching ``sys.path`` (the reference's internal imports are all
relative). :func:`mutant_adapter` wraps it as
``ReferenceAdapter(package=module, name="mutant:<id>")``.

Packages and adapters are cached per process; the temporary directory is removed at
interpreter exit (or by :func:`cleanup`).
"""

from __future__ import annotations

import atexit
import importlib.util
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import optcheck.reference
from optcheck.adapters.numpy_reference import ReferenceAdapter

from .catalogue import BY_ID, Mutant, PatchError

SOURCE = Path(optcheck.reference.__file__).resolve().parent

_root: Path | None = None
_packages: dict[str, ModuleType] = {}
_adapters: dict[str, ReferenceAdapter] = {}


def package_name(mutant: Mutant) -> str:
    return "optcheck_mutant_" + re.sub(r"\W", "_", mutant.id)


def _tmp_root() -> Path:
    global _root
    if _root is None or not _root.exists():
        _root = Path(tempfile.mkdtemp(prefix="optcheck-mutants-"))
        atexit.register(cleanup)
    return _root


def patched_source(mutant: Mutant) -> str:
    """The mutated text of ``mutant.path`` (raises PatchError if a snippet is not unique)."""
    target = SOURCE / mutant.path
    if not target.is_file():
        raise PatchError(f"mutant {mutant.id}: no file {mutant.path} in {SOURCE}")
    return mutant.apply(target.read_text(encoding="utf-8"))


def build_package(mutant: Mutant | str) -> ModuleType:
    """The mutated copy of the reference, imported as ``optcheck_mutant_<id>``."""
    mutant = BY_ID[mutant] if isinstance(mutant, str) else mutant
    if mutant.id in _packages:
        return _packages[mutant.id]
    name = package_name(mutant)
    text = patched_source(mutant)
    directory = _tmp_root() / name
    if directory.exists():
        shutil.rmtree(directory)
    shutil.copytree(SOURCE, directory, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (directory / mutant.path).write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
        raise
    _packages[mutant.id] = module
    return module


def mutant_adapter(mutant: Mutant | str) -> ReferenceAdapter:
    """The mutant as an adapter named ``mutant:<id>`` (cached per process)."""
    mutant = BY_ID[mutant] if isinstance(mutant, str) else mutant
    if mutant.id not in _adapters:
        _adapters[mutant.id] = ReferenceAdapter(
            package=build_package(mutant), name=f"mutant:{mutant.id}"
        )
    return _adapters[mutant.id]


def cleanup() -> None:
    """Forget the built mutants and remove their temporary directory."""
    global _root
    for mutant_id in list(_packages):
        name = package_name(BY_ID[mutant_id])
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    _packages.clear()
    _adapters.clear()
    if _root is not None:
        shutil.rmtree(_root, ignore_errors=True)
        _root = None
