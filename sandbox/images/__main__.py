"""`python -m sandbox.images {build,tags,prune,wheelhouse}`."""

from sandbox.images import main

raise SystemExit(main())
