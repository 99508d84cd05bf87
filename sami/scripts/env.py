"""What a bug report needs: platform, versions, devices, the embedded models and sami's cache.

    sami env                  # paste its output into the issue

Lists Python, sami and the libraries sami uses (torch, transformers, accelerate, peft, datasets,
vllm, bitsandbytes, the trackers) with their versions or "not installed"; CUDA and each GPU's
name and memory, MPS, the CPUs; the default accelerate config; for each embedded model, whether
its package is installed (with the install command) and whether the cache already holds its
dequantised checkpoint. It changes nothing: no download, no dequantisation.
"""

from __future__ import annotations

from sami.config.parser import SamiParser
from sami.environment import collect_environment, format_environment


def make_parser() -> SamiParser:
    return SamiParser([], prog="sami env", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    make_parser().parse_args_and_config(argv)
    print(format_environment(collect_environment()))
    return 0
