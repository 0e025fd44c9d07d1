"""``python -m coop.node.cli``: the same as the ``coop`` command."""

from coop.node.cli import main

raise SystemExit(main())
