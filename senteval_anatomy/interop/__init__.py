"""The SentEval-facing side and the paper: :mod:`.adapters` (one head, one layer or a list of heads as SentEval's
``prepare`` / ``batcher``), :mod:`.compat` (the unmodified SentEval on today's stack) and :mod:`.reproduce` (Jo &
Myaeng, ACL 2020, run and compared with the numbers its code released).
"""
