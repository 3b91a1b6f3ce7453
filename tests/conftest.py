"""Shared fixtures: hand-made labelme trees (independent of the demo generator)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# The tests test the checkout they live in, also when another checkout's spinedx is the
# one installed (editable) in the environment, e.g. a second clone or git worktree.
sys.path.insert(0, str(REPO / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
from spinedx import config as configuration  # noqa: E402  (after the path above)

SHARED = REPO.parent / "shared"


def pytest_configure(config):
    # Registered here, not in pyproject.toml: envs/setup.sh's up-to-date check hashes
    # pyproject.toml, so editing it would make every environment look stale.
    config.addinivalue_line("markers", "firstrun: the README's demo commands on a clean clone of HEAD "
                                       "(tests/test_first_run.py; the default demo: minutes)")


def _schedule_rank(item) -> int:
    """0: end-to-end study runs (marked workflow, minutes each); 1: other tests sharing a
    module- or session-scoped fixture (their xdist group); 2: the rest."""
    if item.get_closest_marker("workflow"):
        return 0
    return 1 if item.get_closest_marker("xdist_group") else 2


#: Why a test is refused before its fixtures run (set at collection).
REFUSED = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Longest work first: with `-n 2 --dist loadgroup --no-loadscope-reorder` the workers
    take groups and modules in collection order, so the study runs start at once and the
    many short tests fill the gaps at the end, instead of a study run starting last and
    running alone (pytest-xdist's default order is by the number of tests in a group).

    Under `-n N --dist loadgroup` every test of an xdist group must reach one worker, or
    each worker builds the group's shared study again (minutes each). pytest-xdist marks a
    grouped test by renaming its node id to `<id>@<group>` before this hook runs; some
    pytest/xdist pairs silently drop that rename (pytest 9.2 with xdist 3.8): refuse those
    tests then, before their fixtures start a study run."""
    items.sort(key=_schedule_rank)  # stable: file order within a rank
    if not getattr(config.option, "loadgroup", False):  # set on xdist workers under loadgroup
        return
    ungrouped = [item for item in items
                 if any(True for _ in item.iter_markers("xdist_group")) and "@" not in item.nodeid]
    if ungrouped:
        import xdist
        message = (f"pytest {pytest.__version__} with pytest-xdist {xdist.__version__} ignores xdist_group "
                   "marks under --dist loadgroup: each worker would repeat the shared study runs. Install the "
                   "versions pinned in envs/requirements.txt (bash envs/setup.sh).")
        for item in ungrouped:
            item.stash[REFUSED] = message


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if REFUSED in item.stash:
        pytest.fail(item.stash[REFUSED], pytrace=False)


SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake_command(workdir: Path, *args: str, extra_configs=()) -> list[str]:
    """The workflow on the tiny .test config (plus overriding config files) in `workdir`."""
    # --configfile takes several files: last, so that it cannot swallow a target.
    return [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args,
            "--configfile", str(REPO / ".test/config.yaml"), *map(str, extra_configs)]


def snakemake(workdir: Path, *args: str, check=True, cwd: Path | None = None,
              env: dict | None = None, extra_configs=()) -> subprocess.CompletedProcess:
    command = snakemake_command(workdir, *args, extra_configs=extra_configs)
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd or workdir, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done


def ppca_distances(training: np.ndarray, new: np.ndarray, components: int) -> np.ndarray:
    """Mahalanobis distances (scipy) of ``new`` to ``training`` features under the PPCA
    covariance built from numpy's eigh: the distribution-shift references' distances
    recomputed apart from spinedx.stats.shift."""
    from scipy.spatial.distance import mahalanobis

    values, vectors = np.linalg.eigh(np.cov(training, rowvar=False))
    values, vectors = values[::-1], vectors[:, ::-1]
    d = training.shape[1]
    kept = vectors[:, :components]
    covariance = kept @ np.diag(values[:components]) @ kept.T + values[components:].sum() / (d - components) * (
        np.eye(d) - kept @ kept.T)
    precision = np.linalg.inv(covariance)
    return np.array([mahalanobis(x, training.mean(axis=0), precision) for x in new])


def same_printed(value, expected, what) -> None:
    """``value`` equals ``expected`` to the printed digit (3 decimals, as the tables are read)."""
    assert f"{value:.3f}" == f"{expected:.3f}", what


