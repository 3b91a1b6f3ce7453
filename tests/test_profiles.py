"""The `slurm` and `local` Snakemake profiles: the settings that measured pitfalls depend on.

The SLURM profile runs for real in test_slurm.py (needs root); these checks run anywhere.
"""

from __future__ import annotations

import re

import yaml

from conftest import REPO, snakemake

RULES = set(re.findall(r"^\s*rule (\w+):", "".join(
    p.read_text() for p in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]), re.M))
DEFAULT_MIN_JOB_AGE_S = 300


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / name / "config.yaml").read_text())


def test_slurm_profile_polls_with_squeue_within_min_job_age():
    slurm = profile("slurm")
    assert slurm["executor"] == "slurm"
    assert slurm["slurm-status-command"] == "squeue"
    # The plugin falls back to sacct (which hangs without slurmdbd) unless finished jobs
    # stay visible for 3 x the initial wait.
    assert 3 * slurm["slurm-init-seconds-before-status-checks"] <= DEFAULT_MIN_JOB_AGE_S
    assert slurm["slurm-keep-successful-logs"] is True


def test_slurm_profile_leaves_cpus_to_threads_and_names_existing_rules():
    slurm = profile("slurm")
    # A default cpus_per_task would override every rule's threads (--cpus-per-task).
    assert "cpus_per_task" not in slurm["default-resources"]
    assert set(slurm["set-resources"]) <= RULES
    for resource in ("slurm_partition", "slurm_account"):
        assert "SPINEDX_SLURM_" in slurm["default-resources"][resource]


def test_localrules_are_real_rules_and_training_is_submitted():
    # Local rules carry `localrule: True` on themselves (the rule's own block).
    local = set()
    for text in [(REPO / "Snakefile").read_text(), *(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))]:
        for block in re.split(r"^\s*(?=rule \w+:)", text, flags=re.M):
            name = re.match(r"rule (\w+):", block)
            if name and re.search(r"^\s*localrule: True$", block, re.M):
                local.add(name.group(1))
    assert local and local <= RULES
    assert not local & {"training", "inference", "preprocessing", "meta_analysis"}


def test_local_profile_caps_gpu_jobs(tmp_path):
    assert profile("local")["resources"] == {"gpu": 1}
    # The bare name resolves from the repository root and the plan is accepted.
    done = snakemake(tmp_path, "--profile", "local", "-n", "--cores", "2", cwd=REPO)
    assert "training" in done.stdout


def test_local_runs_train_folds_together_and_slurm_keeps_one_job_per_fold(tmp_path):
    """The executor is not visible to the Snakefile when it builds the jobs, so the
    profile says it: the SLURM profile sets training_jobs=per_fold (one cluster job per
    fold model); a plain local run trains a backbone x sequence's folds in one job."""
    assert "training_jobs=per_fold" in profile("slurm")["config"]
    jobs = r"^(training|training_folds)\s+(\d+)$"
    local = dict(re.findall(jobs, snakemake(tmp_path, "-n", "--cores", "2").stdout, re.M))
    slurm = dict(re.findall(jobs, snakemake(tmp_path, "--profile", "slurm", "-n", "--cores", "2", cwd=REPO).stdout,
                            re.M))
    # .test: 2 backbones x 3 sequences x 3 folds.
    assert local == {"training_folds": "6"} and slurm == {"training": "18"}
