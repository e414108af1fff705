from __future__ import annotations

from bootmem.cli import main

raise SystemExit(main())
