"""``python -m perfkit``: the perfkit command line."""

from perfkit.cli import main

raise SystemExit(main())
