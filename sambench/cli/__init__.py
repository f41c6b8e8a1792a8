"""Click commands that are not in :mod:`sambench.cli.main` itself, imported only when invoked (``LAZY_COMMANDS``).

Library modules never import click: each command here parses its options, calls one library function
and prints. A :class:`~sambench.types.SambenchError` propagates to the ``sambench`` group, which prints
it as one ``error: ...`` line and exits 2.
"""
