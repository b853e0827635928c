"""An offline stand-in for the MediaWiki Action API of Wikipedias: fixture wikis served by a
replay server with fault injection (see `replay.py`), for the isvcs that call MediaWiki."""

from sandbox.mediawiki.faults import Fault, FaultMode
from sandbox.mediawiki.fixtures import FixtureError, load_wikis
from sandbox.mediawiki.replay import ReplayServer

__all__ = ["Fault", "FaultMode", "FixtureError", "ReplayServer", "load_wikis"]
