#!/usr/bin/env python
"""Submit an audio-thinker job to an existing Ray cluster (Ray's Jobs API), follow it, return its status.

    python launch/submit.py --address http://HEAD:8265 [options] -- <hydra overrides>
    python launch/submit.py --address http://HEAD:8265 --recipe qwen2_audio_7b/grpo_atar [-- overrides]

The job runs ``python -m audio_thinker.main_grpo <overrides>`` (or, with ``--recipe
<backbone>/<row>``, the recipe's entry point with ``backbone=<backbone> experiment=<row>``, yours
last) on the cluster: everything after ``--`` is passed through unchanged. Before submitting, the
config is composed and validated here by ``audio_thinker.compose`` (the same check as ``python -m
audio_thinker.recipes compose``), so a misspelt key fails in seconds instead of after the upload.

The parts: ``launch/job_spec.py`` (command line, config check, :class:`JobSpec`),
``launch/job_env.py`` (runtime_env, upload, pinned packages), ``launch/job_client.py`` (the Jobs
API: submit, follow, exit status); this file is the command line.

What is added around your command (printed before submission):

* ``ray_kwargs.ray_init.num_cpus=null`` before your overrides (``main_grpo`` only): inside a job,
  verl's ``ray.init()`` joins the cluster (Ray sets ``RAY_ADDRESS``), and Ray raises
  ``ValueError: When connecting to an existing cluster, num_cpus and num_gpus must not be
  provided`` for the ``num_cpus`` the CPU preset sets for its own local cluster.
* the runtime_env (``launch/runtime_env.yaml``): the checkout as ``working_dir`` (with the excludes
  that keep the upload small), the env vars of the composed config's
  ``ray_kwargs.ray_init.runtime_env.env_vars`` (``VERL_USE_EXTERNAL_MODULES``; ``VERL_PLATFORM=cpu``
  for the CPU preset) and ``RAY_OVERRIDE_JOB_RUNTIME_ENV=1`` (``main_grpo``'s own ``ray.init()``
  names the same variables; Ray refuses that without it).

Environment of the nodes (``--install``): ``image`` (default) expects the pinned environment on
every node, ``pip install -c requirements/constraints.txt -e '.[gpu]'`` baked into the image;
``pip`` asks Ray to build a per-job virtualenv with the project's direct dependencies (read from
its installed metadata) pinned to ``requirements/constraints.txt`` (best effort: transitive
dependencies are not pinned, and every node downloads them). See launch/README.md.

Logs are streamed to stdout while the job runs and written to ``--log-file`` (default
``runs/launch/<submission id>/job.log``). The exit status is the job's: 0 when it succeeded, the
entrypoint's exit code when it failed (``main_grpo``: 2 for config errors, 1 when training failed or
logged fewer steps than asked), 1 when it was stopped. Ctrl-C detaches (the job keeps running)
unless ``--stop-on-interrupt``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import job_client  # noqa: E402  (launch/job_client.py)
from job_env import RUNTIME_ENV_FILE, LaunchError  # noqa: E402  (launch/job_env.py)
from job_spec import DEFAULT_ENTRY, prepare_job, split_argv  # noqa: E402  (launch/job_spec.py)


def add_job_arguments(parser: argparse.ArgumentParser, code_default: str = "upload") -> None:
    """Options shared with launch/local.py."""
    parser.add_argument("--recipe", help="<backbone>/<row> (python -m audio_thinker.recipes list): its "
                                         "entry point with backbone= experiment= (yours after -- win)")
    parser.add_argument("--entry", default=None,
                        help=f"module run as python -m ENTRY (default {DEFAULT_ENTRY}; "
                             "a recipe sets its own)")
    parser.add_argument("--python", default="python",
                        help="the interpreter on the nodes (default: python on the nodes' PATH)")
    parser.add_argument("--job-id", default=None, help="submission id (default: Ray's raysubmit_...)")
    parser.add_argument("--entrypoint-num-cpus", type=float, default=None,
                        help="CPUs reserved for the driver process (default: none, it runs on the head)")
    parser.add_argument("--entrypoint-num-gpus", type=float, default=None,
                        help="GPUs reserved for the driver (places it on a GPU node; e.g. SFT entries)")
    parser.add_argument("--entrypoint-resources", default=None,
                        help='custom resources for the driver, JSON: \'{"judge_node": 1}\'')
    parser.add_argument("--code", choices=("upload", "installed"), default=code_default,
                        help="upload: ship this checkout as the job's working_dir (relative paths then "
                             "resolve in that copy); installed: no upload, the installed audio_thinker runs "
                             f"in the nodes' current directory (default {code_default})")
    parser.add_argument("--runtime-env", default=str(RUNTIME_ENV_FILE),
                        help="base runtime_env YAML (default launch/runtime_env.yaml)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra env var for the job (repeatable); visible in the dashboard: no secrets")
    parser.add_argument("--no-validate", action="store_true",
                        help="do not compose/validate the config here (no hydra/verl on this machine)")
    parser.add_argument("--log-file", type=Path, default=None,
                        help="where the job's log goes (default runs/launch/<submission id>/job.log)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the entrypoint and runtime_env, submit nothing")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python launch/submit.py",
        description="Submit an audio-thinker job to a running Ray cluster (Ray Jobs API). "
                    "Hydra overrides go after --, unchanged.",
        epilog="example: python launch/submit.py --address http://head:8265 --recipe "
               "qwen2_audio_7b/grpo_atar -- trainer.nnodes=2",
    )
    p.add_argument("--address",
                   default=os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS"),
                   help="the cluster's dashboard / Jobs API, http://HEAD:8265 "
                        "(default $RAY_API_SERVER_ADDRESS, then $RAY_ADDRESS)")
    p.add_argument("--no-wait", action="store_true", help="submit, print the job id and return")
    p.add_argument("--stop-on-interrupt", action="store_true",
                   help="Ctrl-C stops the job (default: Ctrl-C detaches, the job keeps running)")
    p.add_argument("--install", choices=("image", "pip"), default="image",
                   help="image: the nodes have the pinned environment (default); pip: Ray installs the "
                        "pinned direct dependencies into a per-job virtualenv on every node")
    p.add_argument("--pip-extras", default="gpu", help="the project's extras for --install pip (default gpu)")
    add_job_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    own, overrides = split_argv(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(own)
    try:
        spec = prepare_job(args, overrides)
        print(spec.describe(), flush=True)
        if args.dry_run:
            return 0
        client = job_client.connect(args.address)
        return job_client.run_job(client, spec, wait=not args.no_wait, log_file=args.log_file,
                       stop_on_interrupt=args.stop_on_interrupt, address=args.address)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
