"""Probes of the built-in engine: SentEval's PyTorch ``MLP``, its sklearn ``LogisticRegression`` path, and the
``RelatednessPytorch`` regression of SICK-R / STS-B, with the constants they use at module level.

Everything here reproduces ``senteval/tools/classifier.py``, ``senteval/tools/relatedness.py`` and
``senteval/utils.py`` (SentEval 5d6dc11), minus their breakages on today's stack; ``docs/engine.md`` lists every
difference.

RNG contract (what a re-implementation, e.g. the batched trainer, must do to get the same numbers)
-------------------------------------------------------------------------------------------------
Each PyTorch probe *construction* (:class:`TorchProbe`, :class:`RelatednessRegressor`):

1. ``torch.manual_seed(seed)`` (this also seeds every CUDA device);
2. builds its modules **on the CPU**, then moves them to ``device``; so the initial weights are a pure function of
   ``seed`` and the layer shapes (``nn.Linear`` default init, modules created in forward order);
3. creates ``rng = np.random.RandomState(seed)``, the same stream SentEval gets from ``np.random.seed(seed)``.

``fit`` then draws only from ``rng``, in this order:

* with ``validation_split=frac`` (never with ``validation_data``): ``perm = rng.permutation(n)``; the first
  ``int(frac * n)`` indices of ``perm`` are the validation set, the rest the training set (in ``perm`` order);
* for every epoch: ``perm = rng.permutation(n_train)``, mini-batches ``perm[i:i + batch_size]`` for
  ``i = 0, batch_size, 2*batch_size, ...`` (the last one may be shorter).

No other random numbers are drawn, with one exception: ``nn.Dropout`` (only when ``nhid > 0`` and
``dropout > 0``) draws from torch's default generator of the device (seeded by step 1, after the CPU generator
was advanced by the weight init).

Training loop (SentEval's ``PyTorchClassifier.fit``; cumulative tenacity, see :class:`EarlyStopping`)::

    nepoch = 0
    while not stop and nepoch <= max_epoch:
        epoch_size epochs of mini-batch training (model.train()); nepoch += epoch_size
        val = accuracy on the validation set (model.eval(), in chunks of batch_size)
        if val > best: best = val; snapshot the weights
        else: if count >= tenacity: stop = True; count += 1
    restore the snapshot

Loss: ``CrossEntropyLoss`` with **mean** reduction. Optimizer: built from the ``optim`` string by
:func:`parse_optimizer`, then ``optimizer.param_groups[0]['weight_decay'] = l2reg`` (one group: every parameter,
biases included; optimizers without weight decay, such as Rprop, ignore it, as in SentEval).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import astuple, dataclass
from typing import Any

import numpy as np

from .params import resolve_device
from .protocol import pearson_or_zero

logger = logging.getLogger(__name__)

__all__ = [
    "ProbeSettings",
    "CLASSIFIER_DEFAULTS",
    "OPTIMIZER_NAMES",
    "RELATEDNESS_NCLASSES",
    "RELATEDNESS_BATCH_SIZE",
    "RELATEDNESS_EPOCHS_PER_ROUND",
    "RELATEDNESS_MAX_EPOCH",
    "RELATEDNESS_PATIENCE",
    "RELATEDNESS_L2",
    "parse_optimizer",
    "classifier_config",
    "EarlyStopping",
    "build_mlp",
    "seed_torch",
    "TorchProbe",
    "SklearnProbe",
    "make_probe",
    "RelatednessRegressor",
]

# --------------------------------------------------------------------------------------------------------------
# Constants of the probes (SentEval's values; the evaluators' grids and refit split are in ``protocol``)
# --------------------------------------------------------------------------------------------------------------

#: Defaults of the ``params.classifier`` dict, applied when a key is absent. ``nhid`` has no default: it is required.
CLASSIFIER_DEFAULTS: dict[str, Any] = {
    "optim": "adam",
    "batch_size": 64,
    "tenacity": 5,
    "epoch_size": 4,
    "max_epoch": 200,
    "dropout": 0.0,
}

# RelatednessPytorch (SICK-R, STS-B): fixed in SentEval, independent of params.classifier.
RELATEDNESS_NCLASSES = 5
RELATEDNESS_BATCH_SIZE = 64
RELATEDNESS_EPOCHS_PER_ROUND = 50
RELATEDNESS_MAX_EPOCH = 1000
RELATEDNESS_PATIENCE = 3
RELATEDNESS_L2 = 0.0

#: Optimizer names accepted in ``classifier['optim']``.
OPTIMIZER_NAMES = ("adadelta", "adagrad", "adam", "adamax", "asgd", "rmsprop", "rprop", "sgd")


# --------------------------------------------------------------------------------------------------------------
# Config parsing
# --------------------------------------------------------------------------------------------------------------


def _optimizer_class(name: str):
    import torch.optim as optim

    return {
        "adadelta": optim.Adadelta,
        "adagrad": optim.Adagrad,
        "adam": optim.Adam,
        "adamax": optim.Adamax,
        "asgd": optim.ASGD,
        "rmsprop": optim.RMSprop,
        "rprop": optim.Rprop,
        "sgd": optim.SGD,
    }[name]


def parse_optimizer(s: str) -> tuple[type, dict[str, float]]:
    """Parse SentEval's optimizer string ``"name[,key=value,...]"`` into ``(optimizer_class, kwargs)``.

    Same grammar and checks as SentEval's ``utils.get_optimizer`` ("adam", "rmsprop", "sgd,lr=0.1",
    "adagrad,lr=0.1,lr_decay=0.05"): values are floats, ``sgd`` needs ``lr``, and every key must be an argument of
    the optimizer's constructor (checked with ``inspect.signature``, not the removed ``getargspec``). Values may
    also use scientific notation (``lr=1e-3``), which SentEval's regex refused.

    Examples
    --------
    >>> cls, kw = parse_optimizer("sgd,lr=0.1")
    >>> cls.__name__, kw
    ('SGD', {'lr': 0.1})
    >>> parse_optimizer("rmsprop")[1]
    {}
    """
    if not isinstance(s, str) or not s.strip():
        raise ValueError(f"classifier['optim'] must be a string like 'adam' or 'sgd,lr=0.1', got {s!r}.")
    s = s.strip()
    if "," in s:
        method = s[: s.find(",")].strip()
        optim_params: dict[str, float] = {}
        for item in s[s.find(",") + 1 :].split(","):
            parts = item.split("=")
            if len(parts) != 2 or not parts[0].strip():
                raise ValueError(f"bad optimizer option {item!r} in {s!r}: expected key=value, e.g. 'sgd,lr=0.1'.")
            key, value = parts[0].strip(), parts[1].strip()
            try:
                optim_params[key] = float(value)
            except ValueError:
                raise ValueError(f"bad optimizer option {item!r} in {s!r}: the value must be a number.") from None
    else:
        method, optim_params = s, {}
    if method not in OPTIMIZER_NAMES:
        raise ValueError(f"Unknown optimization method {method!r} in {s!r}; expected one of {list(OPTIMIZER_NAMES)}.")
    if method == "sgd" and "lr" not in optim_params:
        raise ValueError(f"{s!r}: sgd needs a learning rate, e.g. 'sgd,lr=0.1'.")
    optim_cls = _optimizer_class(method)
    expected = [p for p in inspect.signature(optim_cls.__init__).parameters if p not in ("self", "params")]
    unexpected = [k for k in optim_params if k not in expected]
    if unexpected:
        raise ValueError(f"Unexpected parameters {unexpected} for {method!r} in {s!r}: expected some of {expected}.")
    return optim_cls, optim_params


def classifier_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params.classifier`` with SentEval's defaults filled in (a key that is present wins, even if ``None``).

    ``nhid`` is required, as in SentEval (``MLP`` reads ``params["nhid"]``).
    """
    config = dict(config or {})
    if "nhid" not in config:
        raise ValueError("the classifier config has no 'nhid' key (0 = logistic regression); e.g. {'nhid': 0}.")
    out = {"nhid": config["nhid"]}
    for key, default in CLASSIFIER_DEFAULTS.items():
        out[key] = config[key] if key in config else default
    for key in config:
        if key not in out:
            out[key] = config[key]
    return out


