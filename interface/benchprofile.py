"""``python -m interface.benchprofile``: kept where the docs have always pointed;
the code is :mod:`interface.ops.benchprofile`."""

from interface.ops.benchprofile import main

if __name__ == "__main__":
    raise SystemExit(main())
