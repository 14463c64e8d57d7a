"""Mutants of the golden reference: the detection power of the conformance suite.

Each mutant (:mod:`.catalogue`) is a copy of ``optcheck.reference`` with one semantic
slip a real implementation could make; :mod:`.adapter` builds and imports the copy and
wraps it as an adapter; :mod:`.kill_matrix` runs the suite's ``ci`` cases against every
mutant and records which case kills it first.
"""
