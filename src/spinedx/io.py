"""Output files shared by every stage: written whole or not at all."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd


@contextmanager
def atomic_output(path: str | Path, suffix: str = ""):
    """Yield a temporary sibling of ``path`` to write; it is renamed onto ``path`` only when
    the block succeeds, so an interrupted or failed job never leaves a half file that looks
    valid (and a previous complete file stays). ``suffix`` keeps writers that append their
    own extension (numpy's savez: ".npz") pointed at the same temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial" + suffix)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)


def write_parquet(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_output(path) as partial:
        table.to_parquet(partial, index=False)


def write_csv(table: pd.DataFrame, path: str | Path) -> Path:
    with atomic_output(path) as partial:
        table.to_csv(partial, index=False)
    return Path(path)


def write_text(text: str, path: str | Path) -> None:
    with atomic_output(path) as partial:
        partial.write_text(text)


def read_parquets(paths) -> pd.DataFrame:
    """Several tables of the same columns, stacked in the given order."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
