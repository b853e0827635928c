"""`python -m sandbox.mediawiki [--host H] [--port N] [--record DIR | --replay DIR [--emulate]]
[--fixtures DIR] [--fault MODE] [--max-limit N]` (see --help)."""

from sandbox.mediawiki.replay import main

raise SystemExit(main())
