"""A newcomer's first run, reproduced: the README's demo commands, exactly as written, on
a clean clone of this checkout's HEAD (committed files only, as a user gets them).

Used by ``tests/test_first_run.py`` (through the session fixture ``fresh_clone_demo`` of
``tests/conftest.py``, so other read-only tests can reuse the one finished run) and by
``benchmarks/first_run.py`` (wall time of a fresh machine's first demo).

What is fresh and what is not:

- The repository: ``git clone --shared`` of this checkout, then HEAD's commit checked out
  (uncommitted changes of the checkout are not in it). Provenance must record that commit,
  clean.
- The caches a first run fills: ``XDG_CACHE_HOME`` points at an empty folder, so the Stan
  model of the meta-analysis is compiled as on a new machine (and matplotlib's and
  Snakemake's caches start empty).
- The Python environment is NOT rebuilt: ``envs/setup.sh`` would install the pinned
  packages into ``.venv`` (minutes and ~3 GB of downloads). The clone's ``.venv`` is a
  symlink to the running environment instead, and only when that environment was made by
  ``envs/setup.sh`` from identical pins (its ``.spinedx-setup`` stamp equals the sha256
  of the clone's ``envs/requirements.txt`` + ``pyproject.toml``): then the README's own
  ``bash envs/setup.sh`` finds it up to date and returns in about a second, exactly as
  on a user's second call. Otherwise the run is skipped with that reason. That
  environment's spinedx is an editable install of another checkout; the workflow puts the
  clone's own ``src/`` first on every job's PYTHONPATH (and the commands run without the
  test's PYTHONPATH), so the clone's code is what runs.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUP_STAMP = ".spinedx-setup"  # written by envs/setup.sh into the environment it built


@dataclass
class FirstRun:
    clone: Path
    commit: str
    commands: list[str]
    returncodes: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # stdout + stderr of each command

    @property
    def succeeded(self) -> bool:
        return len(self.returncodes) == len(self.commands) and not any(self.returncodes)

    def failure(self) -> str:
        for command, code, output in zip(self.commands, self.returncodes, self.outputs):
            if code:
                return f"`{command}` exited {code}:\n{output[-6000:]}"
        return ""


def readme_demo_commands(readme: str) -> list[str]:
    """The command lines of the first ``bash`` block under "## Quick start"."""
    section = readme.split("\n## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line for line in (raw.strip() for raw in block.splitlines()) if line and not line.startswith("#")]


def readme_outputs(readme: str, sequences: list[str], backbones: list[str], n_folds: int,
                   inputs: list[str]) -> tuple[list[str], list[str]]:
    """(files, folders) under ``results/`` that the README's "Outputs" table lists for a
    run of the given study. Rows whose description starts with "(" are conditional
    ("(audit mode)", "(with training.pretrained)") and not expected of the demo. In a
    folder's row, the file names in the description are files inside that folder
    (`` `model_card.json`/`.md` `` is both suffixes)."""
    table = readme.split("\n## Outputs (`results/`)", 1)[1].split("\n\n## ", 1)[0]
    values = {"sequence": sequences, "backbone": backbones, "k": [str(k) for k in range(n_folds)], "input": inputs}
    files, folders = [], []
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`") or cells[2].startswith("("):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        both = ".pdf/.png" in names  # "(`.pdf/.png`)": every figure stem of the row as PDF and PNG
        for name in (n for n in names if n != ".pdf/.png"):
            for expanded in _expand(name, values):
                if expanded.endswith("/"):
                    folders.append(expanded.rstrip("/"))
                    files += [f"{expanded}{inner}" for inner in _described_files(cells[2], values)]
                elif expanded.endswith(".pdf/.png") or (both and "." not in Path(expanded).name):
                    stem = expanded.removesuffix(".pdf/.png")
                    files += [f"{stem}.pdf", f"{stem}.png"]
                else:
                    files.append(expanded)
    return files, folders


def _described_files(description: str, values: dict[str, list[str]]) -> list[str]:
    names: list[str] = []
    for name in re.findall(r"`([^`]+)`", description):
        if name.startswith(".") and names:  # `model_card.json`/`.md`
            name = names[-1].rsplit(".", 1)[0] + name
        if re.fullmatch(r"[\w./{}-]+\.\w+|[A-Z0-9]+SUMS", name):
            names.append(name)
    return [expanded for name in names for expanded in _expand(name, values)]


def _expand(pattern: str, values: dict[str, list[str]]) -> list[str]:
    """``{a,b}`` alternatives and ``{placeholder}`` values, every combination."""
    pieces = re.split(r"(\{[^}]*\})", pattern)
    options = []
    for piece in pieces:
        if piece.startswith("{") and piece.endswith("}"):
            inner = piece[1:-1]
            options.append(inner.split(",") if "," in inner else values[inner])
        else:
            options.append([piece])
    return ["".join(choice) for choice in itertools.product(*options)]


def environment_stamp(root: Path) -> str:
    """What envs/setup.sh writes into the environment it built from ``root``'s pins."""
    pins = (root / "envs/requirements.txt").read_bytes() + (root / "pyproject.toml").read_bytes()
    return hashlib.sha256(pins).hexdigest()


def reusable_environment(clone: Path) -> tuple[Path | None, str]:
    """The running environment when setup.sh made it from the clone's pins, else the reason."""
    prefix = Path(sys.prefix)
    stamp = prefix / SETUP_STAMP
    if not stamp.is_file():
        return None, f"{prefix} was not made by envs/setup.sh (no {SETUP_STAMP}); cannot stand in for it"
    if stamp.read_text().strip() != environment_stamp(clone):
        return None, (f"{prefix} was built from other pins than HEAD's envs/requirements.txt + "
                      "pyproject.toml; run `bash envs/setup.sh` first")
    return prefix, ""


def clone_head(target: Path, source: Path = REPO) -> str:
    """A clean clone of ``source``'s HEAD commit in ``target``; returns the commit."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", "--shared", "--no-checkout", str(source), str(target)], check=True)
    subprocess.run(["git", "-c", "advice.detachedHead=false", "checkout", "--quiet", commit], cwd=target, check=True)
    return commit


def user_environment(cache_dir: Path) -> dict:
    """The caller's environment as a user's shell has it: no test PYTHONPATH, fresh caches."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER")}
    env["XDG_CACHE_HOME"] = str(cache_dir)
    return env


def run_first_demo(workdir: Path, source: Path = REPO, stream=None) -> FirstRun | str:
    """Clone, link the environment, run the README's demo commands; the record, or the
    reason the run cannot be made here (a str)."""
    workdir.mkdir(parents=True, exist_ok=True)
    clone = workdir / "spinedx"
    if clone.exists():
        shutil.rmtree(clone)
    commit = clone_head(clone, source)
    environment, reason = reusable_environment(clone)
    if environment is None:
        return reason
    (clone / ".venv").symlink_to(environment, target_is_directory=True)
    commands = readme_demo_commands((clone / "README.md").read_text())
    run = FirstRun(clone=clone, commit=commit, commands=commands)
    env = user_environment(workdir / "cache")
    for command in commands:
        started = time.perf_counter()
        done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True)
        run.walls.append(time.perf_counter() - started)
        run.returncodes.append(done.returncode)
        run.outputs.append(done.stdout + done.stderr)
        if stream is not None:
            print(f"`{command}`: exit {done.returncode}, {run.walls[-1]:.1f} s", file=stream, flush=True)
        if done.returncode:
            break
    return run
