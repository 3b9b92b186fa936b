#!/usr/bin/env python
"""Wait until a Ray cluster shows the resources a job needs (no fixed sleeps in launch scripts).

    python launch/wait_for_resources.py --address HEAD:6379 --gpus 16 --nodes 2 \
        [--resource judge_node=8] [--cpus N] [--timeout 900] [--interval 2]

Polls the cluster's alive nodes (``ray.nodes()``, as a driver joined to ``--address``, the GCS
address ``ray start --head`` printed) until the totals reach every minimum given, then exits 0.
Exits 1 with a message saying what is missing (and which nodes are there) after ``--timeout``
seconds, also when nothing answers at the address yet or the connection hangs. A token-authenticated
cluster needs ``RAY_AUTH_MODE=token`` and the token (``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``)
in the environment, as every Ray client does.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

EXIT_TIMEOUT = 1

_state = {"summary": "nothing heard from the cluster yet"}


def parse_resource(text: str) -> tuple[str, float]:
    name, sep, amount = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=AMOUNT, e.g. judge_node=8")
    try:
        return name, float(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: AMOUNT must be a number") from None


def requirements(args: argparse.Namespace) -> dict[str, float]:
    wanted = {"GPU": args.gpus, "CPU": args.cpus}
    wanted.update(dict(args.resource or []))
    return {k: float(v) for k, v in wanted.items() if v}


def totals(nodes: Iterable[Mapping]) -> tuple[dict[str, float], int]:
    """Summed resources of the alive nodes, and how many are alive."""
    summed: dict[str, float] = {}
    alive = 0
    for node in nodes:
        if not node.get("Alive", False):
            continue
        alive += 1
        for name, amount in (node.get("Resources") or {}).items():
            summed[name] = summed.get(name, 0.0) + float(amount)
    return summed, alive


def missing(wanted: Mapping[str, float], have: Mapping[str, float], nodes_wanted: int, nodes_alive: int,
            ) -> list[str]:
    gaps = [f"{name} {have.get(name, 0):g}/{amount:g}" for name, amount in sorted(wanted.items())
            if have.get(name, 0.0) < amount]
    if nodes_alive < nodes_wanted:
        gaps.append(f"nodes {nodes_alive}/{nodes_wanted}")
    return gaps


def describe_nodes(nodes: Iterable[Mapping]) -> str:
    parts = []
    for node in nodes:
        if not node.get("Alive", False):
            continue
        res = node.get("Resources") or {}
        hidden = ("memory", "object_store_memory")
        shown = ", ".join(f"{k} {v:g}" for k, v in sorted(res.items())
                          if not (k.startswith("node:") or k in hidden))
        parts.append(f"{node.get('NodeManagerAddress', '?')} ({shown})")
    return "; ".join(parts) or "none"


def _host_port(address: str) -> tuple[str, int]:
    address = address.split("://", 1)[-1].rstrip("/")
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def _listening(address: str, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection(_host_port(address), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _fail(address: str, timeout: float) -> None:
    print(f"wait_for_resources: timed out after {timeout:g} s waiting for the Ray cluster at {address}: "
          f"{_state['summary']}. Check that every node ran `ray start --address=...` with the expected "
          "--num-gpus / --resources, and the nodes' Ray logs (/tmp/ray/session_latest/logs).",
          file=sys.stderr, flush=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python launch/wait_for_resources.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="the cluster's GCS address HOST:PORT (default $RAY_ADDRESS)")
    p.add_argument("--gpus", type=float, default=0, help="minimum total GPUs")
    p.add_argument("--cpus", type=float, default=0, help="minimum total CPUs")
    p.add_argument("--nodes", type=int, default=0, help="minimum number of alive nodes")
    p.add_argument("--resource", type=parse_resource, action="append", metavar="NAME=AMOUNT",
                   help="minimum of a custom resource, e.g. judge_node=8 (repeatable)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up (default 600)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.address:
        parser().error("--address is required (or set RAY_ADDRESS)")
    wanted = requirements(args)
    if not wanted and not args.nodes:
        parser().error("nothing to wait for: give --gpus, --cpus, --nodes or --resource")
    address = args.address.split("://", 1)[-1].rstrip("/")
    goal = ", ".join([f"{k} >= {v:g}" for k, v in sorted(wanted.items())]
                     + ([f"nodes >= {args.nodes}"] if args.nodes else []))
    print(f"wait_for_resources: waiting up to {args.timeout:g} s for {goal} at {address}", flush=True)
    deadline = time.monotonic() + args.timeout

    # a hung connection must not outlive the timeout either
    def watchdog() -> None:
        _fail(address, args.timeout)
        os._exit(EXIT_TIMEOUT)

    timer = threading.Timer(args.timeout + 1.0, watchdog)
    timer.daemon = True
    timer.start()

    while not _listening(address):
        _state["summary"] = f"nothing accepts connections at {address} (is the head up?)"
        if time.monotonic() >= deadline:
            _fail(address, args.timeout)
            return EXIT_TIMEOUT
        time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))

    import ray

    _state["summary"] = f"connecting to {address}"
    ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    try:
        last = None
        while True:
            nodes = ray.nodes()
            have, alive = totals(nodes)
            gaps = missing(wanted, have, args.nodes, alive)
            _state["summary"] = (f"missing {', '.join(gaps)}; alive nodes: {describe_nodes(nodes)}" if gaps
                                 else "ready")
            if not gaps:
                print(f"wait_for_resources: ready: {alive} nodes, "
                      + ", ".join(f"{k} {have.get(k, 0):g}" for k in sorted(set(wanted) | {"CPU", "GPU"})),
                      flush=True)
                return 0
            if gaps != last:
                print(f"wait_for_resources: {_state['summary']}", flush=True)
                last = gaps
            if time.monotonic() >= deadline:
                _fail(address, args.timeout)
                return EXIT_TIMEOUT
            time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
    finally:
        timer.cancel()
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