@dataclass(frozen=True)
class ProbeSettings:
    """The settings a SentEval classification probe trains with, read once from ``params.classifier`` (defaults
    filled in by :func:`classifier_config`; ``nhid`` ``None`` or 0: logistic regression). The solo probe and the
    stacked trainer both take theirs from here."""

    nhid: int
    optim: str
    batch_size: int
    tenacity: Any
    epoch_size: int
    max_epoch: Any
    dropout: float

    @classmethod
    def read(cls, config: Mapping[str, Any] | None) -> ProbeSettings:
        cfg = classifier_config(config if config is not None else {"nhid": 0})
        return cls(int(cfg["nhid"] or 0), cfg["optim"], int(cfg["batch_size"]), cfg["tenacity"],
                   int(cfg["epoch_size"]), cfg["max_epoch"], cfg["dropout"])

    def fields(self) -> tuple:
        """``(nhid, optim, batch_size, tenacity, epoch_size, max_epoch, dropout)``."""
        return astuple(self)


# --------------------------------------------------------------------------------------------------------------
# Early stopping
# --------------------------------------------------------------------------------------------------------------


class EarlyStopping:
    """SentEval's early-stopping rule: a **cumulative** counter of non-improving validations.

    ``step(score)`` returns True when ``score`` strictly improves on the best so far (take a snapshot). Otherwise
    (when ``enabled``) it sets ``stop`` if ``count >= tenacity`` and then increments ``count``. The counter is never
    reset, so training stops at the ``(tenacity + 1)``-th non-improving validation, consecutive or not.

    Examples
    --------
    >>> es = EarlyStopping(tenacity=1)
    >>> [es.step(s) for s in (0.5, 0.4, 0.6, 0.6)], es.stop
    ([True, False, True, False], True)
    """

    def __init__(self, tenacity: int, best: float = -1.0, enabled: bool = True):
        self.tenacity = tenacity
        self.best = best
        self.enabled = enabled
        self.count = 0
        self.stop = False

    def step(self, score: float) -> bool:
        if score > self.best:
            self.best = score
            return True
        if self.enabled:
            if self.count >= self.tenacity:
                self.stop = True
            self.count += 1
        return False


