"""`snakemake --profile slurm` on a real single-node SLURM controller (not a mock).

The cluster (slurm_cluster.py) is started for this module and only its own daemons are
stopped afterwards. Skipped where SLURM cannot be installed or started (not root, no apt).
"""

from __future__ import annotations

import re
import subprocess
import time

import pandas as pd
import pytest
import torch

from conftest import REPO, snakemake, snakemake_command
from slurm_cluster import ClusterUnavailable, SlurmCluster

# With the other users of the shared tiny run on one xdist worker (tiny_reference).
pytestmark = [pytest.mark.workflow, pytest.mark.slurm, pytest.mark.xdist_group(name="tiny_run")]

BACKBONES = ["mobilenetv3_small_050", "resnet10t"]
SEQUENCES = ["T1", "T2", "CE-T1"]
FOLDS = [0, 1, 2]
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    except ClusterUnavailable as reason:
        pytest.skip(f"no SLURM cluster here: {reason}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    """The users' command, from the repository root (where `--profile slurm` is found)."""
    workdir = tmp_path_factory.mktemp("slurm_workflow")
    done = snakemake(workdir, "--profile", "slurm", "--cores", "2", cwd=REPO, env=cluster.env)
    submitted = {int(job_id): log for job_id, log in SUBMITTED.findall(done.stdout + done.stderr)}
    return workdir, workdir / ".test/results", submitted


def training_jobs(submitted: dict[int, str]) -> dict[str, int]:
    """wildcards (e.g. resnet10t_T2_0) -> SLURM job id of every submitted training job."""
    jobs = {}
    for job_id, log in submitted.items():
        match = re.search(r"/rule_training/([^/]+)/\d+\.log$", log)
        if match:
            jobs[match.group(1)] = job_id
    return jobs


def test_every_training_job_went_through_sbatch_with_a_gpu(slurm_run, cluster):
    _, results, submitted = slurm_run
    training = training_jobs(submitted)
    expected = {f"{b}_{s}_{f}" for b in BACKBONES for s in SEQUENCES for f in FOLDS}
    assert set(training) == expected
    remembered = {int(job["JobId"]): job for job in cluster.jobs()}
    for wildcards, job_id in training.items():
        job = remembered[job_id]  # the controller ran it (squeue/scontrol history)
        assert job["JobState"] == "COMPLETED", job
        assert job["Comment"] == f"rule_training_wildcards_{wildcards}"
        assert "gpu:1" in job["TresPerJob"], job  # the rule's gpu resource became --gpus=1
        backbone, sequence, fold = wildcards.rsplit("_", 2)
        rule_log = results / f"logs/training/{backbone}/{sequence}/fold{fold}.log"
        # The rule's log names the SLURM job and that job's own log, which exists.
        note = re.search(r"SLURM job (\d+) on \S+; SLURM log: (\S+)", rule_log.read_text())
        assert note and int(note.group(1)) == job_id, rule_log.read_text()[:500]
        assert note.group(2) == submitted[job_id] and (REPO / note.group(2)).is_file()
    # GPU stages are submitted; bookkeeping stages are localrules and are not.
    rules = {re.search(r"/rule_(\w+?)/", log).group(1) for log in submitted.values()}
    assert rules == {"preprocessing", "training", "inference", "gradcam", "meta_analysis", "shift_reference"}


def test_results_equal_a_local_run(slurm_run, tiny_reference):
    _, results, _ = slurm_run
    tables = sorted(p.name for p in (tiny_reference / "tables").glob("*.csv"))
    assert "table3_case_level.csv" in tables
    assert tables == sorted(p.name for p in (results / "tables").glob("*.csv"))
    for name in tables:
        # Deterministic mode (one thread) on both sides: identical models and tables.
        pd.testing.assert_frame_equal(pd.read_csv(results / "tables" / name),
                                      pd.read_csv(tiny_reference / "tables" / name),
                                      check_exact=False, rtol=1e-9, obj=name)
    for reference in sorted((tiny_reference / "models").rglob("best.pt")):
        ours = results / "models" / reference.relative_to(tiny_reference / "models")
        expected = torch.load(reference, weights_only=True)["state_dict"]
        actual = torch.load(ours, weights_only=True)["state_dict"]
        assert all(torch.equal(actual[k], expected[k]) for k in expected), ours


def _job_of(cluster: SlurmCluster, wildcards: str) -> dict | None:
    return next((job for job in cluster.jobs()
                 if job.get("Comment") == f"rule_training_wildcards_{wildcards}"
                 and job["JobState"] in ("PENDING", "RUNNING", "CONFIGURING")), None)


def release_requeued(cluster: SlurmCluster, job_id: str, wait: float = 60) -> None:
    """SLURM holds a requeued job for about two minutes (it pends with reason BeginTime);
    a test has no use for that wait, so the job may start again at once. What is tested,
    the second run resuming from last.pt, is unchanged."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        job = next(j for j in cluster.jobs() if j["JobId"] == job_id)
        if job["JobState"] == "PENDING":
            if job.get("Reason") == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                               env=cluster.env, check=True)
            return
        time.sleep(0.2)


def test_a_requeued_training_job_resumes_and_selects_the_same_epoch(cluster, tmp_path):
    """Preemption: SLURM requeues a running job; the new run resumes from last.pt and
    ends with the history and weights of an uninterrupted run."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    results = workdir / ".test/results"
    longer = tmp_path / "longer.yaml"  # long enough to requeue the job mid-run
    # One job per fold on both sides (locally too: the reference trains this fold only).
    longer.write_text("training:\n  epochs: 40\ntraining_jobs: per_fold\n")
    fold_dir = results / "models/resnet10t/T2/fold0"
    target = str(fold_dir.relative_to(workdir) / "best.pt")

    # Uninterrupted reference, locally: this one job and what it needs.
    snakemake(workdir, target, "--cores", "2", extra_configs=[longer])
    uninterrupted = {"history": pd.read_csv(fold_dir / "history.tsv", sep="\t"),
                     "weights": torch.load(fold_dir / "best.pt", weights_only=True)["state_dict"]}
    for name in ("best.pt", "history.tsv", "config.yaml"):
        (fold_dir / name).unlink()

    command = snakemake_command(workdir, target, "--profile", "slurm", "--cores", "1",
                                extra_configs=[longer])
    head = subprocess.Popen(command, cwd=REPO, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (fold_dir / "last.pt").exists():  # at least one epoch done
            assert head.poll() is None and time.monotonic() < deadline, "training never started"
            time.sleep(0.05)
        job = _job_of(cluster, "resnet10t_T2_0")
        assert job is not None and not (fold_dir / "best.pt").exists(), "job ended before requeue"
        subprocess.run(["scontrol", "requeue", job["JobId"]], env=cluster.env, check=True)
        release_requeued(cluster, job["JobId"])
        output, _ = head.communicate(timeout=600)
    finally:
        if head.poll() is None:
            head.kill()
    assert head.returncode == 0, output[-4000:]

    requeued = next(j for j in cluster.jobs() if j["JobId"] == job["JobId"])
    assert requeued["JobState"] == "COMPLETED" and requeued["Restarts"] == "1", requeued
    log = (results / "logs/training/resnet10t/T2/fold0.log").read_text()
    assert f"SLURM job {job['JobId']} on localhost, restart 1" in log, log[:1000]
    resumed = re.search(r"resumed from \S+ after epoch (\d+)", log)
    assert resumed and 1 <= int(resumed.group(1)) < 40, log[:2000]
    history = pd.read_csv(fold_dir / "history.tsv", sep="\t")
    pd.testing.assert_frame_equal(history.drop(columns="seconds", errors="ignore"),
                                  uninterrupted["history"].drop(columns="seconds", errors="ignore"))
    weights = torch.load(fold_dir / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], uninterrupted["weights"][k]) for k in weights)
    assert not (fold_dir / "last.pt").exists()
