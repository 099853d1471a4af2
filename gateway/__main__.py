"""``python -m gateway``: the same as the ``eventgw`` console script."""

from gateway.cli import main

raise SystemExit(main())
