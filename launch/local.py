#!/usr/bin/env python
"""Run an audio-thinker job on a private, throw-away local Ray cluster, through the cluster path.

    python launch/local.py [--num-cpus 16] [--code installed|upload] [--recipe NAME] -- <hydra overrides>

It starts a Ray head of its own (``ray start --head --block`` with a fresh temporary directory,
free ports, token authentication with a fresh token, every port on 127.0.0.1, ``--num-cpus``),
submits the job with the
same code as ``launch/submit.py`` (Ray's Jobs API, the same runtime_env and overrides), streams the
log, writes it to ``<log dir>/job.log`` (default ``runs/launch/<submission id>/``) with a copy of the
cluster's own logs (``ray_logs/``), and stops the cluster it started. Exit status: the job's (130
on Ctrl-C).

Only its own cluster is ever stopped, never with ``ray stop`` (which stops every Ray process of
the machine): every process of the cluster inherits an environment variable holding a random
marker (``AUDIO_THINKER_LOCAL_RAY=<marker>``: the ``ray start`` processes, the GCS, raylet,
dashboard, workers, the job's driver), and stopping means SIGTERM to the ``ray start --block``
processes it spawned (Ray tears its node down), then SIGTERM/SIGKILL to whatever process still
carries the marker, then removing the temporary directory. This runs on success, failure, Ctrl-C
and SIGTERM; if this process is killed outright, the kernel sends SIGTERM to the ``ray start``
processes (``PR_SET_PDEATHSIG``), which stop their nodes. Ray writes the address of this cluster
into its own temporary directory, so ``ray.init(address="auto")`` elsewhere on the machine keeps
finding the cluster it found before.

``--code installed`` (default here) runs the job in the checkout with the installed package, as
``make demo`` does: relative paths (``data/``, ``models/``, ``checkpoints/``) are the repository's.
``--code upload`` ships the checkout as the job's working_dir, exactly as on a remote cluster:
relative paths then resolve inside that temporary copy, so pass absolute ones.

Loopback only: the head gets Ray's node IP 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in
the environment of every process of the cluster, Ray's macOS/Windows behaviour), so the GCS, raylet,
worker and agent ports, and what binds the node IP (TransferQueue's ZMQ sockets, which unpickle what
they receive) listen on this machine only. Such a cluster takes no worker nodes
(``LocalCluster(loopback=False)`` does, listening on the machine's address behind token auth).

The CPU preset needs ``--num-cpus 16`` logical CPUs (its resource pools reserve 3 per worker; Ray
does not pin them to cores), the default.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import job_client  # noqa: E402  (launch/job_client.py: the same submission code as submit.py)
import job_spec  # noqa: E402  (launch/job_spec.py)
from submit import add_job_arguments  # noqa: E402  (launch/submit.py: the same options)

REPO = job_spec.REPO
MARKER_VAR = "AUDIO_THINKER_LOCAL_RAY"
#: Ray's switch for its macOS/Windows behaviour: node IP 127.0.0.1, and no worker nodes
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: ``ray start`` flags whose default is a fixed port (a second cluster on the machine would collide)
PORT_FLAGS = ("--port", "--dashboard-port", "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
              "--ray-client-server-port", "--metrics-export-port", "--runtime-env-agent-port",
              "--node-manager-port", "--object-manager-port")
NODE_PORT_FLAGS = PORT_FLAGS[2:]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the kernel says are free now (bound together, then released)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


try:  # looked up here, not in the forked child (preexec_fn should do as little as possible)
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None
_PR_SET_PDEATHSIG = 1
_SIGTERM = int(signal.SIGTERM)


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the thread that started it exits (Linux)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


def processes_with_marker(marker: str) -> list[int]:
    """PIDs of the processes whose environment carries ``MARKER_VAR=marker`` (ours, readable only)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # zombies hold no resources; their parent reaps
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class _HeadExited(RuntimeError):
    """The head's `ray start` process exited before the cluster came up."""