# --------------------------------------------------------------------------------------------------------------
# PyTorch classifier
# --------------------------------------------------------------------------------------------------------------


def build_mlp(inputdim: int, nclasses: int, nhid: int = 0, dropout: float = 0.0):
    """SentEval's ``MLP`` module: ``Linear(d, C)``, or ``Linear(d, nhid) -> Dropout -> Sigmoid -> Linear(nhid, C)``."""
    from torch import nn

    if not nhid:
        return nn.Sequential(nn.Linear(inputdim, nclasses))
    return nn.Sequential(
        nn.Linear(inputdim, nhid),
        nn.Dropout(p=dropout),
        nn.Sigmoid(),
        nn.Linear(nhid, nclasses),
    )


def seed_torch(seed: int) -> None:
    """Step 1 of the RNG contract: ``torch.manual_seed(seed)`` (CPU and every CUDA generator)."""
    import torch

    torch.manual_seed(seed)  # seeds the CPU and every CUDA generator
    if torch.cuda.is_available():
        torch.cuda.manual_seed(seed)


def _check_xy(X, y, nclasses: int | None, what: str):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{what}: expected X of shape (n_samples, n_features), got shape {X.shape}.")
    if y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"{what}: expected y of shape ({len(X)},), got shape {y.shape}.")
        if nclasses is not None and len(y) and (y.min() < 0 or y.max() >= nclasses):
            raise ValueError(f"{what}: labels must lie in 0..{nclasses - 1}, got min {y.min()} max {y.max()}.")
    return X, y


