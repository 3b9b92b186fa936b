"""The cluster launchers (``launch/``): job submission, the private local cluster, resource polling,
the SLURM script (with stand-ins for ``srun``/``scontrol``) and the KubeRay manifest, on CPU.

Clusters started here are private (``launch.local.LocalCluster``: own temp dir, free ports, own
token); a pre-existing unrelated cluster (one this module starts first) must survive every test.
The end-to-end test runs ``launch/local.py`` with the tiny CPU preset for one GRPO step (~2 min on
2 cores): start a cluster, submit through the Jobs API with the working_dir upload, wait, check the
logged step, collect the logs, stop only that cluster.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

if not sys.platform.startswith("linux"):
    pytest.skip("the launchers' process bookkeeping reads /proc (Linux)", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
sys.path.insert(0, str(LAUNCH))

import job_client  # noqa: E402  (launch/job_client.py)
import job_env  # noqa: E402  (launch/job_env.py)
import job_spec  # noqa: E402  (launch/job_spec.py)
import local  # noqa: E402  (launch/local.py)
import wait_for_resources  # noqa: E402  (launch/wait_for_resources.py)

PY = sys.executable
RECIPE = "tiny_cpu/grpo_atar"


def _args(**kw):
    defaults = dict(recipe=None, entry=None, python="python", job_id=None, entrypoint_num_cpus=None,
                    entrypoint_num_gpus=None, entrypoint_resources=None, code="upload",
                    runtime_env=str(job_env.RUNTIME_ENV_FILE), env=[], no_validate=True, log_file=None,
                    dry_run=True, install="image", pip_extras="gpu")
    defaults.update(kw)
    return SimpleNamespace(**defaults)


def _wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# submission: pure parts
# ---------------------------------------------------------------------------------------------


def test_overrides_after_double_dash_reach_the_entry_point_unchanged():
    user = ["trainer.total_training_steps=1", "trainer.logger=[console,file]", "+x.y='a b'",
            'data.val_files="/p with space/v.parquet"', "~trainer.foo", "hydra.run.dir=/tmp/$HOME"]
    own, overrides = job_spec.split_argv(["--no-wait", "--", *user])
    assert own == ["--no-wait"] and overrides == user
    spec = job_spec.prepare_job(_args(), overrides)
    argv = shlex.split(spec.entrypoint)
    assert argv[:3] == ["python", "-m", "audio_thinker.main_grpo"]
    # the one added override comes before the user's (theirs win), then theirs byte for byte
    assert argv[3:] == ["ray_kwargs.ray_init.num_cpus=null", *user]
    other = job_spec.prepare_job(_args(entry="audio_thinker.main_sft"), ["a=1"])
    assert shlex.split(other.entrypoint)[3:] == ["a=1"], "only main_grpo calls ray.init with num_cpus"


def test_recipe_expands_to_its_entry_and_overrides_then_the_users():
    backbone, row = RECIPE.split("/")
    assert (REPO / "conf" / "experiment" / f"{row}.yaml").is_file(), f"conf/experiment/{row}.yaml is missing"
    entry, recipe_overrides, extra = job_spec.recipe_command(RECIPE, ["trainer.total_training_steps=1"])
    assert entry == "audio_thinker.main_grpo"
    assert recipe_overrides == [f"backbone={backbone}", f"experiment={row}"]
    assert extra == ["trainer.total_training_steps=1"]
    spec = job_spec.prepare_job(_args(recipe=RECIPE), ["trainer.total_training_steps=1"])
    argv = shlex.split(spec.entrypoint)
    assert argv[2] == entry
    assert argv[3:] == [*recipe_overrides, "ray_kwargs.ray_init.num_cpus=null", "trainer.total_training_steps=1"]
    assert spec.metadata["recipe"] == RECIPE
    sft = job_spec.prepare_job(_args(recipe="qwen2_audio_7b/sft_cot"), [])
    assert shlex.split(sft.entrypoint)[2:] == ["audio_thinker.main_sft", "backbone=qwen2_audio_7b",
                                               "experiment=sft_cot"]
    with pytest.raises(job_spec.LaunchError, match="known recipes: .*tiny_cpu/grpo_atar"):
        job_spec.recipe_command("tiny_cpu/nope")


def test_recipe_without_the_recipes_module_says_how_to_fix(monkeypatch):
    real_import = job_spec.importlib.import_module

    def no_recipes(name, *a, **k):
        if name == "audio_thinker.recipes":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(job_spec.importlib, "import_module", no_recipes)
    with pytest.raises(job_spec.LaunchError, match="pass --entry and the overrides backbone=<backbone> experiment"):
        job_spec.recipe_command("b/r", ["x=1"])


def test_the_config_check_is_the_recipes_compose():
    """One compose-and-validate for the launcher and ``python -m audio_thinker.recipes compose``."""
    config = job_spec.compose_config("audio_thinker.main_grpo", ["backbone=tiny_cpu", "experiment=grpo_cot"])
    assert config.audio_thinker.prompt_mode == "think" and config.trainer.experiment_name == "tiny_cpu-grpo_cot"
    with pytest.raises(job_spec.LaunchError, match="config error: .*trainer.totl_training_steps"):
        job_spec.compose_config("audio_thinker.main_grpo", ["backbone=tiny_cpu", "trainer.totl_training_steps=1"])
    with pytest.raises(job_spec.LaunchError, match="config error: verl refuses this config"):
        job_spec.compose_config("audio_thinker.main_grpo", ["backbone=tiny_cpu", "data.train_batch_size=2"])
    with pytest.raises(ImportError, match="not a hydra entry point"):
        job_spec.compose_config("platform", [])


def test_runtime_env_ships_the_code_without_heavy_folders_and_sets_the_config_env():
    base = job_env.load_runtime_env_file()
    config_env = {"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": "a.b"}
    env = job_env.build_runtime_env(base, config_env=config_env, extra_env={"HF_HOME": "/h"})
    assert env["working_dir"] == str(REPO)
    for pattern in (".git", ".venv", "/checkpoints", "/data", "/models", "/runs", "/outputs", "__pycache__"):
        assert pattern in env["excludes"], pattern
    assert env["env_vars"]["RAY_OVERRIDE_JOB_RUNTIME_ENV"] == "1"
    assert env["env_vars"]["VERL_PLATFORM"] == "cpu" and env["env_vars"]["HF_HOME"] == "/h"
    installed = job_env.build_runtime_env(base, code="installed")
    assert "working_dir" not in installed and "excludes" not in installed
    pip = job_env.build_runtime_env(base, config_env={"VERL_USE_EXTERNAL_MODULES": "a.b"}, install="pip",
                                    pip=["x==1"])
    assert pip["pip"]["packages"] == ["x==1"]
    assert pip["env_vars"]["VERL_USE_EXTERNAL_MODULES"] == f"{job_env.PLUGIN_MODULE},a.b"


def test_working_dir_upload_is_small_even_without_gitignore():
    excludes = job_env.load_runtime_env_file()["excludes"]
    files = job_env.package_files(REPO, excludes)
    rel = {f.relative_to(REPO).as_posix() for f in files}
    assert "audio_thinker/main_grpo.py" in rel and "conf/audio_thinker_grpo.yaml" in rel
    assert "launch/runtime_env.yaml" in rel and "conf/experiment/grpo_atar_cr_tr.yaml" in rel
    heavy = (".git/", ".venv/", "checkpoints/", "data/", "models/", "runs/", "outputs/")
    assert not [r for r in rel if r.startswith(heavy) or "__pycache__" in r]
    size = sum(f.stat().st_size for f in files)
    assert size < 20 * 2**20, f"working_dir upload is {size / 2**20:.1f} MiB"


def test_exclude_patterns_follow_gitignore_rules(tmp_path):
    for path in ("a.pyc", "pkg/b.pyc", "pkg/keep.py", "data/x.txt", "pkg/data/y.txt", "docs/i.png",
                 "docs/sub/j.png", "build/z.py", "pkg/build/w.py", "m.egg-info/PKG-INFO"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    files = job_env.package_files(tmp_path, ["*.pyc", "/data", "/docs/*.png", "build", "*.egg-info"])
    assert {f.relative_to(tmp_path).as_posix() for f in files} == {
        "pkg/keep.py", "pkg/data/y.txt", "docs/sub/j.png"}  # /x anchors, x matches at any depth
    with pytest.raises(job_env.LaunchError, match="negated patterns"):
        job_env.package_files(tmp_path, ["!keep.py"])
    try:  # Ray's own (private) walker, where this Ray has it: the same files
        from ray._private.runtime_env.packaging import _dir_travel, _get_excludes
    except ImportError:
        return
    excludes = job_env.load_runtime_env_file()["excludes"]
    ray_files: list[Path] = []
    _dir_travel(REPO, [_get_excludes(REPO, list(excludes))],
                lambda p: ray_files.append(p) if p.is_file() and not p.is_symlink() else None,
                include_gitignore=False)
    assert sorted(ray_files) == sorted(job_env.package_files(REPO, excludes))


SECRET_FILES = (".env", ".env.local", "conf/prod.env", "server.key", "certs/ca.pem", "secrets/token.txt",
                "pkg/secrets/nested.json", "home/id_rsa", "home/id_rsa.pub", "home/id_ed25519", "client.p12",
                ".netrc")
PLAIN_FILES = ("keep.py", "environment.yml", "pkg/envs.py", "docs/keys.md", "pkg/secret_sharing.py")


def test_secret_files_are_never_uploaded(tmp_path):
    """Dot-env files, keys, certificates and secrets/ stay out of the working_dir upload, with the
    repository's runtime_env file and with one that lists no excludes at all."""
    for path in SECRET_FILES + PLAIN_FILES:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    for base in (job_env.load_runtime_env_file(), {"working_dir": "."}):
        env = job_env.build_runtime_env(base, repo=tmp_path)
        files = job_env.package_files(tmp_path, env["excludes"])
        uploaded = {f.relative_to(tmp_path).as_posix() for f in files}
        assert uploaded == set(PLAIN_FILES), (base.get("excludes") is not None, sorted(uploaded))
    # `ray job submit --runtime-env launch/runtime_env.yaml` reads the file alone: it lists them all
    assert set(job_env.SECRET_EXCLUDES) <= set(job_env.load_runtime_env_file()["excludes"])
    try:  # Ray's own (private) walker, which does the real upload: the same files
        from ray._private.runtime_env.packaging import _dir_travel, _get_excludes
    except ImportError:
        return
    excludes = job_env.load_runtime_env_file()["excludes"]
    ray_files: list[Path] = []
    _dir_travel(tmp_path, [_get_excludes(tmp_path, list(excludes))],
                lambda p: ray_files.append(p) if p.is_file() and not p.is_symlink() else None,
                include_gitignore=False)
    assert {f.relative_to(tmp_path).as_posix() for f in ray_files} == set(PLAIN_FILES)


