"""Table files shared by every stage."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_parquet(table: pd.DataFrame, path: str | Path) -> None:
    """Write-then-rename, so an interrupted job never leaves a half table that looks valid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    table.to_parquet(partial, index=False)
    partial.replace(path)


def read_parquets(paths) -> pd.DataFrame:
    """Several tables of the same columns, stacked in the given order."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
