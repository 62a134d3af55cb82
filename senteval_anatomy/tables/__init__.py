"""The results table and its dev-only rules: what a sweep writes and every report reads.

:mod:`.table` (the table's schema, validation and files: CSV, parquet, the reference's JSON layout), :mod:`.selection`
(dev-only choice of heads, layers and k; test only when asked, with a warning) and :mod:`.results`
(:class:`~.results.Results`, the queries every report asks of the table). They read only the vocabulary, the output
folder's names and the engine's task registry, so the sweep (which writes ``results.csv`` and ranks heads on dev
for its top-k view) imports them from below, and :mod:`senteval_anatomy.analysis` reads them from above. Nothing is
imported here.
"""
