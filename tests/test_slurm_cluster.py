"""The test cluster's machine lock (tests/slurm_cluster.py), without starting daemons."""

from __future__ import annotations

import pytest

from slurm_cluster import ClusterUnavailable, SlurmCluster


def test_a_second_test_cluster_waits_for_the_first_and_then_gets_the_machine(tmp_path):
    lock = tmp_path / "machine.lock"  # not the real one: a real test cluster may be running
    first, second = SlurmCluster(tmp_path / "a", lock), SlurmCluster(tmp_path / "b", lock)
    first._take_machine_lock(wait=0)
    try:
        # While the first lives, a second one on the machine (another worker or checkout)
        # must not start: it would relink /etc/slurm/slurm.conf under the first one's jobs.
        with pytest.raises(ClusterUnavailable, match="another test SLURM cluster"):
            second._take_machine_lock(wait=0)
    finally:
        first.stop()  # releases the lock (no daemons were started)
    second._take_machine_lock(wait=0)
    second.stop()
