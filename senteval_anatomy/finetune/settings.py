"""The settings of a fine-tuning run (:class:`TrainSettings`) and the paper's preset (:data:`PAPER_FINETUNE`).

Plain data with their checks, no torch: the ``finetune`` command reads its defaults and checks its options here
before anything is loaded; :mod:`.training` trains with them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["PAPER_FINETUNE", "TrainSettings"]


@dataclass(frozen=True)
class TrainSettings:
    """Fine-tuning settings; the defaults are the paper's (``examples/glue``: max_length 128, lr 2e-5, batch 32,
    3 epochs, linear decay, no warm-up, AdamW)."""

    max_length: int = 128
    learning_rate: float = 2e-5
    batch_size: int = 32
    epochs: float = 3.0
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    dropout: float = 0.1
    early_stopping: int = 0  # patience in evaluations (epochs); 0 = off
    mixed_precision: str = "no"  # "no", "fp16", "bf16"

    def check(self) -> TrainSettings:
        """``ValueError`` naming the option for an impossible setting."""
        if self.max_length < 4:
            raise ValueError(f"--max-length {self.max_length}: give at least 4 tokens")
        if not self.learning_rate > 0:
            raise ValueError(f"--lr {self.learning_rate}: give a positive learning rate")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size}: give a positive batch size")
        if not self.epochs > 0:
            raise ValueError(f"--epochs {self.epochs}: give a positive number of epochs")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout {self.dropout}: must be a number in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup-ratio {self.warmup_ratio}: must be a number in [0, 1)")
        if self.early_stopping < 0:
            raise ValueError(f"--early-stopping {self.early_stopping}: give a patience >= 0 (0 = off)")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"--mixed-precision {self.mixed_precision!r}: use no, fp16 or bf16")
        # one spelling per value, so that 3 and 3.0 epochs key the same run
        return replace(self, max_length=int(self.max_length), learning_rate=float(self.learning_rate),
                       batch_size=int(self.batch_size), epochs=float(self.epochs), warmup_ratio=float(self.warmup_ratio),
                       weight_decay=float(self.weight_decay), dropout=float(self.dropout),
                       early_stopping=int(self.early_stopping))


#: The paper's preset (``--preset paper``, the default).
PAPER_FINETUNE = TrainSettings()