SECRET = "sk-live-" + "5f1c0d9a7b3e4c2a"


def test_env_values_are_masked_in_the_plan(capsys):
    import submit

    env = [f"OPENAI_API_KEY={SECRET}", "HF_HOME=/shared/hf", "PLAIN=visible-by-name-only"]
    spec = job_spec.prepare_job(_args(env=env), [])
    assert spec.runtime_env["env_vars"]["OPENAI_API_KEY"] == SECRET  # the job still gets it
    plan = spec.describe()
    shown = json.loads(plan.split("runtime_env: ", 1)[1].splitlines()[0])["env_vars"]
    assert shown["OPENAI_API_KEY"] == shown["HF_HOME"] == shown["PLAIN"] == "***"
    assert shown["RAY_OVERRIDE_JOB_RUNTIME_ENV"] == "1"  # launch/runtime_env.yaml's values stay visible
    assert SECRET not in plan and "/shared/hf" not in plan and "visible-by-name-only" not in plan
    assert submit.main(["--dry-run", "--no-validate", *[a for e in env for a in ("--env", e)]]) == 0
    with pytest.raises(job_spec.LaunchError) as error:  # a pasted value without KEY= is not echoed
        job_spec.prepare_job(_args(env=[SECRET]), [])
    assert "write KEY=VALUE" in str(error.value)
    out = capsys.readouterr()
    assert "OPENAI_API_KEY" in out.out and "***" in out.out
    assert SECRET not in out.out + out.err + str(error.value)


