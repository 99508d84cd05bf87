"""``--accelerate_config``: re-launch a command under ``accelerate launch`` with a config shipped in sami.

As in TRL's CLI (``trl sft --accelerate_config zero2``), a name picks a YAML file of the package's
``accelerate_configs/`` folder (``ddp``, ``fsdp2``, ``fsdp2_offload``, ``deepspeed_zero3``) and a path is
used as it is. ``sami train --accelerate_config fsdp2 ARGS`` then runs, and logs::

    python -m accelerate.commands.launch --config_file .../sami/accelerate_configs/fsdp2.yaml -m sami.cli train ARGS

which is ``accelerate launch --config_file FILE -m sami.cli train ARGS``, with ``--num_processes N`` added when
given. The launched processes do not launch again: under ``accelerate launch`` (or ``torchrun``) the setting
is not applied a second time, also when it comes from a ``--config`` file. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sami.errors import ConfigError

if TYPE_CHECKING:
    from sami.config.args import LaunchArgs
    from sami.config.parser import SamiParser

logger = logging.getLogger(__name__)

ACCELERATE_CONFIGS_DIR = Path(__file__).parent / "accelerate_configs"
LAUNCH_FLAGS = ("--accelerate_config", "--num_processes")
"""The flags that choose the launch; they are not passed on to the launched command."""


def accelerate_config_names() -> list[str]:
    """The names of the accelerate configs that ship with sami."""
    return sorted(path.stem for path in ACCELERATE_CONFIGS_DIR.glob("*.yaml"))


def resolve_accelerate_config(value: str) -> Path:
    """A YAML path as it is, or the packaged config of that name (``fsdp2``: ``sami/accelerate_configs/fsdp2.yaml``)."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    packaged = ACCELERATE_CONFIGS_DIR / f"{value.removesuffix('.yaml')}.yaml"
    if packaged.is_file():
        return packaged
    raise ConfigError(
        f"--accelerate_config {value!r} is neither a file nor a config shipped with sami; choose one of "
        f"{', '.join(accelerate_config_names())} (docs/training.md), or give the path of an accelerate config YAML"
    )


def launched() -> bool:
    """Whether this process was started by ``accelerate launch`` (which always sets the mixed precision) or torchrun."""
    return "ACCELERATE_MIXED_PRECISION" in os.environ or "LOCAL_RANK" in os.environ


def without_launch_flags(argv: Sequence[str]) -> list[str]:
    """``argv`` without ``--accelerate_config X`` and ``--num_processes N`` (also in their ``--flag=X`` form)."""
    kept, skip_value = [], False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg.split("=", 1)[0] in LAUNCH_FLAGS:
            skip_value = "=" not in arg
            continue
        kept.append(arg)
    return kept


def launch_command(command: str, argv: Sequence[str], config_file: Path, num_processes: int | None = None) -> list[str]:
    """The command line that runs ``sami COMMAND ARGV`` under ``accelerate launch --config_file CONFIG_FILE``."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file)]
    if num_processes is not None:
        launch += ["--num_processes", str(num_processes)]
    return [*launch, "-m", "sami.cli", command, *without_launch_flags(argv)]


def launch_args(parser: SamiParser, argv: Sequence[str] | None) -> LaunchArgs:
    """The launch settings a parsed command line holds (flags or ``--config`` keys).

    Call after ``parser.parse_args_and_config(argv)``, which checked them and made the YAML keys the defaults.
    """
    from sami.config.args import LaunchArgs

    namespace, _ = parser.parse_known_args(argv)
    return LaunchArgs(accelerate_config=namespace.accelerate_config, num_processes=namespace.num_processes)


def relaunch(command: str, argv: Sequence[str] | None, launch: LaunchArgs) -> int | None:
    """Run ``sami COMMAND ARGV`` under ``accelerate launch`` when ``launch`` asks for it; return its exit status.

    None means "go on in this process": no ``--accelerate_config``, or this process is already launched.

    Args:
        command: the sami command (``train``, ``run``).
        argv: its arguments as given (None: ``sys.argv[1:]``, as the parser reads them).
        launch: the parsed ``--accelerate_config`` and ``--num_processes``.
    """
    if not launch.accelerate_config:
        return None
    if launched():
        logger.info("sami: running under accelerate launch; --accelerate_config %s is not applied again",
                    launch.accelerate_config)
        return None
    argv = list(sys.argv[1:] if argv is None else argv)
    config_file = resolve_accelerate_config(launch.accelerate_config).resolve()
    line = launch_command(command, argv, config_file, launch.num_processes)
    logger.info("sami: launching %s", shlex.join(line))
    return subprocess.run(line, check=False).returncode
