"""``python -m servesim.cli``: the same as the ``servesim`` console script."""

from servesim.cli import main

main()
