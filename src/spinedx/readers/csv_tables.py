"""The CSV tables users hand in (cases, boxes, readers' marks): read and checked the same
way, so every refusal names the file and what it must hold."""

from __future__ import annotations

import pandas as pd

from spinedx.errors import InputError


def read_csv_table(path, what: str, dtype=None) -> pd.DataFrame:
    """``path`` as a table; an unreadable file is refused naming ``what`` it should be."""
    try:
        return pd.read_csv(path, dtype=dtype)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read {what}: {error}") from error


def require_columns(table: pd.DataFrame, path, required, needs: str) -> None:
    """Refuse ``table`` unless it has every ``required`` column; ``needs`` says what a
    valid table holds (the fix)."""
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; {needs}")
