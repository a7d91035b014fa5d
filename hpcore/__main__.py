"""``python -m hpcore`` is the ``hpcore`` console script."""

from hpcore.cli import main

raise SystemExit(main())
