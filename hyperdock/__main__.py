"""``python -m hyperdock`` is ``hyperdock``."""

from hyperdock.cli import main

main()
