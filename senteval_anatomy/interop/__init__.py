"""The SentEval-facing side: :mod:`.adapters` (one head, one layer or a list of heads as SentEval's ``prepare`` /
``batcher``, through the feature store) and :mod:`.compat` (the unmodified SentEval on today's stack). They read
only the encoders, the store and the vocabulary, so they sit under the sweep, whose ``--harness senteval`` hands
the real SentEval these batchers. The paper's experiments are in :mod:`senteval_anatomy.experiments`.
"""
