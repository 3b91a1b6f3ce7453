"""How Snakemake jobs find spinedx and the right Python interpreter."""

from __future__ import annotations

import os
import sys


def prepare_job_environment(src_dir: str) -> None:
    """Make every job (local, SLURM or in a conda env) import this checkout's spinedx.

    Jobs inherit the environment: ``src/`` goes on PYTHONPATH (conda envs do not install
    spinedx), and the interpreter running Snakemake goes first on PATH, so ``python`` in
    a rule is the same environment unless a conda env is activated in front of it.
    """
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src_dir, os.environ.get("PYTHONPATH")]))
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
