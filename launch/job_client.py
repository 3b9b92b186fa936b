"""Talking to a Ray cluster's Jobs API: submit a :class:`~job_spec.JobSpec`, follow it, its exit status.

The job's log streams to stdout while it runs and is written to a log file (the complete log,
fetched at the end). The exit status is the job's: 0 when it succeeded, the entrypoint's exit code
when it failed (``main_grpo``: 2 for config errors, 1 when training failed or logged fewer steps
than asked), 1 when it was stopped. Ctrl-C detaches (the job keeps running) unless
``stop_on_interrupt``.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from job_env import REPO, LaunchError
from job_spec import JobSpec

EXIT_STOPPED = 1


def connect(address: str | None, headers: Mapping[str, str] | None = None, timeout: float = 0.0) -> Any:
    """A ``JobSubmissionClient`` for the dashboard at ``address``; retried for ``timeout`` seconds."""
    from ray.job_submission import JobSubmissionClient

    if not address:
        raise LaunchError("no cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return JobSubmissionClient(address, headers=dict(headers) if headers else None)
        except Exception as error:  # ConnectionError, authentication errors
            if time.monotonic() >= deadline:
                hint = ""
                if re.search(r":6379/?$", address):
                    hint = " (that looks like the GCS port: the Jobs API is the dashboard, http://HEAD:8265)"
                raise LaunchError(f"cannot reach the Ray Jobs API at {address}{hint}: {error}") from None
            time.sleep(1.0)


def submit(client: Any, spec: JobSpec) -> str:
    kwargs: dict[str, Any] = {"entrypoint": spec.entrypoint, "runtime_env": spec.runtime_env,
                              "metadata": spec.metadata}
    for key in ("submission_id", "entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_resources"):
        if getattr(spec, key) is not None:
            kwargs[key] = getattr(spec, key)
    return client.submit_job(**kwargs)


def exit_status(info: Any) -> int:
    """0 for SUCCEEDED, the entrypoint's exit code (or 1) for FAILED, 1 for STOPPED."""
    status = str(getattr(info.status, "value", info.status))
    if status == "SUCCEEDED":
        return 0
    if status == "FAILED":
        code = getattr(info, "driver_exit_code", None)
        return code if isinstance(code, int) and 0 < code < 256 else 1
    return EXIT_STOPPED


async def _tail(client: Any, job_id: str, sink: Callable[[str], None]) -> None:
    async for chunk in client.tail_job_logs(job_id):
        sink(chunk)


def _unchanged(text: str) -> str:
    return text


def follow(client: Any, job_id: str, *, log_file: Path | None, stream: TextIO | None = sys.stdout,
           poll_s: float = 1.0, redact: Callable[[str], str] = _unchanged) -> Any:
    """Stream the job's logs until it ends; write the complete log to ``log_file``; the final JobInfo.
    Every chunk shown or written goes through ``redact`` (:meth:`JobSpec.redact`)."""
    handle = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handle = log_file.open("w", encoding="utf-8")

    def sink(text: str) -> None:
        text = redact(text)
        if stream is not None:
            stream.write(text)
            stream.flush()
        if handle is not None:
            handle.write(text)
            handle.flush()

    try:
        try:
            asyncio.run(_tail(client, job_id, sink))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # websocket trouble: fall back to polling the status
            print(f"[launch] log streaming stopped ({error}); polling the job status", file=sys.stderr)
        while True:
            info = client.get_job_info(job_id)
            if info.status.is_terminal():
                break
            time.sleep(poll_s)
    finally:
        if handle is not None:
            handle.close()
    if log_file is not None:  # the authoritative copy (the stream may have missed the start)
        try:
            log_file.write_text(redact(client.get_job_logs(job_id)), encoding="utf-8")
        except Exception as error:
            print(f"[launch] could not fetch the full job log ({error}); {log_file} has the stream",
                  file=sys.stderr)
    return info


def default_log_file(job_id: str) -> Path:
    return REPO / "runs" / "launch" / job_id / "job.log"


def run_job(client: Any, spec: JobSpec, *, wait: bool = True, log_file: Path | None = None,
            stop_on_interrupt: bool = False, address: str = "") -> int:
    """Submit ``spec``; with ``wait``, follow it to the end and return its exit status. A refused
    submission is a :class:`LaunchError` (its message masked: Ray may quote the runtime_env)."""
    try:
        job_id = submit(client, spec)
    except Exception as error:
        raise LaunchError(f"the cluster refused the job: {spec.redact(str(error))}") from None
    print(f"[launch] submitted job {job_id} to {address or 'the cluster'}", flush=True)
    if not wait:
        print(f"[launch] follow it with: ray job logs --follow --address {address} {job_id}\n"
              f"[launch] stop it with:   ray job stop --address {address} {job_id}")
        return 0
    log_file = log_file or default_log_file(job_id)
    try:
        info = follow(client, job_id, log_file=log_file, stream=sys.stdout, redact=spec.redact)
    except KeyboardInterrupt:
        if stop_on_interrupt:
            print(f"\n[launch] interrupted: stopping job {job_id}", file=sys.stderr, flush=True)
            try:
                client.stop_job(job_id)
            except Exception as error:
                print(f"[launch] could not stop job {job_id}: {error}", file=sys.stderr)
            raise
        print(f"\n[launch] detached; job {job_id} keeps running "
              f"(ray job stop --address {address} {job_id})", file=sys.stderr)
        return 130
    code = exit_status(info)
    status = str(getattr(info.status, "value", info.status))
    shown = spec.redact(info.message) if status != "SUCCEEDED" and getattr(info, "message", None) else ""
    message = f" ({shown})" if shown else ""
    if len(message) > 600:
        message = message[:600] + "...)"
    uploaded = (getattr(info, "runtime_env", None) or {}).get("working_dir")
    if uploaded:
        print(f"[launch] code: this checkout, uploaded as {uploaded}", flush=True)
    print(f"[launch] job {job_id}: {status}, exit status {code}{message}\n[launch] log: {log_file}",
          flush=True)
    return code