class _JobsAPI:
    """Ray's JobSubmissionClient as run_job uses it, for a job that prints one of its env values."""

    def __init__(self, value: str, refuse: bool = False):
        self.value, self.refuse = value, refuse

    def submit_job(self, **kwargs):
        if self.refuse:
            raise RuntimeError(f"Request failed with status code 400: runtime_env {kwargs['runtime_env']}")
        return "raysubmit_1"

    async def tail_job_logs(self, job_id):
        yield f"step 1\nthe key is {self.value}\n"

    def get_job_info(self, job_id):
        status = SimpleNamespace(value="FAILED", is_terminal=lambda: True)
        return SimpleNamespace(status=status, driver_exit_code=1, runtime_env={},
                               message=f"Job entrypoint failed: env {{'OPENAI_API_KEY': '{self.value}'}}")

    def get_job_logs(self, job_id):
        return f"step 1\nthe key is {self.value}\n"


def test_env_values_are_masked_in_the_job_log_and_status(tmp_path, capsys):
    spec = job_spec.prepare_job(_args(env=[f"OPENAI_API_KEY={SECRET}"], dry_run=False), [])
    log = tmp_path / "job.log"
    assert job_client.run_job(_JobsAPI(SECRET), spec, log_file=log) == 1
    with pytest.raises(job_spec.LaunchError, match="the cluster refused the job") as refused:
        job_client.run_job(_JobsAPI(SECRET, refuse=True), spec, log_file=log)
    out = capsys.readouterr()
    assert "the key is ***" in out.out and "the key is ***" in log.read_text()
    assert "'OPENAI_API_KEY': '***'" in out.out
    assert SECRET not in out.out + out.err + log.read_text() + str(refused.value)


