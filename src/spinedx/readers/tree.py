"""The annotation tree: ``<images_dir>/<patient_id>/<sequence folder>/<image>.json``.

Sequence folder names map to canonical sequence names through config ``sequences``
(matched case-insensitively).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from spinedx.errors import InputError


def sequence_folder_lookup(sequences: dict[str, list[str]]) -> dict[str, str]:
    """Lower-cased folder name -> canonical sequence name."""
    return {name.lower(): sequence for sequence, names in sequences.items() for name in names}


def sequence_files(images_dir: str | Path, sequences: dict[str, list[str]], sequence: str):
    """Every file under the folders of one sequence (JSONs and images), sorted.

    Used by the workflow to declare a sequence's inputs, so editing one T2 image reruns
    the T2 branch only.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        return []
    wanted = {name.lower() for name in sequences[sequence]}
    files = []
    for patient_dir in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        for folder in sorted(p for p in patient_dir.iterdir() if p.is_dir()):
            if folder.name.lower() in wanted:
                files.extend(f for f in sorted(folder.rglob("*"))
                             if f.is_file() and not f.name.startswith("."))
    return files


def check_tree(images_dir: Path, sequences: dict[str, list[str]], cases: pd.DataFrame,
               cases_path: str | Path) -> None:
    """The whole tree follows the convention and matches the cases table."""
    if not images_dir.is_dir():
        raise InputError(f"{images_dir}: the images folder (config data.images_dir) does not exist")
    lookup = sequence_folder_lookup(sequences)
    known_patients = set(cases["patient_id"])
    for patient_dir in sorted(p for p in images_dir.iterdir() if not p.name.startswith(".")):
        if not patient_dir.is_dir():
            raise InputError(
                f"{patient_dir}: unexpected file at the top of the images folder; expected "
                "one folder per patient (<patient_id>/<sequence>/<image>.json)"
            )
        if patient_dir.name not in known_patients:
            raise InputError(
                f"{patient_dir}: patient {patient_dir.name!r} is not in the cases table "
                f"{cases_path}; add a row (diagnosis, cohort) or remove the folder"
            )
        for folder in sorted(p for p in patient_dir.iterdir() if not p.name.startswith(".")):
            if folder.is_dir() and folder.name.lower() not in lookup:
                raise InputError(
                    f"{folder}: unknown sequence folder {folder.name!r}; map it to a sequence "
                    f"in config `sequences` (known: {sorted(lookup)})"
                )


def annotation_files(images_dir: Path, sequences: dict[str, list[str]],
                     sequence: str | None = None) -> Iterator[tuple[Path, str, str, str]]:
    """(labelme JSON, patient_id, sequence folder, canonical sequence) of every annotation
    of one sequence (None: all), sorted by path."""
    lookup = sequence_folder_lookup(sequences)
    for json_path in sorted(images_dir.glob("*/*/*.json")):
        patient_id, folder = json_path.parent.parent.name, json_path.parent.name
        if folder.lower() not in lookup or (sequence and lookup[folder.lower()] != sequence):
            continue
        yield json_path, patient_id, folder, lookup[folder.lower()]
