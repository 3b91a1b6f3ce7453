"""Output files shared by every stage: written whole or not at all; file hashes."""

from __future__ import annotations

import hashlib
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


def write_csv(table: pd.DataFrame, path: str | Path, **to_csv_options) -> Path:
    """``table`` without its index; ``to_csv_options`` go to pandas (e.g. ``sep="\t"``)."""
    with atomic_output(path) as partial:
        table.to_csv(partial, index=False, **to_csv_options)
    return Path(path)


def write_text(text: str, path: str | Path) -> None:
    with atomic_output(path) as partial:
        partial.write_text(text)


def write_bytes(data: bytes, path: str | Path) -> None:
    with atomic_output(path) as partial:
        partial.write_bytes(data)


def read_parquets(paths) -> pd.DataFrame:
    """Several tables of the same columns, stacked in the given order."""
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
