"""``python -m sambench`` = the ``sambench`` command."""

from sambench.cli import entry

entry()