def test_pip_policy_pins_the_direct_dependencies():
    packages = job_env.pip_packages(["gpu"])
    assert "verl[verl-core]==0.9.1" in packages and "vllm==0.24.0" in packages
    assert any(p.startswith("torch==") for p in packages)
    assert all("==" in p for p in packages), packages
    with pytest.raises(job_env.LaunchError, match="no extra"):
        job_env.pip_packages(["nope"])


def test_exit_status_is_the_jobs():
    def info(status, code=None):
        return SimpleNamespace(status=SimpleNamespace(value=status), driver_exit_code=code)

    assert job_client.exit_status(info("SUCCEEDED", 0)) == 0
    assert job_client.exit_status(info("FAILED", 2)) == 2
    assert job_client.exit_status(info("FAILED", None)) == 1
    assert job_client.exit_status(info("STOPPED")) == 1


def test_wait_for_resources_pure_parts():
    nodes = [{"Alive": True, "Resources": {"CPU": 2.0, "GPU": 8.0}},
             {"Alive": True, "Resources": {"CPU": 2.0, "GPU": 8.0, "judge_node": 8.0}},
             {"Alive": False, "Resources": {"GPU": 8.0}}]
    have, alive = wait_for_resources.totals(nodes)
    assert alive == 2 and have["GPU"] == 16 and have["judge_node"] == 8
    assert wait_for_resources.missing({"GPU": 16, "judge_node": 8}, have, 2, alive) == []
    assert wait_for_resources.missing({"GPU": 24}, have, 3, alive) == ["GPU 16/24", "nodes 2/3"]


