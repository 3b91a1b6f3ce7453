"""Per-job machine concerns: GPU claiming for concurrent local jobs, SLURM log pointers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from spinedx import runtime
from spinedx.models import device


@pytest.fixture(autouse=True)
def _release():
    yield
    runtime.release_gpus()


def test_concurrent_claims_spread_over_devices_and_reuse_released_ones(tmp_path):
    # Each claim holds its own open lock file, as a separate process would.
    assert [runtime.claim_gpu(2, tmp_path) for _ in range(5)] == [0, 1, 0, 1, 0]
    # Free one slot of device 1 (the job on it ended): device 1 now has the fewest jobs.
    held = [h for h in runtime._GPU_CLAIMS if "gpu1." in h.name]
    runtime._GPU_CLAIMS.remove(held[0])
    held[0].close()
    assert runtime.claim_gpu(2, tmp_path) == 1
    runtime.release_gpus()
    assert runtime.claim_gpu(3, tmp_path) == 0


def test_claims_of_separate_processes_do_not_collide_and_end_with_the_process(tmp_path):
    holder = textwrap.dedent(f"""
        import sys, time
        from spinedx import runtime
        print(runtime.claim_gpu(2, {str(tmp_path)!r}), flush=True)
        sys.stdin.readline()
    """)
    first = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline().strip() == "0"
    assert runtime.claim_gpu(2, tmp_path) == 1
    assert runtime.claim_gpu(2, tmp_path) == 0  # both busy once: back to the lowest index
    runtime.release_gpus()
    first.kill()  # a killed job (preemption, OOM) frees its GPU without any clean-up
    first.wait()
    assert [runtime.claim_gpu(2, tmp_path) for _ in range(2)] == [0, 1]


def test_select_device_claims_a_gpu_only_when_several_are_visible(tmp_path, monkeypatch):
    monkeypatch.setenv("SPINEDX_GPU_LOCK_DIR", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [device.select_device("auto") for _ in range(3)] == [
        torch.device("cuda", 0), torch.device("cuda", 1), torch.device("cuda", 0)]
    assert device.select_device("cuda:1") == torch.device("cuda", 1)  # explicit: no claim
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.select_device("cuda") == torch.device("cuda", 0)
    assert len(list(tmp_path.glob("gpu*.lock"))) == 3


def test_no_scheduler_note_outside_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert runtime.scheduler_note() is None


def test_scheduler_note_names_the_job_node_restart_and_slurm_log(tmp_path, monkeypatch):
    scontrol = tmp_path / "scontrol"
    scontrol.write_text("#!/bin/sh\necho \"JobId=$4 JobName=x Restarts=2 StdOut=/work/.snakemake/"
                        "slurm_logs/rule_training/resnet10t_T2_0/$4.log StdErr=/dev/null\"\n")
    scontrol.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu07")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)  # dropped by the job step
    assert runtime.scheduler_note() == (
        "SLURM job 4242 on gpu07, restart 2; "
        "SLURM log: /work/.snakemake/slurm_logs/rule_training/resnet10t_T2_0/4242.log")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # scontrol missing: still a note
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert runtime.scheduler_note() == "SLURM job 4242 on gpu07, restart 1"
