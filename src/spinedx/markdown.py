"""Markdown for the model cards people read (the JSON beside each card is the reference)."""

from __future__ import annotations


def markdown_table(rows: list[dict]) -> str:
    """A pipe table of ``rows`` (the first row's keys as header; floats to 3 decimals)."""
    if not rows:
        return "(none)\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines) + "\n"