# ---------------------------------------------------------------------------------------------
# manifests and scripts
# ---------------------------------------------------------------------------------------------


def test_kuberay_rayjob_manifest():
    doc = yaml.safe_load((LAUNCH / "kuberay" / "rayjob.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "audio_thinker.main_grpo"]
    assert "ray_kwargs.ray_init.num_cpus=null" in argv
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["RAY_OVERRIDE_JOB_RUNTIME_ENV"] == "1"
    cluster = spec["rayClusterSpec"]
    assert "headGroupSpec" in cluster and cluster["headGroupSpec"]["rayStartParams"]
    # Ray's token authentication on every port; no Ray Client port
    assert cluster["authOptions"] == {"mode": "token"}
    head_ports = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    assert 10001 not in [port["containerPort"] for port in head_ports]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu, judge = groups["gpu-workers"], groups["judge-workers"]
    container = gpu["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"]
    # KubeRay's rayStartParams format for custom resources: a quoted JSON string
    assert json.loads(json.loads(judge["rayStartParams"]["resources"])) == {"judge_node": 8}
    assert "audio_thinker.judge.node_resource=judge_node" in argv
    nnodes = next(int(a.split("=")[1]) for a in argv if a.startswith("trainer.nnodes="))
    assert gpu["replicas"] == nnodes
    # every override of the manifest exists in the config and passes the entry point's checks
    job_spec.compose_config(argv[2], argv[3:])


def test_sbatch_script_is_valid_bash_and_polls_instead_of_sleeping():
    script = LAUNCH / "slurm" / "ray_cluster.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "launch/wait_for_resources.py" in text and "launch/submit.py" in text
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "sleep" in line.split()], "no fixed sleeps"
    assert "judge_node" in text and "--head" in text and "--block" in text
    # Ray's token authentication by default, with a fresh per-job token file only the user can read
    assert "export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}" in code
    assert "umask 077" in text and 'RAY_AUTH_TOKEN_PATH="$RUN_DIR/auth_token"' in text
    for path in LAUNCH.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".yaml", ".sbatch", ".md"):
            long = [i for i, line in enumerate(path.read_text().splitlines(), 1) if len(line) > 110]
            assert not long, f"{path}: lines over 110 chars: {long}"


# ---------------------------------------------------------------------------------------------
# real Ray clusters (private ones)
# ---------------------------------------------------------------------------------------------


DEFAULT_ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")  # what ray.init(address="auto") reads


def _not_in_default_address_file(gcs_address: str) -> bool:
    """Our clusters never make themselves the machine's default cluster (other processes may)."""
    return not (DEFAULT_ADDRESS_FILE.is_file() and gcs_address in DEFAULT_ADDRESS_FILE.read_text())


@pytest.fixture(scope="module")
def other_cluster():
    """A running cluster unrelated to the ones the launchers start: it must survive every test."""
    cluster = local.LocalCluster(num_cpus=1, log=lambda *a: None, loopback=False)  # takes worker nodes
    with cluster:
        daemons = [pid for pid in cluster.pids()
                   if any(name in _cmdline(pid) for name in ("gcs_server", "raylet"))]
        assert len(daemons) >= 2, daemons
        cluster.daemons = daemons
        yield cluster
        assert _not_in_default_address_file(cluster.gcs_address)


def _assert_alive(cluster):
    dead = [pid for pid in cluster.daemons if not local._alive(pid)]
    assert not dead, f"the unrelated cluster lost {dead}"
    assert cluster.procs[0].poll() is None, "the unrelated cluster's head is gone"
    cluster.job_client().list_jobs()


