"""``python -m sambench`` = the ``sambench`` command."""

from sambench.cli import main

main()
