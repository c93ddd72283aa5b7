"""``python -m memo``: the ``memo`` command (see ``memo.cli``)."""

import sys

from memo.cli import main

if __name__ == "__main__":
    sys.exit(main())