def test_wait_for_resources_against_a_live_cluster(other_cluster):
    script = str(LAUNCH / "wait_for_resources.py")
    cmd = [PY, script, "--address", other_cluster.gcs_address, "--interval", "0.3"]
    env = other_cluster.client_env()
    waiting = subprocess.Popen(cmd + ["--cpus", "2", "--nodes", "2", "--resource", "judge_node=2",
                                      "--timeout", "120"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    assert _wait_until(lambda: waiting.poll() is not None, 3.0) is False, "returned before the node came"
    node = other_cluster.add_node(num_cpus=1, resources={"judge_node": 2})
    out, _ = waiting.communicate(timeout=150)
    node_log = next(other_cluster.temp_dir.glob("ray_start_node*.log")).read_text(errors="replace")
    assert waiting.returncode == 0, f"{out}\nworker node (exit {node.poll()}):\n{node_log[-3000:]}"
    assert "missing CPU 1/2" in out and "ready: 2 nodes" in out
    started = time.monotonic()
    late = subprocess.run(cmd + ["--cpus", "64", "--timeout", "3"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert late.returncode == 1
    assert "timed out after 3 s" in late.stderr and "missing CPU 2/64" in late.stderr, late.stderr
    assert time.monotonic() - started < 60
    nobody = subprocess.run([PY, script, "--address", "127.0.0.1:9", "--gpus", "1", "--timeout", "2"],
                            capture_output=True, text=True, timeout=60)
    assert nobody.returncode == 1 and "nothing accepts connections" in nobody.stderr


def test_ray_refuses_num_cpus_inside_a_job(other_cluster):
    """Why submit.py adds ray_kwargs.ray_init.num_cpus=null: a job's ray.init() joins the cluster."""
    client = other_cluster.job_client()
    job = client.submit_job(entrypoint=f"{shlex.quote(PY)} -c 'import ray; ray.init(num_cpus=2)'")
    assert _wait_until(lambda: client.get_job_status(job).is_terminal(), 120, 0.5)
    assert str(client.get_job_status(job).value) == "FAILED"
    assert "num_cpus and num_gpus must not be provided" in client.get_job_logs(job)


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


def test_the_private_local_cluster_listens_on_loopback_only(other_cluster):
    """local.py's cluster (the default, loopback=True): every listening port of every process of it
    is on 127.0.0.1, and its workers see 127.0.0.1 as the node IP (what TransferQueue binds)."""
    import psutil

    probe = ("import ray; ray.init(); f = ray.remote(lambda: ray.util.get_node_ip_address()); "
             "print('node ip', ray.get(f.remote()))")
    with local.LocalCluster(num_cpus=1, log=lambda *a: None) as cluster:
        client = cluster.job_client()
        job = client.submit_job(entrypoint=f"{shlex.quote(PY)} -c {shlex.quote(probe)}")
        assert _wait_until(lambda: client.get_job_status(job).is_terminal(), 120, 0.5)
        assert "node ip 127.0.0.1" in client.get_job_logs(job), client.get_job_logs(job)[-2000:]
        listening = []
        for pid in cluster.pids():
            try:
                proc = psutil.Process(pid)
                listening += [(c.laddr.ip, c.laddr.port, proc.name())
                              for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        assert {"gcs_server", "raylet"} <= {name for _, _, name in listening}, listening
        exposed = sorted(s for s in listening if not _is_loopback(s[0]))
        assert not exposed, f"listening beyond loopback (address, port, process): {exposed}"
        with pytest.raises(RuntimeError, match="loopback=False"):
            cluster.add_node()
    _assert_alive(other_cluster)


def test_submit_cli_returns_the_jobs_exit_status(other_cluster, tmp_path):
    """submit.py against an existing (token-authenticated) cluster: upload, follow, exit status."""
    log = tmp_path / "job.log"
    result = subprocess.run(
        [PY, str(LAUNCH / "submit.py"), "--address", other_cluster.dashboard_url, "--no-validate",
         "--log-file", str(log), "--job-id", f"t-{secrets.token_hex(3)}", "--",
         "audio_thinker.reward.mode=bogus", f"hydra.run.dir={tmp_path}/hydra"],
        env=other_cluster.client_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "config error: audio_thinker.reward.mode='bogus'" in log.read_text()
    assert "FAILED, exit status 2" in result.stdout
    _assert_alive(other_cluster)


def _fake_slurm(bin_dir: Path) -> None:
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        "#!/bin/bash\n# stand-in: drop srun's options, run the command on this machine\n"
        'while [[ $# -gt 0 && $1 == -* ]]; do case $1 in -w|--nodelist) shift 2 ;; *) shift ;; esac; done\n'
        'exec "$@"\n')
    (bin_dir / "scontrol").write_text(
        '#!/bin/bash\n[[ $1 == show && $2 == hostnames ]] && printf "%s\\n" $FAKE_NODES\n')
    for name in ("srun", "scontrol"):
        (bin_dir / name).chmod(0o755)


@pytest.mark.slow
def test_sbatch_script_on_a_simulated_two_node_allocation(other_cluster, tmp_path):
    """srun/scontrol stand-ins run both 'nodes' here: head + judge node, resource polling, a job
    through submit.py, the cluster stopped at the end (every process it started is gone)."""
    import ray.util

    _fake_slurm(tmp_path / "bin")
    ports = local.free_ports(16)
    head_ports = dict(zip(local.NODE_PORT_FLAGS, ports[2:9], strict=True))
    worker_ports = dict(zip(local.NODE_PORT_FLAGS, ports[9:16], strict=True))
    worker_ports.pop("--ray-client-server-port", None)
    marker = secrets.token_hex(8)
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        PATH=f"{tmp_path / 'bin'}{os.pathsep}{Path(PY).parent}{os.pathsep}{env['PATH']}",
        SLURM_JOB_NODELIST="n[0-1]", FAKE_NODES="n0 n1", SLURM_JOB_ID="4242",
        HEAD_IP=ray.util.get_node_ip_address(),
        PYTHON=PY, GPUS_PER_NODE="0", CPUS_PER_NODE="1", JUDGE_NODES="1", JUDGE_UNITS="1",
        RAY_PORT=str(ports[0]), DASHBOARD_PORT=str(ports[1]), RAY_TMP=f"/tmp/atr-sb-{marker[:6]}",
        RUN_DIR=str(run_dir), WAIT_TIMEOUT="120", RAY_USAGE_STATS_ENABLED="0", CLEAN_RAY_TMP="1",
        RAY_HEAD_ARGS=" ".join(f"{k}={v}" for k, v in head_ports.items()),
        RAY_WORKER_ARGS=" ".join(f"{k}={v}" for k, v in worker_ports.items()),
        **{local.MARKER_VAR: marker},
    )
    # a job that ends at once (python -m platform): the cluster's life cycle is under test here
    result = subprocess.run(["bash", str(LAUNCH / "slurm" / "ray_cluster.sbatch"), "--entry", "platform",
                             "--no-validate"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    assert "ready: 2 nodes, CPU 2, GPU 0, judge_node 1" in out
    assert "Running entrypoint" in (run_dir / "job.log").read_text() and "SUCCEEDED, exit status 0" in out
    assert (run_dir / "ray_logs" / "n0").is_dir() and (run_dir / "auth_token").is_file()
    assert _wait_until(lambda: not local.processes_with_marker(marker), 30), \
        [_cmdline(p) for p in local.processes_with_marker(marker)]
    assert not _listening(f"127.0.0.1:{ports[0]}")
    assert not Path(env["RAY_TMP"]).exists()
    _assert_alive(other_cluster)


def _tiny_overrides(root: Path, run_dir: Path) -> list[str]:
    return [
        f"hydra.run.dir={run_dir}/hydra",
        f"actor_rollout_ref.model.path={root / 'model'}",
        f"data.train_files={root / 'data' / 'train.parquet'}",
        f"data.val_files={root / 'data' / 'val.parquet'}",
        "toy.synthetic_data=null", "toy.tiny_model=null",
        "toy.warmstart_model=null", "toy.tiny_judge=null",
        "audio_thinker.reward.mode=atar",  # no judge: the launch path is what is under test
        "data.train_batch_size=4", "data.max_response_length=16", "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.actor.ppo_mini_batch_size=4", "trainer.total_training_steps=1",
        "trainer.save_freq=-1", "trainer.test_freq=-1", "trainer.val_before_train=false",
        f"trainer.default_local_dir={run_dir}", "trainer.experiment_name=launch",
        "trainer.logger=[console,file]",
    ]


def test_local_mode_runs_one_grpo_step_and_stops_only_its_cluster(other_cluster, tmp_path):
    from audio_thinker.data.synthetic import generate_dataset
    from audio_thinker.toy.tiny import ensure_tiny_model
    from audio_thinker.run_summary import load_history, metric_files, series

    ensure_tiny_model("qwen2_audio", tmp_path / "model")
    generate_dataset(tmp_path / "data", n_train=8, n_val=4, seed=0, progress=False)
    run_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VERL_FILE_LOGGER_PATH",
                                                            "TENSORBOARD_DIR")}
    result = subprocess.run(
        [PY, str(LAUNCH / "local.py"), "--code", "upload", "--log-dir", str(log_dir), "--recipe", RECIPE,
         "--", *_tiny_overrides(tmp_path, run_dir)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = result.stdout + result.stderr
    (tmp_path / "local.out").write_text(out)
    assert result.returncode == 0, out[-6000:]
    # the training step ran and was logged
    history = load_history(metric_files(run_dir))
    assert [s for s, _ in series(history, "audio_thinker/reward/overall")] == [1]
    job_log = (log_dir / "job.log").read_text()
    assert "training steps logged: 1..1" in job_log
    assert "Ray: joining the cluster at" in job_log and "'num_cpus': None" in job_log
    assert "[launch] code: this checkout, uploaded as gcs://" in result.stdout
    assert (log_dir / "ray_logs" / "raylet.out").is_file()
    # its cluster, and only its cluster, is gone
    record = json.loads((log_dir / "cluster.json").read_text())
    assert record["exit_status"] == 0 and record["stop"]["survivors"] == []
    assert len(record["pids_at_start"]) >= 5
    assert not local.processes_with_marker(record["marker"])
    assert not any(local._alive(pid) for pid in record["pids_at_start"])
    assert not Path(record["temp_dir"]).exists()
    assert not _listening(record["gcs_address"])
    assert _not_in_default_address_file(record["gcs_address"])
    _assert_alive(other_cluster)


@pytest.mark.slow
def test_local_mode_ctrl_c_stops_the_job_and_its_cluster(other_cluster, tmp_path):
    log_dir = tmp_path / "logs"
    out_file = tmp_path / "local.out"
    proc = subprocess.Popen(
        [PY, str(LAUNCH / "local.py"), "--num-cpus", "1", "--no-ray-logs", "--log-dir", str(log_dir),
         "--entry", "timeit", "--", "-n1", "-r1", "import time; time.sleep(300)"],
        cwd=tmp_path, stdout=out_file.open("w"), stderr=subprocess.STDOUT, text=True)
    try:
        job_log = log_dir / "job.log"
        running = _wait_until(
            lambda: job_log.is_file() and "Running entrypoint" in job_log.read_text(), 180, 0.5)
        assert running, out_file.read_text()[-3000:]
        record = json.loads((log_dir / "cluster.json").read_text())
        assert local.processes_with_marker(record["marker"])
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = out_file.read_text()
    assert proc.returncode == 130, out[-3000:]
    assert "stopping job" in out
    record = json.loads((log_dir / "cluster.json").read_text())
    assert record["exit_status"] == 130 and record["stop"]["survivors"] == []
    assert not local.processes_with_marker(record["marker"])
    assert not Path(record["temp_dir"]).exists()
    _assert_alive(other_cluster)
