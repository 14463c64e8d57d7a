"""The ``numpy`` adapter: the golden reference itself, run through the runner interface."""

from __future__ import annotations

import numpy as np

NAME = "numpy"


def version() -> str:
    from optcheck import __version__

    return f"optcheck.reference {__version__}, numpy {np.__version__}"


def runner(spec, initial_values, steps, profile, options):
    """Run ``spec`` on the reference; the variables after each step."""
    from optcheck.reference.run import run

    records = run(
        spec,
        initial_values,
        steps,
        profile=profile,
        names=options.get("names"),
        exclude_names=options.get("exclude_names"),
        exclude_indices=options.get("exclude_indices"),
    )
    return [record.variables for record in records]
