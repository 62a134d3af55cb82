"""The built-in SentEval-compatible engine: a drop-in for ``senteval.engine.SE``.

>>> from senteval_anatomy.engine import SE                                  # doctest: +SKIP
>>> params = {"task_path": "SentEval/data", "usepytorch": False, "kfold": 5}
>>> se = SE(params, batcher, prepare)                                       # doctest: +SKIP
>>> se.eval(["TREC", "SST5"])                                               # doctest: +SKIP
{'TREC': {'devacc': ..., 'acc': ..., 'ndev': 5452, 'ntest': 500}, 'SST5': {...}}

Same call contract, ``params`` keys and defaults, task names, data layout, batching order, result keys and
rounding as SentEval 5d6dc11; the differences (all deliberate) are listed in ``docs/engine.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .params import DEFAULTS, apply_defaults, dotdict
from .protocol import pair_features
from .registry import DOWNSTREAM_TASKS, PROBING_TASKS, TASK_NAMES, UNSUPPORTED_TASKS, get_task, register
from .spec import DataError, TaskSpec
from .tasks import Task, load_task

logger = logging.getLogger(__name__)

__all__ = [
    "SE",
    "dotdict",
    "DEFAULTS",
    "TASK_NAMES",
    "PROBING_TASKS",
    "DOWNSTREAM_TASKS",
    "UNSUPPORTED_TASKS",
    "DataError",
    "TaskSpec",
    "Task",
    "get_task",
    "register",
    "load_task",
    "pair_features",
]


class SE:
    """SentEval's engine: ``SE(params, batcher, prepare=None).eval(task_or_list)``.

    Parameters
    ----------
    params : mapping
        Wrapped once in a :class:`dotdict` with SentEval's defaults (``usepytorch=True``, ``seed=1111``,
        ``batch_size=128``, ``nhid=0``, ``kfold=5``, ``classifier={'nhid': 0}``) plus ``device='auto'``. The same
        object is passed to every ``prepare`` / ``batcher`` call, for every task.
    batcher : callable
        ``batcher(params, batch) -> array [len(batch), d]``; ``batch`` is a list of token lists.
    prepare : callable, optional
        ``prepare(params, samples)``, called once per task with all of its sentences before any ``batcher`` call.

    Attributes
    ----------
    params : dotdict
    list_tasks : list of str
        SentEval's 28 task names.
    evaluation : Task
        The last task loaded.
    results : dict
        The last result returned by :meth:`eval`.
    """

    def __init__(self, params: Mapping[str, Any], batcher: Callable, prepare: Callable | None = None):
        self.params = apply_defaults(params)
        self.batcher = batcher
        self.prepare = prepare if prepare else (lambda params, samples: None)
        self.list_tasks = list(TASK_NAMES)
        self.evaluation: Task | None = None
        self.results: Any = None

    def eval(self, name: str | Sequence[str]) -> dict[str, Any]:
        """Evaluate one task (returns its result dict) or a list of tasks (returns ``{name: result}``).

        With a list, every name is checked before any task runs.
        """
        if isinstance(name, (list, tuple)):
            for n in name:
                get_task(n)
            self.results = {x: self.eval(x) for x in name}
            return self.results

        get_task(name)  # unknown / unsupported name -> ValueError listing the valid ones
        task = load_task(name, self.params.task_path, seed=self.params.seed)
        self.evaluation = task
        logger.info("***** Task: %s *****", name)
        self.params.current_task = name
        task.prepare(self.params, self.prepare)
        embeddings = task.embed(self.params, self.batcher)
        self.results = task.evaluate(embeddings, self.params)
        return self.results
