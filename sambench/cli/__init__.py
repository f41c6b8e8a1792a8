"""EVERY click command: the ``sambench`` group and ``run`` in :mod:`sambench.cli.main`, the others in a module
each, imported only when invoked (``LAZY_COMMANDS``).

No other module imports click: each command parses its options, calls one API or library function
(``run`` calls :func:`sambench.api.configure` and :func:`sambench.api.execute`, as ``sambench.run`` does)
and prints. A :class:`~sambench.types.SambenchError` propagates to the ``sambench`` group, which prints
it as one ``error: ...`` line and exits 2.
"""
