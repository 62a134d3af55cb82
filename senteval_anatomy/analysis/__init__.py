"""After a sweep: what is read from the results table, never computed again.

:mod:`.topk` (top-k curves read from the sweep's view), :mod:`.plots` (figures), :mod:`.report` (paper-style tables,
``report.md``), :mod:`.findings` (claims, figures and markdown of the findings columns) and :mod:`.analyse`
(:func:`~.analyse.analyse`, the step that writes them all). The table itself, :class:`Results` and the dev-only
selection rules live a layer below, in :mod:`senteval_anatomy.tables`, because the sweep writes and ranks with them
too. Nothing is imported here, so reading a table does not load matplotlib.
"""
