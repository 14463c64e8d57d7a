"""Baselines: the deviations an adapter is known and accepted to have, for CI gating.

A baseline is a TOML file per adapter::

    adapter = "torch"                  # the adapter name the entries apply to

    [[accepted]]
    case = "Adam-*"                    # fnmatch pattern on the case id (required)
    profile = "keras2"                 # optional: only in this profile
    variant = "adam_epsilon=corrected*"  # optional: only when the diagnosis names a
                                       # matching variant ("unexplained" matches that)
    status = "deviation"               # optional: "deviation" (default) or "error"
    reason = "torch adds ε to √v̂"      # required: why it is accepted
    link = "https://github.com/…"      # optional (recommended): upstream reference

``optcheck verify --baseline FILE`` (repeatable, one file per adapter) then exits 0
when every deviation (and error) is matched by an entry, 1 when any is not (a *new*
one), and warns about *stale* entries: entries whose pattern selected cases in this
run that all conform, so the entry no longer describes anything. An entry whose cases
still fail, but otherwise than it says (it accepts ``deviation`` and the case is now an
``error``, or the diagnosis names another variant), accepts nothing: those cases are
new, and the entry is reported as *mismatched*, with what the case does now.

A malformed file is a :class:`BaselineError` naming the file, the entry and the field;
so is a ``variant`` that can match no variant the diagnosis names
(:data:`optcheck.conformance.diagnosis.VARIANTS`, their pairs and triples, or
``unexplained``): a misspelt one would never accept anything.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("deviation", "error")
_KEYS = {"case", "profile", "variant", "status", "reason", "link"}


class BaselineError(ValueError):
    """A baseline file that cannot be used (the message names file, entry and field)."""


@dataclass(frozen=True)
class Entry:
    case: str
    reason: str
    profile: str | None = None
    variant: str | None = None
    status: str = "deviation"
    link: str = ""

    def selects(self, case: dict, profile: str) -> bool:
        """Whether this entry is about ``case`` at all (pattern and profile)."""
        if self.profile is not None and self.profile != profile:
            return False
        return fnmatch.fnmatchcase(case["id"], self.case)

    def accepts(self, case: dict, profile: str) -> bool:
        if not self.selects(case, profile) or case["status"] != self.status:
            return False
        if self.variant is None:
            return True
        diagnosis = case.get("diagnosis") or {}
        named = diagnosis.get("variant") or "unexplained"
        return fnmatch.fnmatchcase(named, self.variant)

    def describe(self) -> str:
        parts = [f"case={self.case!r}"]
        parts += [f"{k}={getattr(self, k)!r}" for k in ("profile", "variant")
                  if getattr(self, k) is not None]  # fmt: skip
        return ", ".join(parts)

    def mismatch(self, case: dict, profile: str) -> str | None:
        """Why this entry, which selects the failing ``case``, does not accept it (None
        when it accepts it, does not select it, or the case does not fail)."""
        if (case["status"] not in STATUSES or not self.selects(case, profile)
                or self.accepts(case, profile)):  # fmt: skip
            return None
        if case["status"] != self.status:
            return (f"entry {self.describe()} accepts {self.status} but the case is now "
                    f"{case['status']}: {case['id']}: {_what(case)}")  # fmt: skip
        named = (case.get("diagnosis") or {}).get("variant") or "unexplained"
        return (f"entry {self.describe()} accepts variant {self.variant!r} but the case is "
                f"now diagnosed {named!r}: {case['id']}")  # fmt: skip


def _what(case: dict) -> str:
    """One line on what a failing case does now."""
    if case["status"] == "error":
        lines = (case.get("message") or "").splitlines()
        return lines[0][:300] if lines else "?"
    diagnosis = case.get("diagnosis") or {}
    return diagnosis.get("verdict") or "a deviation"


@functools.cache
def variant_names() -> tuple[str, ...]:
    """Every variant name a diagnosis can give: the catalogue's, their pairs and triples
    (in catalogue order, as :func:`~optcheck.conformance.diagnosis.diagnose` names them)
    and ``unexplained``."""
    from .diagnosis import VARIANTS

    singles = [v.name for v in VARIANTS]
    names = ["unexplained", *singles]
    for size in (2, 3):
        names += [" + ".join(c) for c in itertools.combinations(singles, size)]
    return tuple(names)


def _check_variant(pattern: str, where: str) -> None:
    if any(fnmatch.fnmatchcase(name, pattern) for name in variant_names()):
        return
    singles = [n for n in variant_names() if " + " not in n and n != "unexplained"]
    raise BaselineError(f"{where}: `variant` {pattern!r} matches no known variant; known: "
                        f"{', '.join(singles)}; pairs and triples of them in this order "
                        "('a + b'); unexplained (an fnmatch pattern)")  # fmt: skip


@dataclass
class Baseline:
    adapter: str
    path: Path
    entries: list[Entry] = field(default_factory=list)


def load(path) -> Baseline:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {path}: not valid TOML ({exc})") from None
    adapter = data.get("adapter")
    if not isinstance(adapter, str) or not adapter:
        raise BaselineError(f"baseline {path}: missing `adapter = \"NAME\"` at the top")
    unknown = set(data) - {"adapter", "accepted"}
    if unknown:
        raise BaselineError(f"baseline {path}: unknown top-level key(s) {sorted(unknown)}; "
                            "expected `adapter` and `[[accepted]]` entries")  # fmt: skip
    raw = data.get("accepted", [])
    if not isinstance(raw, list):
        raise BaselineError(f"baseline {path}: `accepted` must be an array of tables "
                            "([[accepted]])")  # fmt: skip
    entries = []
    for i, item in enumerate(raw, start=1):
        where = f"baseline {path}, entry {i}"
        if not isinstance(item, dict):
            raise BaselineError(f"{where}: must be a table")
        extra = set(item) - _KEYS
        if extra:
            raise BaselineError(f"{where}: unknown key(s) {sorted(extra)}; allowed: "
                                f"{sorted(_KEYS)}")  # fmt: skip
        for key in ("case", "reason"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise BaselineError(f"{where}: `{key}` is required (a non-empty string)")
        for key in ("profile", "variant", "link"):
            if key in item and not isinstance(item[key], str):
                raise BaselineError(f"{where}: `{key}` must be a string")
        status = item.get("status", "deviation")
        if status not in STATUSES:
            raise BaselineError(f"{where}: `status` must be one of {list(STATUSES)}, "
                                f"got {status!r}")  # fmt: skip
        if item.get("profile") not in (None, "keras2", "keras3"):
            raise BaselineError(f"{where}: `profile` must be keras2 or keras3, got "
                                f"{item['profile']!r}")  # fmt: skip
        if "variant" in item:
            # An error has no diagnosis (it counts as "unexplained"): any other variant
            # would make the entry accept nothing.
            if status == "error" and not fnmatch.fnmatchcase("unexplained", item["variant"]):
                raise BaselineError(f"{where}: `variant` {item['variant']!r} can never match "
                                    "an error (errors have no diagnosis): leave it out")
            _check_variant(item["variant"], where)
        entries.append(Entry(case=item["case"], reason=item["reason"].strip(),
                             profile=item.get("profile"), variant=item.get("variant"),
                             status=status, link=item.get("link", "")))  # fmt: skip
    return Baseline(adapter=adapter, path=path, entries=entries)


def apply(report: dict, baselines: list[Baseline]) -> dict:
    """Mark each failing case of ``report`` accepted (``case["baseline"]``) or new, and
    return the gate's outcome: ``{"new": [...], "accepted": [...], "stale": [...],
    "mismatched": [...], "unused": [...], "unknown_adapters": [...], "why": {...},
    "statuses": {...}}`` (case ids prefixed by adapter; stale, mismatched and unused as
    "file: entry"; ``why``: new case -> the entry that selects it and what differs;
    ``statuses``: new case -> its status)."""
    profile = report["profile"]
    by_adapter: dict[str, list[tuple[Baseline, Entry]]] = {}
    for b in baselines:
        by_adapter.setdefault(b.adapter, []).extend((b, e) for e in b.entries)
    outcome = {"new": [], "accepted": [], "stale": [], "mismatched": [], "unused": [],
               "unknown_adapters": [], "why": {}, "statuses": {}}  # fmt: skip
    ran = {a["name"] for a in report["adapters"]}
    outcome["unknown_adapters"] = sorted({b.adapter for b in baselines} - ran)
    for a in report["adapters"]:
        entries = by_adapter.get(a["name"], [])
        selected = {id(e): 0 for _, e in entries}
        used = {id(e): 0 for _, e in entries}
        mismatched: dict[int, str] = {}  # entry -> what its first failing case does now
        for case in a["cases"]:
            for _, e in entries:
                if e.selects(case, profile) and case["status"] != "unsupported":
                    selected[id(e)] += 1
            if case["status"] not in STATUSES:
                continue
            match = next((e for _, e in entries if e.accepts(case, profile)), None)
            label = f"{a['name']}: {case['id']}"
            if match is None:
                outcome["new"].append(label)
                outcome["statuses"][label] = case["status"]
                for b, e in entries:
                    text = e.mismatch(case, profile)
                    if text is not None:
                        mismatched.setdefault(id(e), text)
                        outcome["why"].setdefault(label, f"{b.path}: {text}")
                continue
            used[id(match)] += 1
            case["baseline"] = {"reason": match.reason, "link": match.link,
                                "entry": match.describe()}  # fmt: skip
            outcome["accepted"].append(label)
        for b, e in entries:
            if used[id(e)]:
                continue
            if id(e) in mismatched:  # its cases fail otherwise than it says: not stale
                outcome["mismatched"].append(f"{b.path}: {mismatched[id(e)]}")
                continue
            where = f"{b.path}: {e.describe()}"
            (outcome["stale"] if selected[id(e)] else outcome["unused"]).append(where)
    report["baseline"] = {
        "files": [str(b.path) for b in baselines],
        **{k: v for k, v in outcome.items()},
    }
    return outcome


def from_report(reports, adapter: str, group: bool = True, keep: Baseline | None = None
                ) -> str:  # fmt: skip
    """A starting baseline (TOML text) accepting ``adapter``'s current deviations and
    errors in ``reports`` (one conformance.json dict or several, e.g. one per profile).

    ``group``: one entry per (profile, optimizer, status, diagnosis), with the case
    pattern ``<Optimizer>-*`` and the variant pinned, so a different deviation of the same
    optimizer is still new; otherwise one entry per case. Reasons are the diagnoses — to
    be reviewed: a diagnosis says what a deviation is, not why it is accepted.

    ``keep``: a baseline regenerated (after a library upgrade, or a new diagnosis variant)
    whose reviewed reason and link are kept for every entry that is generated again with
    the same case pattern, profile, variant and status; the others are written afresh.
    """
    kept = {(e.case, e.profile, e.variant, e.status): e for e in (keep.entries if keep else [])}
    reports = [reports] if isinstance(reports, dict) else list(reports)
    runs = []
    for report in reports:
        found = [a for a in report["adapters"] if a["name"] == adapter]
        if not found:
            names = ", ".join(a["name"] for a in report["adapters"])
            raise BaselineError(f"adapter {adapter!r} is not in the report (it has: {names})")
        runs.append((report, found[0]))
    lines = [f"# Baseline for the {adapter} adapter, generated by `optcheck baseline` from "
             + "; ".join(f"{r['profile']} {r['level']} (seed {r['seed']}"
                         + (f", {r['max_examples']} examples" if r.get("max_examples") else "")
                         + ")" for r, _ in runs) + ".",
             "# Review every reason before relying on it.",
             f'adapter = "{adapter}"']  # fmt: skip
    for report, entry in runs:
        groups: dict[tuple, list[dict]] = {}
        for case in entry["cases"]:
            if case["status"] not in STATUSES:
                continue
            diagnosis = case.get("diagnosis") or {}
            # Golden-table and seed-page ids do not start with the optimizer: exact.
            pattern = f"{case['optimizer']}-*"
            if not group or not case["id"].startswith(pattern[:-1]):
                pattern = case["id"]
            key = (pattern, case["status"], diagnosis.get("variant"))
            groups.setdefault(key, []).append(case)
        for (pattern, _, _), cases in groups.items():
            first = cases[0]
            diagnosis = first.get("diagnosis") or {}
            lines += ["", f"# {len(cases)} case(s): "
                      + ", ".join(c["id"] for c in cases[:8])
                      + (", …" if len(cases) > 8 else ""), "[[accepted]]",
                      f"case = {_toml(pattern)}",
                      f"profile = {_toml(report['profile'])}"]  # fmt: skip
            if first["status"] == "error":
                lines.append('status = "error"')
                variant, reason = None, first.get("message", "") or "error"
            elif diagnosis.get("variant"):
                variant = diagnosis["variant"]
                reason = diagnosis.get("summary") or diagnosis["verdict"]
            else:
                what = first.get("first_divergence")
                from .report import divergence_text

                variant = "unexplained"
                reason = ("no catalogued variant explains it; first: "
                          f"{first['id']}: {divergence_text(what) if what else '?'}")  # fmt: skip
            if variant is not None:
                lines.append(f"variant = {_toml(variant)}")
            link = diagnosis.get("source") or ""
            old = kept.get((pattern, report["profile"], variant, first["status"]))
            if old is not None:
                reason, link = old.reason, old.link
            lines.append(f"reason = {_toml(reason)}")
            if link:
                lines.append(f"link = {_toml(link)}")
    return "\n".join(lines) + "\n"


def _toml(text: str) -> str:
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{escaped}"'
