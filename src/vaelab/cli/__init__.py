"""The ``vaelab`` command line: ``main`` parses (:mod:`.main`, :mod:`.train_flags`) and runs
one function per subcommand (:mod:`.commands`)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
