"""`python -m sandbox.mediawiki [--host H] [--port N] [--fault MODE] [--max-limit N]`."""

from sandbox.mediawiki.replay import main

raise SystemExit(main())
