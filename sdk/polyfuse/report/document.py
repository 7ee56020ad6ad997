"""An HTML report assembled section by section and written as one self-contained file.

Images, plots and audio are embedded as base64 data URIs, so the file opens anywhere
without a server or the files it was built from, and it uses no script at all.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..persistence import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: .4em; text-align: center; vertical-align: top; }
figcaption { font-size: .85em; color: #555; max-width: 320px; }
img.sample { image-rendering: pixelated; border: 1px solid #ddd; }
.note { color: #555; font-size: .9em; }
"""


@dataclass
class Report:
    """A report being built; call the ``add_*`` methods in reading order, then :meth:`write`."""

    title: str
    parts: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # figures for the JSON file written beside the HTML

    def add_heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def add_paragraph(self, text: str, note: bool = False) -> None:
        css = ' class="note"' if note else ""
        self.parts.append(f"<p{css}>{html.escape(text)}</p>")

    def add_table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
        """Add a table; floats are shown with four significant decimals."""
        head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_format(cell))}</td>" for cell in row) + "</tr>" for row in rows)
        caption_html = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.parts.append(f"<table>{caption_html}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def add_png(self, png: bytes, caption: str = "", width: int | None = None, pixelated: bool = False) -> None:
        """Embed PNG bytes (a plot or a picture) with an optional caption."""
        size = f' width="{width}"' if width else ""
        css = ' class="sample"' if pixelated else ""
        alt = html.escape(caption or "figure", quote=True)
        self.parts.append(
            f'<figure><img{css} src="{_data_uri(png, "image/png")}" alt="{alt}"{size}>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def add_image(self, image, caption: str = "", width: int = 96) -> None:
        """Embed a PIL image, scaled up without smoothing so small samples stay legible."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        self.add_png(buffer.getvalue(), caption, width=width, pixelated=True)

    def add_audio(self, waveform, sample_rate: int, caption: str = "") -> None:
        """Embed a mono waveform as a 16-bit WAV player."""
        import numpy as np
        import soundfile

        buffer = io.BytesIO()
        soundfile.write(buffer, np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0), int(sample_rate), format="WAV", subtype="PCM_16")
        self.parts.append(
            f'<figure><audio controls preload="auto" src="{_data_uri(buffer.getvalue(), "audio/wav")}"></audio>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def add_raw(self, markup: str) -> None:
        """Add trusted markup built by the caller (no escaping)."""
        self.parts.append(markup)

    def render(self) -> str:
        title = html.escape(self.title)
        body = "\n".join(self.parts)
        return (
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1>\n{body}\n</body></html>\n"
        )

    def write(self, folder: str | Path, name: str = "report") -> tuple[Path, Path]:
        """Write ``<name>.html`` and ``<name>.json`` (the figures in :attr:`data`) atomically; return both paths."""
        folder = Path(folder)
        html_path = atomic_write_text(folder / f"{name}.html", self.render())
        json_path = atomic_write_text(folder / f"{name}.json", json.dumps(self.data, indent=2, default=_json_default) + "\n")
        return html_path, json_path


def _data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _format(cell: Any) -> str:
    if isinstance(cell, float):
        return f"{cell:.4f}"
    return str(cell)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__dict__"):
        return value.__dict__
    raise TypeError(f"cannot write {type(value).__name__} to the report JSON")
