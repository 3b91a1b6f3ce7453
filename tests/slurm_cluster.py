"""A real single-node SLURM cluster for tests: Debian's slurm-wlm + munge, started as root.

Everything SLURM writes (config, state, spool, pid files, daemon logs) lives in one
temporary folder; the controller and node daemon listen on free ports, so a site's own
SLURM on the same machine is not disturbed. Only the daemons started here are stopped.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
# Where srun looks without $SLURM_CONF. The slurm-jobstep plugin strips every SLURM_*
# variable before its nested srun, so jobs find our temporary config only through this
# path: it is linked for the life of the cluster when no site config is there.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
FAKE_GPUS = 2
# One test cluster per machine at a time: SYSTEM_CONF is machine-wide, so a second cluster
# (another pytest worker or another checkout's suite) would point the first one's jobs at
# its own controller, which refuses them ("srun: Unable to confirm allocation for job N:
# Invalid job id specified"). Clusters take this lock for their whole life; others wait.
MACHINE_LOCK = Path("/run/lock/spinedx-test-slurm.lock")


def _is_test_config(link: Path) -> bool:
    target = link.resolve()
    return not target.exists() or "ClusterName=spinedxtest" in target.read_text()


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be installed or started here (the test is skipped with this reason)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ensure_installed() -> None:
    """Install slurm-wlm and munge from Debian when missing (needs root and apt)."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterUnavailable("slurm-wlm and munge are missing and cannot be installed "
                                 "(needs root on Debian/Ubuntu)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ClusterUnavailable(f"{' '.join(command)} failed: {done.stderr[-2000:]}")


class SlurmCluster:
    """A controller and one node named localhost with the machine's CPUs and 2 fake GPUs."""

    def __init__(self, root: Path, machine_lock: Path = MACHINE_LOCK):
        self.root = Path(root)
        self.machine_lock = Path(machine_lock)
        self.conf = self.root / "slurm.conf"
        self.started: list[tuple[str, Path]] = []  # (daemon, pid file) started by us
        self.linked_system_conf = False
        self._lock = None  # open file holding machine_lock while this cluster lives

    @property
    def env(self) -> dict[str, str]:
        """Environment in which sbatch/squeue/scontrol talk to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        for name in ("state", "spool", "log", "run", "dev"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        # Two character devices stand in for GPUs so that --gpus requests are schedulable;
        # SLURM then sets CUDA_VISIBLE_DEVICES per job as it would on a GPU node.
        for index in range(FAKE_GPUS):
            device = self.root / "dev" / f"nvidia{index}"
            if not device.exists():
                os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        run = self.root / "run"
        self.conf.write_text(f"""\
ClusterName=spinedxtest
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={self.root / 'state'}
SlurmdSpoolDir={self.root / 'spool'}
SlurmctldPidFile={run / 'slurmctld.pid'}
SlurmdPidFile={run / 'slurmd.pid'}
SlurmctldLogFile={self.root / 'log/slurmctld.log'}
SlurmdLogFile={self.root / 'log/slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# squeue-based status polling needs finished jobs to stay visible for a while
# (>= 3 x slurm-init-seconds-before-status-checks in the profile); an hour also keeps
# the whole test run in the controller's history for the assertions.
MinJobAge=3600
JobRequeue=1
GresTypes=gpu
NodeName=localhost CPUs={os.cpu_count()} RealMemory={memory_mb} Gres=gpu:fake:{FAKE_GPUS} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        (self.root / "gres.conf").write_text(
            f"Name=gpu Type=fake File={self.root / 'dev'}/nvidia[0-{FAKE_GPUS - 1}]\n")

    def _start_munge(self) -> None:
        if MUNGE_SOCKET.exists() and subprocess.run(
                ["munge", "-n"], capture_output=True).returncode == 0:
            return  # a working munged is already there: use it, do not own it
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_SOCKET.parent, "munge", "munge")
        pid_file = Path("/run/munge/munged.pid")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True,
                       capture_output=True)
        self.started.append(("munged", pid_file))

    def _take_machine_lock(self, wait: float) -> None:
        self.machine_lock.parent.mkdir(parents=True, exist_ok=True)
        lock = self.machine_lock.open("a")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock = lock
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise ClusterUnavailable(f"another test SLURM cluster on this machine held {self.machine_lock} "
                                             f"for over {wait:.0f} s") from None
                time.sleep(2)

    def start(self, timeout: float = 30, wait_for_other: float = 1800) -> "SlurmCluster":
        ensure_installed()
        if os.geteuid() != 0:
            raise ClusterUnavailable("starting slurmctld/slurmd needs root")
        self._take_machine_lock(wait_for_other)
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> "SlurmCluster":
        if SYSTEM_CONF.is_symlink() and _is_test_config(SYSTEM_CONF):
            SYSTEM_CONF.unlink()  # left by an interrupted test run (the lock says none is live)
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise ClusterUnavailable(f"{SYSTEM_CONF} exists (a site SLURM?); the test cluster "
                                     "needs that path for the srun inside each job")
        self.write_config()
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self.linked_system_conf = True
        self._start_munge()
        env = self.env
        subprocess.run(["slurmctld"], env=env, check=True, capture_output=True)
        self.started.append(("slurmctld", self.root / "run/slurmctld.pid"))
        subprocess.run(["slurmd", "-N", "localhost"], env=env, check=True, capture_output=True)
        self.started.append(("slurmd", self.root / "run/slurmd.pid"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                   text=True).stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.5)
        self.stop()
        raise ClusterUnavailable(f"the SLURM node did not become idle within {timeout} s "
                                 f"(state {state!r}); see {self.root / 'log'}")

    def stop(self) -> None:
        """Stop exactly the daemons this object started, newest first."""
        for name, pid_file in reversed(self.started):
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
        self.started.clear()
        if self.linked_system_conf and SYSTEM_CONF.is_symlink():
            SYSTEM_CONF.unlink()
        self.linked_system_conf = False
        if self._lock is not None:
            self._lock.close()  # releases the machine lock
            self._lock = None

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller remembers (MinJobAge keeps finished ones for an hour),
        as scontrol's key=value fields (JobId, JobState, TresPerJob, Comment, StdOut, ...)."""
        out = subprocess.run(["scontrol", "-o", "show", "job"], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        return [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in out.splitlines()
                if line.startswith("JobId=")]