class TorchProbe:
    """SentEval's PyTorch ``MLP`` classifier (logistic regression when ``nhid == 0``), on CPU or CUDA.

    Construction follows the RNG contract of this module (seed, build modules, create ``rng_``).

    Parameters
    ----------
    inputdim : int
        Number of features.
    nclasses : int
        Number of classes; labels are ``0..nclasses-1``.
    l2reg : float, default=0.0
        ``weight_decay`` of the optimizer's (only) param group.
    seed : int, default=1111
    config : mapping, optional
        ``params.classifier`` (``nhid`` required; see :data:`CLASSIFIER_DEFAULTS`). Default ``{'nhid': 0}``.
    device : str or torch.device, default='auto'

    Attributes
    ----------
    model : torch.nn.Sequential
    best_score_ : float
        Best validation accuracy in [0, 1] (that of the restored snapshot), after ``fit``.
    n_epochs_ : int
        Number of training epochs run by ``fit``.
    n_validations_ : int
    """

    def __init__(self, inputdim: int, nclasses: int, *, l2reg: float = 0.0, seed: int = 1111,
                 config: Mapping[str, Any] | None = None, device: Any = "auto"):
        import torch
        from torch import nn

        self.inputdim = int(inputdim)
        self.nclasses = int(nclasses)
        self.l2reg = l2reg
        self.seed = seed
        (self.nhid, self.optim, self.batch_size, self.tenacity, self.epoch_size, self.max_epoch,
         self.dropout) = ProbeSettings.read(config).fields()
        self.device = resolve_device(device)

        optim_cls, optim_params = parse_optimizer(self.optim)  # fail before touching any RNG
        seed_torch(seed)
        self.model = build_mlp(self.inputdim, self.nclasses, self.nhid, self.dropout).to(self.device)
        self.loss_fn = nn.CrossEntropyLoss(reduction="mean")
        self.optimizer = optim_cls(self.model.parameters(), **optim_params)
        self.optimizer.param_groups[0]["weight_decay"] = l2reg
        self.rng_ = np.random.RandomState(seed)
        self._torch = torch

    # -- data --------------------------------------------------------------------------------------------------
    def _to_x(self, X):
        torch = self._torch
        if isinstance(X, torch.Tensor):
            return X.to(self.device, dtype=torch.float32)
        return torch.from_numpy(np.ascontiguousarray(X)).to(self.device, dtype=torch.float32)

    def _to_y(self, y):
        torch = self._torch
        if isinstance(y, torch.Tensor):
            return y.to(self.device, dtype=torch.int64)
        return torch.from_numpy(np.ascontiguousarray(y)).to(self.device, dtype=torch.int64)

    def split_validation(self, X, y, validation_split: float):
        """Hold out ``int(validation_split * n)`` samples, drawn with ``rng_.permutation`` (SentEval's rule)."""
        n = len(X)
        permutation = self.rng_.permutation(n)
        n_val = int(validation_split * n)
        if n_val == 0:
            raise ValueError(
                f"validation_split={validation_split} of {n} samples leaves no validation sample "
                f"(need at least {int(np.ceil(1 / validation_split))} samples)."
            )
        trainidx, devidx = permutation[n_val:], permutation[:n_val]
        return X[trainidx], y[trainidx], X[devidx], y[devidx]

    # -- training ----------------------------------------------------------------------------------------------
    def fit(self, X, y, validation_data=None, validation_split: float | None = None, early_stop: bool = True):
        """Train with early stopping on validation accuracy and restore the best snapshot. Returns ``self``.

        Exactly one of ``validation_data=(X_val, y_val)`` or ``validation_split=frac`` is used (the former wins).
        """
        X, y = _check_xy(X, y, self.nclasses, "TorchProbe.fit")
        if validation_data is not None:
            devX, devy = _check_xy(validation_data[0], validation_data[1], self.nclasses, "validation_data")
            trainX, trainy = X, y
        elif validation_split:
            trainX, trainy, devX, devy = self.split_validation(X, y, validation_split)
        else:
            raise ValueError("TorchProbe.fit needs validation_data=(X, y) or validation_split=frac for early stopping.")
        if len(trainX) == 0 or len(devX) == 0:
            raise ValueError(f"TorchProbe.fit: empty training ({len(trainX)}) or validation ({len(devX)}) set.")
        trainX, trainy = self._to_x(trainX), self._to_y(trainy)
        devX, devy = self._to_x(devX), self._to_y(devy)

        self.n_epochs_ = 0
        self.n_validations_ = 0
        stopper = EarlyStopping(self.tenacity, best=-1.0, enabled=early_stop)
        best_state = None
        while not stopper.stop and self.n_epochs_ <= self.max_epoch:
            self._train_epochs(trainX, trainy, self.epoch_size)
            accuracy = self.score(devX, devy)
            self.n_validations_ += 1
            if stopper.step(accuracy):
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.best_score_ = stopper.best
        return self

    def _train_epochs(self, X, y, n_epochs: int) -> None:
        torch = self._torch
        self.model.train()
        n = len(X)
        for _ in range(n_epochs):
            permutation = torch.from_numpy(self.rng_.permutation(n)).long().to(self.device)
            for i in range(0, n, self.batch_size):
                idx = permutation[i : i + self.batch_size]
                output = self.model(X[idx])
                loss = self.loss_fn(output, y[idx])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        self.n_epochs_ += n_epochs

    # -- inference ---------------------------------------------------------------------------------------------
    def _predict_tensor(self, X):
        torch = self._torch
        self.model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(X), self.batch_size):
                preds.append(self.model(X[i : i + self.batch_size]).max(1)[1])
        return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64, device=self.device)

    def score(self, X, y) -> float:
        """Accuracy in [0, 1] (model in eval mode, scored in chunks of ``batch_size``)."""
        X, y = self._to_x(X), self._to_y(y)
        if len(X) == 0:
            raise ValueError("TorchProbe.score: empty evaluation set.")
        correct = self._predict_tensor(X).eq(y).sum().item()
        return 1.0 * correct / len(X)

    def predict(self, X) -> np.ndarray:
        """Class ids, int64 of shape (n,) (SentEval returns floats of shape (n, 1))."""
        return self._predict_tensor(self._to_x(X)).cpu().numpy().astype(np.int64)


