"""optcheck.conformance"""
