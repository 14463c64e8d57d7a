"""optcheck.adapters"""