# --------------------------------------------------------------------------------------------------------------
# sklearn classifier
# --------------------------------------------------------------------------------------------------------------


class SklearnProbe:
    """``sklearn.linear_model.LogisticRegression(C=C, random_state=seed)`` with library defaults (SentEval's
    ``usepytorch=False`` path). ``fit`` ignores the validation arguments, as SentEval does."""

    def __init__(self, C: float = 1.0, *, seed: int = 1111):
        self.C = C
        self.seed = seed

    def fit(self, X, y, validation_data=None, validation_split=None, early_stop=True):
        from sklearn.linear_model import LogisticRegression

        X, y = _check_xy(X, y, None, "SklearnProbe.fit")
        self.model = LogisticRegression(C=self.C, random_state=self.seed)
        self.model.fit(X, y)
        return self

    def score(self, X, y) -> float:
        return float(self.model.score(X, y))

    def predict(self, X) -> np.ndarray:
        return self.model.predict(X)


def make_probe(usepytorch: bool, reg: float, *, inputdim: int, nclasses: int, seed: int,
               classifier: Mapping[str, Any] | None = None, device: Any = "auto"):
    """A fresh probe for one grid value: :class:`TorchProbe` (``l2reg=reg``) or :class:`SklearnProbe` (``C=reg``)."""
    if usepytorch:
        return TorchProbe(inputdim, nclasses, l2reg=reg, seed=seed, config=classifier, device=device)
    return SklearnProbe(C=reg, seed=seed)


