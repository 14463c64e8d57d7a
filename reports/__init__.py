"""optcheck.reports"""
