"""Job placement: what a job needs from the machine it runs on (the right spinedx and
Python, its own GPU when several jobs share a machine) and a pointer to its scheduler
log. What ran (software and code versions) is recorded by :mod:`spinedx.records`."""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def prepare_job_environment(src_dir: str) -> None:
    """Make every job (local, SLURM or in a conda env) import this checkout's spinedx.

    Jobs inherit the environment: ``src/`` goes on PYTHONPATH (conda envs do not install
    spinedx), and the interpreter running Snakemake goes first on PATH, so ``python`` in
    a rule is the same environment unless a conda env is activated in front of it.
    """
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src_dir, os.environ.get("PYTHONPATH")]))
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


# Lock files of the GPUs this process has claimed; kept open for the life of the process
# (the kernel drops an flock when its holder exits, also on SIGKILL or preemption).
_GPU_CLAIMS: list = []


def gpu_lock_dir() -> Path:
    """Where concurrent jobs on one machine record which GPU each of them uses."""
    configured = os.environ.get("SPINEDX_GPU_LOCK_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"spinedx-gpu-locks-{os.getuid()}"


def _is_held(path: Path) -> bool:
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def claim_gpu(n_devices: int, lock_dir: str | Path | None = None) -> int:
    """Index of the least-used of ``n_devices`` local GPUs, claimed until this process ends.

    Snakemake's ``--resources gpu=N`` only caps how many GPU jobs run at once; it does not
    say which device each should use, so without this every job would land on cuda:0.
    Each job holds an flock on one ``gpu<d>.slot<k>.lock`` file; a new job picks the
    device with the fewest held slots (ties: lowest index). A global lock serialises the
    choice between jobs starting at the same moment.
    """
    if n_devices < 1:
        raise ValueError("claim_gpu needs at least one device")
    lock_dir = Path(lock_dir) if lock_dir else gpu_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "choose.lock", "a") as chooser:
        fcntl.flock(chooser, fcntl.LOCK_EX)
        held = [sum(_is_held(path) for path in lock_dir.glob(f"gpu{device}.slot*.lock"))
                for device in range(n_devices)]
        device = held.index(min(held))
        for slot in itertools.count():
            handle = open(lock_dir / f"gpu{device}.slot{slot}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _GPU_CLAIMS.append(handle)
            return device


def release_gpus() -> None:
    """Give back every GPU this process claimed (normally the process exit does it)."""
    while _GPU_CLAIMS:
        _GPU_CLAIMS.pop().close()


def scheduler_note() -> str | None:
    """One line tying a rule's log to its SLURM job and that job's own log file, so a
    user reading results/logs/... finds the scheduler's view (node, requeues, OOM kills)."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    try:
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True,
                               text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        shown = ""
    fields = dict(re.findall(r"(\w+)=(\S*)", shown))
    note = f"SLURM job {job_id} on {os.environ.get('SLURMD_NODENAME', '?')}"
    # The requeue count comes from the controller: Snakemake's job step drops most SLURM_*
    # variables (SLURM_RESTART_COUNT among them) before it starts the rule's command.
    restarts = fields.get("Restarts") or os.environ.get("SLURM_RESTART_COUNT")
    if restarts and restarts != "0":
        note += f", restart {restarts}"
    if fields.get("StdOut"):
        note += f"; SLURM log: {fields['StdOut']}"
    return note
