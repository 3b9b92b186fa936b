"""What a local run listens on: loopback addresses only.

``main_grpo`` starting its own Ray cluster (no ``RAY_ADDRESS``) sets Ray's node IP to 127.0.0.1
(``audio_thinker.main_grpo.local_cluster_env``): the GCS, the raylet, every worker's gRPC port, the
dashboard agent, and everything that binds Ray's node IP (TransferQueue's ZMQ sockets, which
unpickle what they receive; torch.distributed's ``MASTER_ADDR``) stay on this machine. The CPU
backend's process group then binds its store and gloo to loopback too. A full training run is
checked the same way in ``tests/test_grpo_e2e_on_cpu.py``; these are the parts, in seconds.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from audio_thinker.main_grpo import local_cluster_env

if not sys.platform.startswith("linux"):
    pytest.skip("Ray's loopback-only mode is what Ray does on macOS/Windows anyway", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_loopback or bool(getattr(ip, "ipv4_mapped", None) and ip.ipv4_mapped.is_loopback)


LISTENING = '''
def listening():
    import psutil
    me = psutil.Process()
    found = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            found += [(c.laddr.ip, c.laddr.port, proc.name()) for c in proc.net_connections(kind="tcp")
                      if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found
'''

RAY_SCRIPT = LISTENING + '''
import json
from audio_thinker.main_grpo import confine_local_cluster
confine_local_cluster()  # what `python -m audio_thinker.main_grpo` does first
import ray
ray.init(num_cpus=1, include_dashboard=True)

@ray.remote
class ProbeActor:
    def addresses(self):
        from transfer_queue.utils.zmq_utils import get_node_ip_address  # what TransferQueue binds
        from verl.single_controller.ray.base import get_master_addr_port  # torch.distributed's MASTER_ADDR
        return get_node_ip_address(), ray.get(get_master_addr_port.remote())[0]

actor = ProbeActor.remote()
tq_ip, master_addr = ray.get(actor.addresses.remote())
print(json.dumps({"tq_ip": tq_ip, "master_addr": master_addr, "listening": listening()}))
ray.shutdown()
'''


def _run(script: str, env: dict[str, str], timeout: float = 240) -> dict:
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "GLOO_SOCKET_IFNAME"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_a_cluster_to_join_gets_no_local_settings():
    assert local_cluster_env({"RAY_ADDRESS": "10.0.0.5:6379"}) == {}
    assert local_cluster_env({"RAY_ADDRESS": "http://head:8265"}) == {}
    local = local_cluster_env({})
    assert local, "a local cluster must be confined"
    assert local_cluster_env({k: "mine" for k in local}) == {}, "the user's own values win"


def test_confining_after_ray_was_imported_is_an_error():
    script = ("import ray\nfrom audio_thinker.main_grpo import confine_local_cluster\n"
              "try:\n    confine_local_cluster()\nexcept RuntimeError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_clean_env(), capture_output=True,
                            text=True, timeout=120)
    assert "set them in the environment before starting Python" in result.stdout, result.stderr[-2000:]


def test_a_local_ray_cluster_listens_on_loopback_only():
    """The GCS, raylet, dashboard, agents and workers of ``ray.init()`` with main_grpo's settings; the
    address TransferQueue binds and the MASTER_ADDR verl hands torch.distributed."""
    report = _run(RAY_SCRIPT, _clean_env())
    names = {name for _, _, name in report["listening"]}
    assert {"gcs_server", "raylet"} <= names, sorted(names)  # the lister saw Ray's servers
    assert any(name.startswith("ray::") for name in names), sorted(names)  # and a worker
    exposed = sorted(tuple(s) for s in report["listening"] if not _is_loopback(s[0]))
    assert not exposed, f"listening beyond loopback (address, port, process): {exposed}"
    assert _is_loopback(report["tq_ip"]) and _is_loopback(report["master_addr"]), report


GLOO_SCRIPT = LISTENING + '''
import json, torch
from audio_thinker.backends.cpu.engine import init_gloo_process_group
assert init_gloo_process_group()
total = torch.ones(3)
torch.distributed.all_reduce(total)
print(json.dumps({"sum": total.tolist(), "listening": listening()}))
torch.distributed.destroy_process_group()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cpu_process_group_listens_on_loopback_only():
    """With a loopback MASTER_ADDR (a local cluster's) the CPU backend's gloo group binds its store
    and its pairs to loopback (torch's own TCPStore would listen on every interface)."""
    env = _clean_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1",
                     LOCAL_RANK="0")
    report = _run(GLOO_SCRIPT, env)
    assert report["sum"] == [1.0, 1.0, 1.0]
    ports = [s for s in report["listening"]]
    assert any(port == int(env["MASTER_PORT"]) for _, port, _ in ports), ports  # the store listens here
    exposed = sorted(tuple(s) for s in ports if not _is_loopback(s[0]))
    assert not exposed, f"listening beyond loopback (address, port, process): {exposed}"


TCP_RENDEZVOUS_SCRIPT = LISTENING + '''
import json, os, sys, torch
if sys.argv[1] == "patched":
    from audio_thinker.inference.loopback import patch_tcp_rendezvous
    patch_tcp_rendezvous()
torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:" + os.environ["PORT"], rank=0, world_size=1)
total = torch.ones(2)
torch.distributed.all_reduce(total)
print(json.dumps({"sum": total.tolist(), "listening": listening()}))
torch.distributed.destroy_process_group()
'''


SFT_SCRIPT = LISTENING + '''
import json, os, torch
from audio_thinker import main_sft
os.environ.update(main_sft.local_process_env())  # what `python -m audio_thinker.main_sft` sets for one process
main_sft._init_process_group("cpu")  # how its rank opens the process group on the CPU
total = torch.ones(2)
torch.distributed.all_reduce(total)
print(json.dumps({"sum": total.tolist(), "port": int(os.environ["MASTER_PORT"]), "listening": listening()}))
torch.distributed.destroy_process_group()
'''


def test_a_tcp_rendezvous_on_loopback_listens_on_loopback_only():
    """vLLM's worker joins its process group with init_method=tcp://127.0.0.1:<port> on a local run;
    torch's store then listens on every interface ('::'), with the CPU worker's patch on 127.0.0.1."""
    port = _free_port()
    env = _clean_env(PORT=str(port))
    for mode in ("plain", "patched"):
        result = subprocess.run([sys.executable, "-c", TCP_RENDEZVOUS_SCRIPT, mode], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["sum"] == [1.0, 1.0]
        store = [address for address, p, _ in report["listening"] if p == port]
        assert store, report["listening"]
        exposed = [address for address in store if not _is_loopback(address)]
        assert bool(exposed) == (mode == "plain"), (mode, report["listening"])


def test_a_one_process_sft_run_listens_on_loopback_only():
    """``main_sft`` launched without torchrun (the tiny_cpu backbone) opens its process group on a
    loopback store, as GRPO's CPU workers do (torch's own rendezvous would listen on every interface)."""
    report = _run(SFT_SCRIPT, _clean_env())
    assert report["sum"] == [1.0, 1.0]
    assert any(port == report["port"] for _, port, _ in report["listening"]), report  # the store is seen
    exposed = sorted(tuple(s) for s in report["listening"] if not _is_loopback(s[0]))
    assert not exposed, f"listening beyond loopback (address, port, process): {exposed}"
