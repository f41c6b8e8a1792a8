"""``python -m sambench`` = the ``sambench`` command."""

from sambench.cli.main import entry

if __name__ == "__main__":  # not when a spawned pool worker imports this module as __mp_main__
    entry()
