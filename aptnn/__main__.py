"""``python -m aptnn``: the ``aptnn`` command."""
from aptnn.cli import main

if __name__ == "__main__":
    main()
