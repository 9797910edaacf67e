"""The two installs: the chat runs on requirements.txt; training and the Local backend need more.

`requirements.txt` is what Streamlit Community Cloud installs: chat, history, stats, the knowledge
base, prompts, the API and offline backends. `requirements-train.txt` adds torch, transformers,
peft, trl and the rest for the Training page and the Local backend. Features of the second say
what to install instead of failing on an import.
"""

from __future__ import annotations

import importlib.util
from typing import Iterable

from common.errors import ConfigurationError

TRAIN_REQUIREMENTS = "requirements-train.txt"
TRAIN_INSTALL = f"pip install -r {TRAIN_REQUIREMENTS}"
# What each feature imports; bitsandbytes (4-bit, CUDA only) is checked where it is used.
TRAINING_PACKAGES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate")
LOCAL_BACKEND_PACKAGES = ("torch", "transformers")


def installed(module: str) -> bool:
    """Whether `module` can be imported here, without importing it (torch alone takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent that fails, or a module entry set to None
        return False


def missing(packages: Iterable[str]) -> list[str]:
    """The packages of `packages` that are not installed, in order."""
    return [name for name in packages if not installed(name)]


def install_hint(feature: str, absent: Iterable[str]) -> str:
    """One sentence: what `feature` lacks and the command that installs it."""
    names = list(absent)
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
    return (f"{feature} needs {listed}, which the chat-only install (requirements.txt) leaves out. "
            f"Install the training requirements with `{TRAIN_INSTALL}` and restart the app.")


def require(packages: Iterable[str], feature: str) -> None:
    """Raise a ConfigurationError naming the install command when any of `packages` is missing."""
    absent = missing(packages)
    if absent:
        raise ConfigurationError(install_hint(feature, absent))
