"""``python -m pyllm``: the command line (pyllm/cli)."""
from .cli import main

raise SystemExit(main())
