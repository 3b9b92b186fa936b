"""torch.distributed stores that listen on a loopback address only (local runs).

torch's ``TCPStore`` server listens on every interface whatever host it is given, and gloo binds
the host's first interface. A local run must listen on 127.0.0.1 only, so where the rendezvous
host is a loopback address the store's server socket is bound here, to that address, and handed to
torch (``master_listen_fd``). Used by the CPU training workers' process group
(``audio_thinker.backends.cpu.engine``) and in every vLLM process (the project's vLLM plugin,
:func:`audio_thinker.inference.vllm_models.register_vllm_models`: evaluation, the judge and the
rollout). Importing it is cheap (torch is imported when a store is built).
"""

from __future__ import annotations

import functools
import importlib
import ipaddress
import os
import socket
from typing import Any

__all__ = ["is_loopback", "loopback_tcp_store", "patch_tcp_rendezvous"]


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def loopback_tcp_store(host: str, port: int, world_size: int, rank: int, timeout: Any) -> Any:
    """A ``torch.distributed.TCPStore`` whose rank-0 server listens on ``host`` only (a socket bound
    here, handed over as ``master_listen_fd``); other ranks connect as usual."""
    import torch.distributed

    if rank != 0:
        return torch.distributed.TCPStore(host, port, world_size, is_master=False, timeout=timeout)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host.strip("[]"), port))
        listener.listen()
        fd = listener.detach()
    try:
        return torch.distributed.TCPStore(host, port, world_size, is_master=True, timeout=timeout,
                                          master_listen_fd=fd)
    except Exception:
        os.close(fd)
        raise


def patch_tcp_rendezvous() -> None:
    """In this process, ``tcp://<loopback>:port`` rendezvous (``init_process_group(init_method=...)``)
    build their store with :func:`loopback_tcp_store`; other hosts are left to torch (idempotent)."""
    rendezvous = importlib.import_module("torch.distributed.rendezvous")  # the module, not the function

    current = rendezvous._create_c10d_store
    if getattr(current, "__loopback__", False):
        return

    @functools.wraps(current)
    def create_store(hostname: str, port: int, rank: int, world_size: int, timeout: Any, *args: Any) -> Any:
        if is_loopback(hostname):
            store = loopback_tcp_store(hostname, port, world_size, rank, timeout)
            store.set_timeout(timeout)
            return store
        return current(hostname, port, rank, world_size, timeout, *args)

    create_store.__loopback__ = True  # type: ignore[attr-defined]
    rendezvous._create_c10d_store = create_store
