"""A newcomer's first run: the README's demo commands succeed on a clean clone.

The commands are read from README.md ("## Quick start", first bash block) and run exactly
as written, in order, in a clean clone of HEAD (committed files only), with empty user
caches, so the first run pays what a new machine pays (the Stan model compiles). The
Python environment is the running one, linked as the clone's ``.venv`` only when
``envs/setup.sh`` built it from identical pins, so ``bash envs/setup.sh`` returns in about
a second as on a user's second call (tests/first_run.py explains the procedure; a fresh
``.venv`` would cost minutes and ~3 GB). Every output the README's "Outputs" table lists
must exist afterwards, the report must build, the bundle must verify with the README's
``sha256sum -c`` and provenance must name the clean commit. The demo takes minutes; the
run is one session fixture (``fresh_clone_demo``) that other read-only tests can share.
"""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from spinedx import config as configuration
from spinedx.aggregation import ALL_INPUT

from first_run import readme_demo_commands, readme_outputs

# One xdist worker runs every test of the one fresh-clone demo (pytest -n 2 --dist loadgroup).
pytestmark = [pytest.mark.workflow, pytest.mark.firstrun, pytest.mark.xdist_group(name="first_run")]


@pytest.fixture(scope="module")
def demo(fresh_clone_demo):
    if not fresh_clone_demo.succeeded:
        pytest.fail(fresh_clone_demo.failure(), pytrace=False)
    return fresh_clone_demo


def test_the_readme_demo_commands_succeed_on_a_clean_clone(fresh_clone_demo):
    run = fresh_clone_demo
    assert run.commands == readme_demo_commands((run.clone / "README.md").read_text())
    assert run.commands[0].startswith("bash envs/setup.sh && ") and "snakemake --report" in run.commands[-1]
    assert run.succeeded, run.failure()
    assert "set-up: .venv is up to date" in run.outputs[0]  # the environment stood in, nothing installed
    print("".join(f"\n{wall:.1f} s: {command}" for command, wall in zip(run.commands, run.walls)))


def test_every_output_the_readme_lists_exists(demo):
    config = configuration.load(demo.clone / "config/config.yaml")
    sequences = list(config["sequences"])
    files, folders = readme_outputs((demo.clone / "README.md").read_text(), sequences, config["backbones"],
                                    config["splits"]["n_folds"], [*sequences, ALL_INPUT])
    results = demo.clone / config["results_dir"]
    assert len(files) > 100 and len(folders) > 10
    missing = [name for name in files if not (results / name).is_file() or not (results / name).stat().st_size]
    assert not missing, missing
    empty = [name for name in folders if not any((results / name).iterdir())]
    assert not empty, empty
    for name in files:
        if name.endswith(".pdf"):
            assert (results / name).read_bytes()[:5] == b"%PDF-", name
        elif name.endswith(".png"):
            assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    table3 = pd.read_csv(results / "tables/table3_case_level.csv")
    assert list(table3.input) == [*sequences, ALL_INPUT] and table3.auc.between(0, 1).all()


def test_the_report_builds_with_every_section(demo):
    report = demo.clone / "results/report.html"
    html = report.read_text()
    for section in ("1. Cohort", "2. Model development", "3. Backbone comparison", "4. Final system",
                    "5. Meta-analysis", "6. Interpretability", "7. Reproducibility"):
        assert section in html, section
    assert report.stat().st_size > 1_000_000  # figures embedded


def test_the_bundle_verifies_with_the_readmes_command(demo):
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=demo.clone / "results/bundle",
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # 15 fold models, model card JSON and Markdown, 3 distribution-shift references (one per sequence)
    assert done.stdout.count(": OK") == 15 + 2 + 3


def test_provenance_names_the_clean_commit_and_the_run_leaves_the_clone_clean(demo):
    record = json.loads((demo.clone / "results/provenance.json").read_text())
    assert record["code"]["git_commit"] == demo.commit and record["code"]["git_dirty"] is False
    # Everything the run wrote is ignored by git: results/, .snakemake/, the .venv link.
    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=demo.clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status