def assert_reader_model_row(results: Path, positive: pd.Series, overall: pd.Series, n_cases: int) -> None:
    """A two-class study of another shape: the reader study's model row equals its model's
    N-class rows on the read cases to the printed digit: ``positive`` (multiclass_per_class,
    the positive class) and ``overall`` (multiclass_overall)."""
    model = pd.read_csv(results / "tables/reader_study_metrics.csv").set_index("reader").loc["model"]
    assert model.n_cases == overall.n == n_cases
    for column in ("auc", "sensitivity", "sensitivity_lo", "sensitivity_hi", "specificity", "specificity_lo",
                   "specificity_hi", "f1"):
        same_printed(model[column], positive[column], column)
    for column in ("accuracy", "accuracy_lo", "accuracy_hi"):
        same_printed(model[column], overall[column], column)


def spinedx_audit(bundle: Path, auditor: Path) -> subprocess.CompletedProcess:
    """``spinedx audit`` of ``bundle`` in the auditor's folder: cohort/images, cohort/cases.csv
    and audit.yaml there, results in audit/; fails the test with the output's tail."""
    command = [sys.executable, "-m", "spinedx", "audit", "--bundle", str(bundle),
               "--images-dir", "cohort/images", "--cases", "cohort/cases.csv", "--results-dir", "audit",
               "--config", "audit.yaml", "--cores", "2"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=auditor,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One local run of the whole workflow on the tiny config: (workdir, results dir)."""
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "--cores", "2")
    return workdir, workdir / ".test/results"


@pytest.fixture(scope="session")
def tiny_reference(tiny_run, tmp_path_factory):
    """A frozen copy of the local run's tables and models, for comparisons with other
    executors (tests of the local run itself change some inputs later)."""
    _, results = tiny_run
    frozen = tmp_path_factory.mktemp("reference")
    for part in ("tables", "models"):
        shutil.copytree(results / part, frozen / part)
    return frozen


@pytest.fixture
def config():
    return configuration.resolve({})


def tree_hash(root: Path) -> str:
    """sha256 of every file under ``root``: relative path and bytes, in sorted order."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def write_labelme(json_path: Path, image_name: str | None, points, *, shape_type="rectangle",
                  size=(40, 30), extra: dict | None = None, image: np.ndarray | None = None,
                  image_mode: str = "L", shapes=None):
    """Write an image (unless image_name is None) and a labelme 5.x JSON next to it."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    if image_name is not None and image is not False:
        # Distinct pixels per file: identical images under two patients are refused.
        offset = sum(json_path.as_posix().encode())
        pixels = image if image is not None else ((np.arange(width * height) + offset) % 251).reshape(height, width).astype(np.uint8)
        Image.fromarray(pixels).convert(image_mode).save(json_path.parent / image_name)
    document = {
        "version": "5.4.1", "flags": {},
        "shapes": shapes if shapes is not None else [
            {"label": "tumor", "points": points, "group_id": None, "description": "",
             "shape_type": shape_type, "flags": {}, "mask": None}],
        "imagePath": image_name, "imageData": None, "imageHeight": height, "imageWidth": width,
    }
    document.update(extra or {})
    json_path.write_text(json.dumps(document))
    return json_path


@pytest.fixture
def tree(tmp_path):
    """A minimal valid study: 2 patients x T1 folder with one image each."""
    images = tmp_path / "images"
    for patient in ("P1", "P2"):
        write_labelme(images / patient / "T1WI" / f"{patient}_a.json", f"{patient}_a.png", [[5, 4], [20, 18]])
    cases = tmp_path / "cases.csv"
    pd.DataFrame({"patient_id": ["P1", "P2"], "diagnosis": ["ependymoma", "schwannoma"],
                  "cohort": ["internal", "external"], "age": [40, 70], "sex": ["F", "M"]}).to_csv(cases, index=False)
    return images, cases


@pytest.fixture(scope="session")
def fresh_clone_demo(tmp_path_factory):
    """The README's demo commands, exactly as written, on a clean clone of HEAD (what is
    fresh and what is reused: tests/first_run.py). One run per session, for read-only
    tests; skipped, with the reason, where this environment cannot stand in for
    envs/setup.sh's."""
    from first_run import run_first_demo

    record = run_first_demo(tmp_path_factory.mktemp("first_run"))
    if isinstance(record, str):
        pytest.skip(record)
    return record
