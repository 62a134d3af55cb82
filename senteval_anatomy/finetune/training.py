"""One fine-tuning run (task × readout × seed) on the Hugging Face ``Trainer``, keyed, resumable, never repeated.

Why the ``Trainer`` (with ``accelerate``): checkpoints, resuming with the RNG and data order restored, GPUs and
multi-GPU, mixed precision, seeds, evaluation per epoch and early stopping are theirs, tested by thousands of users;
this module only decides *what* is trained and *what is recorded*.

Selection is on dev only: the Trainer evaluates the dev split after every epoch and keeps the checkpoint with the best
dev score (``load_best_model_at_end``); the test split is predicted once, with that checkpoint, after training. Test
labels are never seen before that point (``tests/test_finetune.py`` scrambles them and checks nothing else moves).

A run's identity is its key (:func:`run_key`): protocol, model name and fingerprint, dtype, the task and its data hash,
the dev slice, the resolved readout and how it was chosen, every training setting, pooling and the seed. The run's
folder is named by the key's hash; ``<out>/runs/<name>.json`` is written (atomically) only when the run finished, and a
later call with the same key returns it without training. A run killed before that resumes from the last complete
checkpoint in ``<out>/checkpoints/<name>/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.loading import load_encoder
from ..encoders.readers import quiet_transformers
from ..sweeping.identity import key_hash
from ..vocab import PROTOCOL_VERSION, atomic_write, check_pooling, resolve_device, slug
from .classifier import ReadoutClassifier
from .data import FinetuneData, Split
from .readouts import Readout
from .settings import PAPER_FINETUNE, TrainSettings

__all__ = [
    "RUN_FORMAT",
    "checkpoint_bytes",
    "last_complete_checkpoint",
    "read_run",
    "run_key",
    "run_name",
    "outcomes_of",
    "train_one",
]

#: Format tag of a finished run's JSON file.
RUN_FORMAT = "senteval_anatomy.finetune-run/1"


def run_key(*, model: str, fingerprint: str, dtype: str, data: FinetuneData, readout: Readout,
            settings: TrainSettings, seed: int, pooling: str) -> dict[str, Any]:
    """Everything that determines a fine-tuned number (see the module docstring)."""
    return {
        "protocol": PROTOCOL_VERSION,
        "kind": "finetune",
        "model": str(model),
        "fingerprint": str(fingerprint),
        "dtype": str(dtype).removeprefix("torch."),
        "task": data.name,
        "data_hash": data.data_hash,
        "dev_source": data.dev_source,
        "test_source": data.test_source,
        "subset": data.extra.get("subset", {}),
        "readout": readout.representation,
        "requested": readout.requested,
        "selection": readout.selection,
        "settings": asdict(settings.check()),
        "pooling": pooling,
        "seed": int(seed),
    }


def run_name(key: Mapping[str, Any]) -> str:
    """File-system name of a run: readable parts and the key hash."""
    read = slug(key["requested"], default="read")
    return f"{slug(key['model'], default='model')}__{slug(key['task'], default='task')}__{read}__seed{key['seed']}__{key_hash(key)}"


def read_run(path: Path, key: Mapping[str, Any]) -> dict[str, Any] | None:
    """The row of a finished run, or ``None`` when the file is missing, damaged or holds another key."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("format") != RUN_FORMAT:
        return None
    if payload.get("key") != json.loads(json.dumps(key, default=str)):
        return None
    return payload.get("row")


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest ``checkpoint-<step>`` whose save finished (its ``trainer_state.json``, written last, exists).

    Why not ``transformers``' ``get_last_checkpoint`` alone: a kill -9 during a save leaves a folder without its
    state; resuming from it would fail. Such a folder is removed here.
    """
    if not folder.is_dir():
        return None
    found = []
    for sub in folder.iterdir():
        if sub.is_dir() and sub.name.startswith("checkpoint-") and sub.name[len("checkpoint-"):].isdigit():
            if (sub / "trainer_state.json").is_file() and (sub / "rng_state.pth").is_file():
                found.append((int(sub.name.split("-")[1]), sub))
            else:
                shutil.rmtree(sub, ignore_errors=True)
    return max(found)[1] if found else None


def checkpoint_bytes(n_params: int, *, keep: int = 2) -> int:
    """Disk one run's checkpoints take at most: weights + AdamW's two moments (float32), ``keep`` checkpoints
    (the best and the newest), plus 10% for the scheduler, RNG and trainer state."""
    return int(n_params * 4 * 3 * keep * 1.1)


class _Examples:
    """Tokenized examples of one split (a map-style dataset the Trainer's data loader reads)."""

    def __init__(self, tokenizer: Any, split: Split, max_length: int, regression: bool) -> None:
        if split.b is None:
            enc = tokenizer(split.a, truncation=True, max_length=max_length)
        else:
            enc = tokenizer(split.a, split.b, truncation=True, max_length=max_length)
        keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        self.rows = [{k: enc[k][i] for k in keep} for i in range(len(split))]
        for row, y in zip(self.rows, split.y):
            row["labels"] = float(y) if regression else int(y)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def _score(pred: np.ndarray, y: np.ndarray, regression: bool) -> dict[str, float]:
    """Main score (accuracy in percent, or Pearson r) plus F1 (binary) / Spearman (regression)."""
    if regression:
        from scipy.stats import pearsonr, spearmanr

        p = np.asarray(pred, dtype=np.float64).reshape(-1)
        if np.std(p) == 0 or np.std(y) == 0:
            return {"score": float("nan"), "spearman": float("nan")}
        return {"score": float(pearsonr(p, y)[0]), "spearman": float(spearmanr(p, y)[0])}
    labels = np.asarray(pred).argmax(-1)
    out = {"score": float((labels == y).mean() * 100)}
    if pred.shape[-1] == 2:
        tp = float(((labels == 1) & (y == 1)).sum())
        fp = float(((labels == 1) & (y == 0)).sum())
        fn = float(((labels == 0) & (y == 1)).sum())
        out["f1"] = 100 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def train_one(model_name: str, data: FinetuneData, readout: Readout, *, seed: int, out_dir: Path,
              settings: TrainSettings = PAPER_FINETUNE, pooling: str | None = None, device: str = "auto",
              progress: bool = True, keep_model: bool = False, keep_checkpoints: bool = False,
              encoder: Any = None) -> dict[str, Any]:
    """Fine-tune ``model_name`` on ``data`` reading ``readout`` with ``seed``; return the finished run's row.

    A finished run with the same key is returned from ``<out>/runs`` without training; an unfinished one resumes from
    its last complete checkpoint. ``keep_model`` saves the selected (best-on-dev) transformer under
    ``<out>/models/<name>/`` for probing after fine-tuning. ``encoder``: the pretrained encoder already loaded (its
    weights are copied, never trained in place).
    """
    import copy

    import torch
    from transformers import (
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )
    from transformers import logging as hf_logging

    settings = settings.check()
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    if encoder is None:
        encoder = load_encoder(model_name, device=str(dev))
    pooling = check_pooling(pooling, encoder)
    key = run_key(model=model_name, fingerprint=encoder.fingerprint(), dtype=str(encoder.dtype), data=data,
                  readout=readout, settings=settings, seed=seed, pooling=pooling)
    name = run_name(key)
    result_file = out_dir / "runs" / f"{name}.json"
    model_dir = out_dir / "models" / name
    done = read_run(result_file, key)
    if done is not None and (not keep_model or (model_dir / "config.json").is_file()):
        done["reused"] = True
        return done

    work = copy.deepcopy(encoder)  # the caller's pretrained weights stay untouched
    set_seed(seed)
    model = ReadoutClassifier(work, readout, data.n_labels, pooling=pooling, dropout=settings.dropout)
    tok = work.tokenizer
    limit = min(int(work.max_length), settings.max_length)
    sets = {k: _Examples(tok, v, limit, data.regression) for k, v in data.splits.items()}
    ckpt_dir = out_dir / "checkpoints" / name
    resume = last_complete_checkpoint(ckpt_dir)

    class _Said(TrainerCallback):
        """One line per saved checkpoint (progress; also the cue the kill -9 test waits for)."""

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
            print(f"finetune: checkpoint saved: step {state.global_step} ({name})", file=sys.stderr, flush=True)

    steps_per_epoch = math.ceil(len(sets["train"]) / settings.batch_size)
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        num_train_epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=max(settings.batch_size, 64),
        warmup_steps=int(settings.warmup_ratio * steps_per_epoch * math.ceil(settings.epochs)),
        weight_decay=settings.weight_decay,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=1,  # with load_best_model_at_end the best one is kept too
        load_best_model_at_end=True,
        metric_for_best_model="score",
        greater_is_better=True,
        seed=seed,
        data_seed=seed,
        report_to=[],
        disable_tqdm=not progress,
        remove_unused_columns=False,
        use_cpu=dev.type == "cpu",
        fp16=settings.mixed_precision == "fp16",
        bf16=settings.mixed_precision == "bf16",
        dataloader_num_workers=0,
        log_level="warning",
        save_only_model=False,
    )
    callbacks: list[Any] = [_Said()]
    if settings.early_stopping:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping))

    def metrics(pred: Any) -> dict[str, float]:
        return _score(pred.predictions, pred.label_ids, data.regression)

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if not progress:  # the Trainer's checkpoints go through save_pretrained, whose "Writing model shards" is a bar
        hf_logging.disable_progress_bar()
    try:
        trainer = Trainer(model=model, args=args, train_dataset=sets["train"], eval_dataset=sets["dev"],
                          data_collator=DataCollatorWithPadding(tok), compute_metrics=metrics, callbacks=callbacks)
        if not progress:
            trainer.remove_callback(PrinterCallback)  # the per-epoch log dicts
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        state = trainer.state
        dev_out = trainer.predict(sets["dev"])
        test_out = trainer.predict(sets["test"])  # the selected checkpoint, once, after all selection
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars and not progress:
            hf_logging.enable_progress_bar()
    digest = hashlib.sha256()  # the selected weights: equal runs give equal digests (seeds, resume, determinism)
    for k, v in sorted(model.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    losses = [e["loss"] for e in state.log_history if "loss" in e]
    dev_curve = ";".join(f"{e['eval_score']:.6g}" for e in state.log_history if "eval_score" in e)
    dev_s = _score(dev_out.predictions, dev_out.label_ids, data.regression)
    test_s = _score(test_out.predictions, test_out.label_ids, data.regression)
    best_step = None
    if state.best_model_checkpoint:
        best_step = int(Path(state.best_model_checkpoint).name.split("-")[1])
    epochs_run = float(state.epoch or 0.0)
    if data.regression:
        correct = np.asarray(test_out.predictions, dtype=np.float64).reshape(-1).round(6).tolist()
    else:
        correct = (np.asarray(test_out.predictions).argmax(-1) == test_out.label_ids).astype(int).tolist()

    row: dict[str, Any] = {
        "model": model_name,
        "fingerprint": key["fingerprint"],
        "task": data.name,
        "readout": readout.requested,
        "representation": readout.representation,
        "selection": readout.selection,
        "seed": int(seed),
        "metric": data.metric,
        "devacc": dev_s["score"],
        "acc": test_s["score"],
        "f1": test_s.get("f1", float("nan")),
        "spearman": test_s.get("spearman", float("nan")),
        "train_loss": float(losses[-1]) if losses else float("nan"),
        "dev_curve": dev_curve,  # the selection score after each epoch (what chose the checkpoint)
        "weights_sha256": digest.hexdigest()[:16],
        "best_epoch": (best_step / steps_per_epoch) if best_step else float("nan"),
        "epochs_run": epochs_run,
        "n_train": len(sets["train"]),
        "n_dev": len(sets["dev"]),
        "n_test": len(sets["test"]),
        "dev_source": data.dev_source,
        "test_source": data.test_source,
        "pooling": pooling,
        "max_length": settings.max_length,
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "data_hash": data.data_hash,
        "device": str(dev),
        "train_seconds": round(seconds, 3),
        "train_cpu_seconds": round(cpu_seconds, 3),  # all threads; on a shared machine wall time says little
        "seconds_per_epoch": round(seconds / max(epochs_run - _epoch_of(resume, steps_per_epoch), 1e-9), 3)
        if epochs_run else float("nan"),
        "resumed_from_step": _step_of(resume),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "protocol": key["protocol"],
        "key_hash": key_hash(key),
        "checkpoint": f"finetuned:{name}",
    }
    if keep_model:
        model.close()
        tmp = model_dir.with_name(f".{model_dir.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with quiet_transformers(progress_bars=progress):  # "Writing model shards" is a bar too: --no-progress
            work.model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.replace(tmp, model_dir)
    model.close()
    payload = {"format": RUN_FORMAT, "key": key, "row": row, "test_outcomes": correct}
    atomic_write(result_file, json.dumps(payload, default=float))
    if not keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    del trainer, model, work
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    row["reused"] = False
    return row


def _step_of(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[1]) if checkpoint else 0


def _epoch_of(checkpoint: Path | None, steps_per_epoch: int) -> float:
    return _step_of(checkpoint) / steps_per_epoch if checkpoint else 0.0


def outcomes_of(out_dir: Path, row: Mapping[str, Any]) -> np.ndarray | None:
    """Per-example test outcomes of a finished run (1/0 correct, or the predicted score): for paired tests."""
    for path in (Path(out_dir) / "runs").glob("*.json"):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if payload.get("row", {}).get("key_hash") == row.get("key_hash"):
            return np.asarray(payload.get("test_outcomes", []))
    return None

