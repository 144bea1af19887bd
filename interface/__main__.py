"""``python -m interface``: the command line (``interface.ops.cli``)."""

from interface.ops.cli import main

raise SystemExit(main())
