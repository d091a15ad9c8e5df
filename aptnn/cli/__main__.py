"""``python -m aptnn.cli``: the ``aptnn`` command (used under torchrun, e.g. ``torchrun … -m aptnn.cli train``)."""
from aptnn.cli import main

if __name__ == "__main__":
    main()
