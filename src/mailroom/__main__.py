"""`python -m mailroom` is the same as the `mailroom` console script."""

from mailroom.cli.main import main

raise SystemExit(main())
