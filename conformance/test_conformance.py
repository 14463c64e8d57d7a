"""The conformance suite as pytest tests (collected by ``pytest --pyargs optcheck.conformance``).

Each case of the run (see :mod:`optcheck.conformance.plugin` for the options) is one
parametrization of :func:`test_conformance`; without ``--optcheck-adapter`` the test
skips.
"""

from optcheck.conformance.plugin import run


def test_conformance(optcheck_case, request):
    __tracebackhide__ = True
    run(optcheck_case, request.config, request.node.user_properties)