class LocalCluster:
    """A Ray cluster on this machine that only this object starts and stops.

    ``with LocalCluster(num_cpus=16) as cluster: client = cluster.job_client()``. ``loopback`` (the
    default) keeps every port on 127.0.0.1; with ``loopback=False`` the cluster listens on the
    machine's address (token-authenticated) and ``add_node`` adds worker nodes (tests: several nodes
    on one machine)."""

    def __init__(self, num_cpus: float = 16, num_gpus: float = 0,
                 resources: Mapping[str, float] | None = None,
                 *, cwd: Path = REPO, start_timeout: float = 180.0, log=print, loopback: bool = True) -> None:
        self.num_cpus, self.num_gpus, self.resources = num_cpus, num_gpus, dict(resources or {})
        self.loopback = loopback
        self.cwd, self.start_timeout, self.log = Path(cwd), start_timeout, log
        self.marker = secrets.token_hex(8)
        # short: Ray's unix sockets live below it (107-byte path limit)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="atray-", dir="/tmp"))
        self.token = secrets.token_hex(32)
        self.token_file = self.temp_dir / "auth_token"
        self.token_file.write_text(self.token)
        self.token_file.chmod(0o600)
        self.procs: list[subprocess.Popen] = []
        self.gcs_address: str | None = None
        self.dashboard_url: str | None = None
        self.stopped = False

    # environment of every process of the cluster (and of clients that join it)
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", *LOOPBACK_ENV)}
        if self.loopback:
            env.update(LOOPBACK_ENV)
        env[MARKER_VAR] = self.marker
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN_PATH"] = str(self.token_file)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # `python` in the job's entrypoint is this interpreter (its virtualenv)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def client_env(self) -> dict[str, str]:
        """Environment for a process that joins this cluster (``ray.init()``, ``ray status``)."""
        env = self.env()
        env.pop(MARKER_VAR)
        env["RAY_ADDRESS"] = self.gcs_address or ""
        return env

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.temp_dir / log_name, "wb")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ray.scripts.scripts", "start", *args, "--block"],
                cwd=self.cwd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def _resource_args(self, num_cpus: float, num_gpus: float, resources: Mapping[str, float]) -> list[str]:
        args = [f"--num-cpus={int(num_cpus)}", f"--num-gpus={int(num_gpus)}"]
        if resources:
            args.append(f"--resources={json.dumps(dict(resources))}")
        return args

    def start(self, attempts: int = 3) -> LocalCluster:
        """Start the head; a head that exits during start-up (a port taken between choosing it and
        binding it) is retried with other ports."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_head()
            except _HeadExited as error:
                if attempt == attempts:
                    raise RuntimeError(str(error)) from None
                self.log(f"[local] the Ray head exited during start-up; retrying with other ports "
                         f"(...{str(error)[-600:]})")
                for proc in self.procs:
                    if proc.poll() is None:
                        proc.kill()
                    proc.wait()
                self.procs.clear()
                self._kill_marked()
        raise AssertionError("unreachable")

    def _start_head(self) -> LocalCluster:
        ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        args = ["--head", f"--temp-dir={self.temp_dir}", "--dashboard-host=127.0.0.1",
                "--include-dashboard=true",
                "--disable-usage-stats", *self._resource_args(self.num_cpus, self.num_gpus, self.resources),
                *(f"{flag}={port}" for flag, port in ports.items())]
        head = self._spawn(args, "ray_start_head.log")
        self.log(f"[local] starting a private Ray head (pid {head.pid}, temp dir {self.temp_dir}, "
                 f"{self.num_cpus:g} CPUs)")
        address_file = self.temp_dir / "ray_current_cluster"  # written by `ray start` once the head is up
        deadline = time.monotonic() + self.start_timeout
        while not address_file.is_file() or not address_file.read_text().strip():
            self._check_started(head, deadline)
            time.sleep(0.2)
        self.gcs_address = address_file.read_text().strip()
        self.dashboard_url = f"http://127.0.0.1:{ports['--dashboard-port']}"
        while True:  # the Jobs API (dashboard) comes up after the GCS
            try:
                self.job_client().list_jobs()
                break
            except Exception:
                self._check_started(head, deadline)
                time.sleep(0.5)
        self.log(f"[local] Ray head up: GCS {self.gcs_address}, Jobs API {self.dashboard_url}")
        return self

    def _check_started(self, proc: subprocess.Popen, deadline: float) -> None:
        if proc.poll() is not None or time.monotonic() > deadline:
            exited = proc.poll() is not None
            why = f"exited with {proc.returncode}" if exited else f"timed out after {self.start_timeout:g} s"
            log = ""
            for path in self.temp_dir.glob("ray_start_*.log"):
                log += path.read_text(errors="replace")[-3000:]
            error = _HeadExited if exited else RuntimeError
            raise error(f"local Ray cluster did not start ({why}):\n{log}")

    def add_node(self, num_cpus: float = 1, num_gpus: float = 0, resources: Mapping[str, float] | None = None,
                 ) -> subprocess.Popen:
        """Start a worker node of this cluster on this machine (``ray start --address``)."""
        assert self.gcs_address, "start() first"
        if self.loopback:
            raise RuntimeError("a loopback-only cluster takes no worker nodes: LocalCluster(loopback=False)")
        ports = free_ports(len(NODE_PORT_FLAGS))
        args = [f"--address={self.gcs_address}", "--disable-usage-stats",
                *self._resource_args(num_cpus, num_gpus, resources or {}),
                *(f"{flag}={port}" for flag, port in zip(NODE_PORT_FLAGS, ports, strict=True))]
        proc = self._spawn(args, f"ray_start_node{len(self.procs)}.log")
        self.log(f"[local] starting a worker node (pid {proc.pid}, {num_cpus:g} CPUs, resources {resources})")
        return proc

    def job_client(self) -> Any:
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard_url, headers=self.headers)

    def pids(self) -> list[int]:
        """Every live process of this cluster."""
        return sorted(set(processes_with_marker(self.marker)) | {p.pid for p in self.procs if _alive(p.pid)})

    def copy_logs(self, dest: Path) -> Path | None:
        """Copy the cluster's own logs (``session_latest/logs``) to ``dest``."""
        source = self.temp_dir / "session_latest" / "logs"
        if not source.is_dir():
            return None
        shutil.copytree(source, dest, symlinks=False, ignore_dangling_symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.sock", "sockets"))
        for path in self.temp_dir.glob("ray_start_*.log"):
            shutil.copy2(path, dest / path.name)
        return dest

    def stop(self, grace_s: float = 20.0) -> dict[str, Any]:
        """Stop this cluster and nothing else; returns what it did. Idempotent."""
        if self.stopped:
            return {"already_stopped": True}
        report: dict[str, Any] = {"marker": self.marker, "temp_dir": str(self.temp_dir)}
        # 1. the `ray start --block` processes: on SIGTERM each tears its node down (workers first)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # 2. anything that still carries the marker (job driver, stray workers)
        report["terminated_leftovers"] = self._kill_marked()
        report["survivors"] = [pid for pid in processes_with_marker(self.marker)]
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.stopped = True
        self.log(f"[local] private Ray cluster stopped ({self.temp_dir} removed"
                 f"{', survivors: ' + str(report['survivors']) if report['survivors'] else ''})")
        return report

    def _kill_marked(self) -> list[int]:
        """SIGTERM, then SIGKILL, every process carrying this cluster's marker; their PIDs."""
        leftover = processes_with_marker(self.marker)
        found = list(leftover)
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in leftover:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                leftover = [pid for pid in leftover if _alive(pid)]
                if not leftover:
                    break
                time.sleep(0.1)
            if not leftover:
                break
        return found

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python launch/local.py",
        description="Run an audio-thinker job on a private local Ray cluster (started and stopped here) "
                    "through the Ray Jobs API. Hydra overrides go after --, unchanged.",
        epilog="example: python launch/local.py -- backbone=tiny_cpu trainer.total_training_steps=2",
    )
    p.add_argument("--num-cpus", type=float, default=16,
                   help="logical CPUs of the local cluster (default 16: what the CPU preset reserves)")
    p.add_argument("--num-gpus", type=float, default=0, help="GPUs of the local cluster (default 0)")
    p.add_argument("--resources", default=None, help='custom resources, JSON: \'{"judge_node": 1}\'')
    p.add_argument("--log-dir", type=Path, default=None,
                   help="where job.log, ray_logs/ and cluster.json go (default runs/launch/<submission id>)")
    p.add_argument("--no-ray-logs", action="store_true", help="do not copy the cluster's own logs")
    p.add_argument("--start-timeout", type=float, default=180.0, help="seconds for the cluster to come up")
    add_job_arguments(p, code_default="installed")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    own, overrides = job_spec.split_argv(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(own)
    args.install = "image"  # the local environment is the image
    try:
        spec = job_spec.prepare_job(args, overrides)  # config errors fail here, before any cluster
    except job_spec.LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(spec.describe(), flush=True)
    if args.dry_run:
        return 0
    if spec.submission_id is None:
        spec.submission_id = f"local-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    log_dir = args.log_dir or (REPO / "runs" / "launch" / spec.submission_id)
    log_dir.mkdir(parents=True, exist_ok=True)
    previous_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    resources = json.loads(args.resources) if args.resources else None
    cluster = LocalCluster(args.num_cpus, args.num_gpus, resources, start_timeout=args.start_timeout)
    record: dict[str, Any] = {"marker": cluster.marker, "temp_dir": str(cluster.temp_dir),
                              "submission_id": spec.submission_id, "marker_var": MARKER_VAR}
    code = 1
    try:
        cluster.start()
        record.update(gcs_address=cluster.gcs_address, dashboard_url=cluster.dashboard_url,
                      ray_start_pids=[p.pid for p in cluster.procs], pids_at_start=cluster.pids())
        (log_dir / "cluster.json").write_text(json.dumps(record, indent=2))
        client = cluster.job_client()
        code = job_client.run_job(client, spec, log_file=log_dir / "job.log", stop_on_interrupt=True,
                            address=cluster.dashboard_url)
    except KeyboardInterrupt:
        print("\n[local] interrupted", file=sys.stderr, flush=True)
        code = 130
    except Exception as error:
        print(f"[local] error: {spec.redact(str(error))}", file=sys.stderr, flush=True)
        code = 1
    finally:
        try:
            # a second Ctrl-C / SIGTERM must not cut the cleanup short
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if not args.no_ray_logs:
                try:
                    cluster.copy_logs(log_dir / "ray_logs")
                except OSError as error:
                    print(f"[local] could not copy the Ray logs: {error}", file=sys.stderr)
            record["stop"] = cluster.stop()
            record["exit_status"] = code
            (log_dir / "cluster.json").write_text(json.dumps(record, indent=2))
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous)
    print(f"[local] logs: {log_dir}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
