"""Documentation generated from data stays in sync with the data."""

from pathlib import Path

from optcheck.reference.profiles import difference_table

ROOT = Path(__file__).resolve().parents[1]


def test_profile_table_in_docs_is_current():
    doc = (ROOT / "docs" / "reference.md").read_text()
    start = doc.index("-->\n", doc.index("<!-- profile-table")) + len("-->\n")
    end = doc.index("<!-- /profile-table -->")
    assert doc[start:end] == difference_table(), "regenerate: python -m optcheck.reference.profiles"
