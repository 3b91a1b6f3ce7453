"""What ran: interpreter, platform, package and code versions, recorded beside every
model (config.yaml), in the bundle's model card, in provenance.json and in the report."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

# Packages whose versions can change a number in the study (pinned in envs/requirements.txt).
RECORDED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "scikit-learn",
                     "pillow", "pydicom", "matplotlib", "seaborn", "grad-cam",
                     "opencv-python-headless", "rpy2", "snakemake")


def package_versions(names=RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata (no import: fast, and None when absent)."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(device=None) -> dict:
    """Interpreter, platform and package versions; with ``device`` (a torch.device) also
    the torch threads and the device/GPU a job ran on."""
    import platform

    import spinedx

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "spinedx": spinedx.__version__, **package_versions()}
    if device is not None:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["device"] = str(device)
        if device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def code_version(directory) -> dict:
    """The git commit of the checkout holding ``directory`` and whether it had uncommitted
    changes; outside a git checkout, the installed spinedx version only."""
    import spinedx

    version = {"spinedx": spinedx.__version__, "git_commit": None, "git_dirty": None}
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                                  text=True, check=True, timeout=30).stdout.strip()
        version["git_commit"] = git("rev-parse", "HEAD")
        # Only tracked files count: results and caches are not code.
        version["git_dirty"] = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def software_versions() -> pd.DataFrame:
    """:func:`environment` as a table (one row per software); absent packages say so."""
    return pd.DataFrame([{"software": key, "version": "not installed" if value is None else str(value)}
                         for key, value in environment().items()])


def output_records(results_dir, named=()) -> list[dict]:
    """Path (relative to ``results_dir`` when inside it), sha256 and size of every file
    under the recorded folders (:data:`spinedx.paths.RECORDED_FOLDERS`) and of every file
    in ``named``: the outputs of a provenance record."""
    from pathlib import Path

    from spinedx import paths
    from spinedx.io import sha256_file

    results_dir = Path(results_dir)
    files = {Path(p) for p in named}
    for folder in paths.RECORDED_FOLDERS:
        if (results_dir / folder).is_dir():
            files.update(p for p in (results_dir / folder).rglob("*")
                         if p.is_file() and not p.name.endswith(".partial"))
    rows = []
    for path in sorted(files):
        try:
            shown = path.relative_to(results_dir).as_posix()
        except ValueError:
            shown = path.as_posix()
        rows.append({"path": shown, "sha256": sha256_file(path), "bytes": path.stat().st_size})
    return rows


#: The format of a study's provenance record (provenance.json), classification or detection.
PROVENANCE_FORMAT = "spinedx-provenance/1"


def provenance_record(config, workflow_dir, inputs: dict, results_dir, outputs=()) -> dict:
    """The part of provenance.json every study writes: format, time, code, software, the
    resolved config, the ``inputs`` (hashed by the caller) and the recorded outputs."""
    return {
        "format": PROVENANCE_FORMAT,
        "written_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code": code_version(workflow_dir),
        "software": environment(),
        "config": dict(config),
        "inputs": inputs,
        "outputs": output_records(Path(results_dir), outputs),
    }