# --------------------------------------------------------------------------------------------------------------
# Relatedness regression (SICK-R, STS-B)
# --------------------------------------------------------------------------------------------------------------


class RelatednessRegressor:
    """SentEval's ``RelatednessPytorch``: ``Linear(d, 5) -> Softmax`` trained with MSE on 5-bin targets.

    Adam (lr 1e-3, weight_decay 0), mini-batch 64, rounds of 50 epochs up to epoch 1000, early stopping on the dev
    Pearson of ``probs @ [1, 2, 3, 4, 5]`` with a cumulative patience of 3; the best snapshot is restored. Same RNG
    contract as :class:`TorchProbe`. Runs on CPU or CUDA (SentEval asserted CUDA).
    """

    def __init__(self, inputdim: int, *, seed: int = 1111, device: Any = "auto",
                 nclasses: int = RELATEDNESS_NCLASSES):
        import torch
        from torch import nn

        self.inputdim = int(inputdim)
        self.nclasses = nclasses
        self.seed = seed
        self.batch_size = RELATEDNESS_BATCH_SIZE
        self.max_epoch = RELATEDNESS_MAX_EPOCH
        self.device = resolve_device(device)
        seed_torch(seed)
        self.model = nn.Sequential(nn.Linear(self.inputdim, nclasses), nn.Softmax(dim=-1)).to(self.device)
        self.loss_fn = nn.MSELoss(reduction="mean")
        self.optimizer = torch.optim.Adam(self.model.parameters(), weight_decay=RELATEDNESS_L2)
        self.rng_ = np.random.RandomState(seed)
        self._torch = torch

    def _to(self, a):
        return self._torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dtype=self._torch.float32)

    def fit(self, X, Y, devX, devscores):
        """Train on features ``X`` [n, d] and 5-bin targets ``Y`` [n, 5]; early-stop on Pearson against the raw
        ``devscores``. Returns ``self``; ``best_score_`` is the best dev Pearson."""
        torch = self._torch
        X, _ = _check_xy(X, None, None, "RelatednessRegressor.fit")
        trainX, trainY, devX_t = self._to(X), self._to(Y), self._to(devX)
        devscores = np.asarray(devscores, dtype=np.float64)
        self.n_epochs_ = 0
        stopper = EarlyStopping(RELATEDNESS_PATIENCE, best=-1.0)
        best_state = None
        r = np.arange(1, self.nclasses + 1)
        n = len(trainX)
        while not stopper.stop and self.n_epochs_ <= self.max_epoch:
            self.model.train()
            for _ in range(RELATEDNESS_EPOCHS_PER_ROUND):
                permutation = torch.from_numpy(self.rng_.permutation(n)).long().to(self.device)
                for i in range(0, n, self.batch_size):
                    idx = permutation[i : i + self.batch_size]
                    loss = self.loss_fn(self.model(trainX[idx]), trainY[idx])
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
            self.n_epochs_ += RELATEDNESS_EPOCHS_PER_ROUND
            yhat = np.dot(self._proba(devX_t), r)
            if stopper.step(pearson_or_zero(yhat, devscores)):
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.best_score_ = stopper.best
        return self

    def _proba(self, X) -> np.ndarray:
        torch = self._torch
        self.model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(X), self.batch_size):
                out.append(self.model(X[i : i + self.batch_size]).cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.nclasses), dtype=np.float32)

    def predict_proba(self, X) -> np.ndarray:
        return self._proba(self._to(X))

    def predict(self, X) -> np.ndarray:
        """Expected score ``probs @ [1..5]`` (float64, shape (n,))."""
        return np.dot(self.predict_proba(X), np.arange(1, self.nclasses + 1))
