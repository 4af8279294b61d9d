"""``python -m laart_lab`` is the ``laart-lab`` command."""

from laart_lab.cli import main

raise SystemExit(main())
