"""One module per SentEval task family; each declares its tasks' :class:`~senteval_anatomy.engine.spec.TaskSpec`\\ s
(``SPECS``) and the loader that reads them. The registry (:mod:`senteval_anatomy.engine.registry`) registers every
family's specs; nothing else keeps a per-task table.

========  ==========================================  =============================
family    tasks                                       evaluator
========  ==========================================  =============================
binary    CR, MR, MPQA, SUBJ                          innerkfold (no dev split)
sst       SST2, SST5                                  split
trec      TREC                                        kfold
mrpc      MRPC                                        kfold, + F1
sick      SICKRelatedness, SICKEntailment             relatedness, split
sts       STSBenchmark, STS12-16                      relatedness, sts (no dev)
probing   the 10 probing tasks                        split
========  ==========================================  =============================
"""

from __future__ import annotations

from . import binary, mrpc, probing, sick, sst, sts, trec

#: Every family module, in SentEval's order of its first task.
FAMILIES = (binary, sst, trec, mrpc, sick, sts, probing)

__all__ = ["FAMILIES", "binary", "sst", "trec", "mrpc", "sick", "sts", "probing"]
