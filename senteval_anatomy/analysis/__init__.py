"""After a sweep: the results table and what is read from it, never computed again.

:mod:`.table` (the table's schema, validation and files), :mod:`.results` (:class:`~.results.Results`, queries),
:mod:`.selection` (dev-only choice of heads, layers and k), :mod:`.topk` (top-k curves read from the sweep's view),
:mod:`.plots` (figures), :mod:`.report` (paper-style tables, ``report.md``), :mod:`.findings` (claims, figures and
markdown of the findings columns) and :mod:`.analyse` (:func:`~.analyse.analyse`, the step that writes them all).
Nothing is imported here, so reading a table does not load matplotlib.
"""
