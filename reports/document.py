"""A small document model and its two renderings: one self-contained HTML page and
one Markdown file (charts as SVG files beside it).

The report's sections are built once as blocks (:class:`Heading`, :class:`Para`,
:class:`Table`, :class:`Chart`, :class:`Details`); :func:`to_html` and
:func:`to_markdown` render the same blocks, so the two files cannot say different
things.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Cell:
    text: str
    cls: str = ""  # CSS class: pass, deviation, error, unsupported, regression, improvement, best
    href: str = ""  # "#anchor" or a relative path
    title: str = ""  # hover text (HTML only)


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    text: str  # plain text; `code` spans are rendered as code


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell | str]]
    anchor: str = ""
    caption: str = ""


@dataclass
class Chart:
    name: str  # file stem: charts/<name>.svg
    svg: str
    caption: str


@dataclass
class Details:
    summary: str
    text: str  # preformatted
    anchor: str = ""
    file: str = ""  # Markdown: written to this relative path and linked instead of inlined


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)


def _cell(c) -> Cell:
    return c if isinstance(c, Cell) else Cell(str(c))


def _inline_html(text: str) -> str:
    parts = text.split("`")
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2.2rem}h3{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.82rem}
th,td{border:1px solid #d0d0d0;padding:.2rem .45rem;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}
td.pass{background:#e8f5e9}td.deviation{background:#ffebee}td.error{background:#fff3e0}
td.unsupported{background:#f5f5f5;color:#777}td.regression{background:#ffcdd2;font-weight:600}
td.improvement{background:#c8e6c9}td.best{font-weight:700}
.scroll{overflow-x:auto}figure{margin:1rem 0}figure svg{max-width:100%;height:auto}
figcaption{font-size:.85rem;color:#444}details{margin:.3rem 0}
summary{cursor:pointer}pre{background:#f7f7f7;padding:.6rem;overflow-x:auto;font-size:.75rem;
max-height:28rem}code{background:#f3f3f3;padding:0 .2rem}
p.caption{font-size:.85rem;color:#444;margin:.8rem 0 .2rem}
"""


def to_html(doc: Document) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may load from anywhere: the page is self-contained.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
    for block in doc.blocks:
        out.append(_block_html(block))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _attr(name: str, value: str) -> str:
    return f' {name}="{html.escape(value, quote=True)}"' if value else ""


def _block_html(block) -> str:
    if isinstance(block, Heading):
        n = max(1, min(block.level, 6))
        return f"<h{n}{_attr('id', block.anchor)}>{_inline_html(block.text)}</h{n}>"
    if isinstance(block, Para):
        return f"<p>{_inline_html(block.text)}</p>"
    if isinstance(block, Chart):
        return (f'<figure class="chart" data-chart="{html.escape(block.name)}">{block.svg}'
                f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")  # fmt: skip
    if isinstance(block, Details):
        return (f"<details{_attr('id', block.anchor)}><summary>{_inline_html(block.summary)}"
                f"</summary><pre>{html.escape(block.text)}</pre></details>")  # fmt: skip
    if isinstance(block, Table):
        head = "".join(f"<th>{_inline_html(c)}</th>" for c in block.columns)
        body = []
        for row in block.rows:
            cells = []
            for c in map(_cell, row):
                inner = _inline_html(c.text)
                if c.href:
                    inner = f'<a href="{html.escape(c.href, quote=True)}">{inner}</a>'
                cells.append(f"<td{_attr('class', c.cls)}{_attr('title', c.title)}>{inner}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        caption = f'<p class="caption">{_inline_html(block.caption)}</p>' if block.caption else ""
        return (f'{caption}<div class="scroll"><table{_attr("id", block.anchor)}><thead><tr>'
                f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")  # fmt: skip
    raise TypeError(f"unknown block {type(block).__name__}")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def to_markdown(doc: Document) -> tuple[str, dict[str, str]]:
    """The Markdown text and the files it links to (relative path -> content)."""
    files: dict[str, str] = {}
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            if block.level == 1:
                continue  # the title
            anchor = f'<a id="{block.anchor}"></a>' if block.anchor else ""
            out += [f"{'#' * block.level} {anchor}{block.text}", ""]
        elif isinstance(block, Para):
            out += [block.text, ""]
        elif isinstance(block, Chart):
            path = f"charts/{block.name}.svg"
            files[path] = block.svg
            out += [f"![{block.caption}]({path})", "", f"*{block.caption}*", ""]
        elif isinstance(block, Details):
            if block.file:
                files[block.file] = block.text
                out += [f"- {block.summary}: [{block.file}]({block.file})", ""]
            else:
                out += [f"<details><summary>{block.summary}</summary>", "", "```",
                        block.text, "```", "", "</details>", ""]  # fmt: skip
        elif isinstance(block, Table):
            if block.anchor:
                out += [f'<a id="{block.anchor}"></a>', ""]
            if block.caption:
                out += [block.caption, ""]
            out.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
            out.append("|" + "---|" * len(block.columns))
            for row in block.rows:
                cells = []
                for c in map(_cell, row):
                    text = _md_cell(c.text)
                    if c.cls in ("best", "regression"):
                        text = f"**{text}**"
                    if c.href:
                        text = f"[{text}]({c.href})"
                    cells.append(text)
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
        else:
            raise TypeError(f"unknown block {type(block).__name__}")
    return "\n".join(out).rstrip() + "\n", files
