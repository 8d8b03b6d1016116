"""`python -m drkit.cli` (what scripts/drkit runs): the operator CLI."""

from drkit.cli.main import main

raise SystemExit(main())
