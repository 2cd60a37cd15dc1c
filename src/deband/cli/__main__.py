"""`python -m deband.cli`: the same as the `deband` command."""

from deband.cli import main

raise SystemExit(main())
