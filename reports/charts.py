"""The report's charts: matplotlib figures rendered to self-contained SVG text.

Text is drawn as paths (``svg.fonttype = "path"``), so a chart needs no font and the
page loads nothing; the SVG carries no date and a fixed id salt, so the same data
gives the same file.
"""

from __future__ import annotations

import io
import math

STATUS_COLORS = {
    "pass": "#2e7d32",
    "deviation": "#c62828",
    "error": "#ef6c00",
    "unsupported": "#9e9e9e",
}
#: One colour per implementation, stable across charts.
IMPL_COLORS = {
    "numpy": "#000000",
    "jax": "#1565c0",
    "jax-flat": "#64b5f6",
    "tf": "#ef6c00",
    "optax": "#6a1b9a",
    "torch-fused": "#c62828",
    "torch-foreach": "#ef9a9a",
}
_FALLBACK = ("#00838f", "#558b2f", "#8d6e63", "#ad1457", "#283593")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.fonttype": "path", "svg.hashsalt": "optcheck", "font.size": 9,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
        "axes.spines.right": False, "figure.dpi": 100,
    })  # fmt: skip
    return plt


def color(impl: str) -> str:
    if impl in IMPL_COLORS:
        return IMPL_COLORS[impl]
    return _FALLBACK[sum(map(ord, impl)) % len(_FALLBACK)]


def to_svg(fig) -> str:
    """The figure as SVG text without the XML prolog (to inline in HTML), closed."""
    plt = _pyplot()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def conformance_bars(rows: list[dict]) -> str:
    """Stacked horizontal bars: per (profile, adapter) the cases by status.

    ``rows``: ``{"label", "summary": {"pass", "deviation", "error", "unsupported"}}``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.0))
    labels = [r["label"] for r in rows][::-1]
    left = [0] * len(rows)
    for status, c in STATUS_COLORS.items():
        values = [r["summary"].get(status, 0) for r in rows][::-1]
        ax.barh(labels, values, left=left, color=c, label=status, height=0.7)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("cases")
    ax.grid(axis="y", visible=False)
    ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return to_svg(fig)


def _grid(n: int, cols: int = 4, size=(2.6, 2.1)):
    plt = _pyplot()
    rows = math.ceil(n / cols)
    cols = min(cols, n)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def scaling_grid(panels: list[dict]) -> str:
    """Log–log step time against N, one panel per optimizer, the roofline dashed.

    ``panels``: ``{"title", "series": {impl: [(N, seconds)]}, "roof": [(N, seconds)]}``.
    """
    fig, axes = _grid(len(panels))
    handles = {}
    for ax, panel in zip(axes, panels, strict=True):
        for impl, points in panel["series"].items():
            xs, ys = zip(*points, strict=True)
            (line,) = ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=color(impl), label=impl)
            handles[impl] = line
        if panel.get("roof"):
            xs, ys = zip(*panel["roof"], strict=True)
            (line,) = ax.plot(xs, ys, ls="--", lw=1, color="#555555", label="roof (bytes / roof)")
            handles["roof (bytes / roof)"] = line
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("N (parameters)")
        ax.set_ylabel("step (s)")
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 8),
               bbox_to_anchor=(0.5, 1.0), frameon=False)  # fmt: skip
    fig.tight_layout()
    return to_svg(fig)


def lines(series: dict[str, list[tuple[float, float]]], *, xlabel: str, ylabel: str,
          logx: bool = True, logy: bool = False, hline: tuple[float, str] | None = None,
          title: str = "") -> str:  # fmt: skip
    """One chart of lines, one per implementation (GB/s against N, ratios, penalties)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for impl, points in series.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", ms=3, lw=1.2, color=color(impl.split(" ")[0]), label=impl)
    if hline:
        ax.axhline(hline[0], ls="--", lw=1, color="#555555", label=hline[1])
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return to_svg(fig)


def grouped_bars(groups: list[str], series: dict[str, list[float | None]], *, ylabel: str,
                 hline: tuple[float, str] | None = None, logy: bool = False) -> str:  # fmt: skip
    """Bars per group (x) and implementation (colour); None leaves a gap."""
    plt = _pyplot()
    width_in = min(10.0, max(4.5, 0.25 * len(groups) * max(1, len(series)) + 1.5))
    fig, ax = plt.subplots(figsize=(width_in, 3.4))
    width = 0.8 / max(1, len(series))
    for j, (impl, values) in enumerate(series.items()):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
        pairs = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if pairs:
            px, pv = zip(*pairs, strict=True)
            ax.bar(px, pv, width=width, color=color(impl.split(" ")[0]), label=impl)
    if hline:
        ax.axhline(hline[0], ls="--", lw=1, color="#555555", label=hline[1])
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return to_svg(fig)


def change_bars(labels: list[str], ratios: list[float], threshold: float) -> str:
    """Before/after: after/before step-time ratio per case, regressions red."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.22 * len(labels) + 1.2))
    shown = [r if math.isfinite(r) else threshold * 2 for r in ratios]
    colors = ["#c62828" if not math.isfinite(r) or r > threshold
              else "#2e7d32" if r < 1 / threshold else "#9e9e9e" for r in ratios]  # fmt: skip
    ax.barh(labels[::-1], [s - 1 for s in shown][::-1], left=1, color=colors[::-1], height=0.7)
    ax.axvline(1, color="#000000", lw=0.8)
    ax.axvline(threshold, ls="--", lw=0.8, color="#c62828")
    ax.axvline(1 / threshold, ls="--", lw=0.8, color="#2e7d32")
    ax.set_xscale("log")
    ax.set_xlabel("step time after / before (log)")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="y", visible=False)
    return to_svg(fig)
