"""An offline stand-in for the wikis' APIs: an emulator of the MediaWiki Action API over fixture
wikis, replay of exchanges recorded from the real wikis, and a recorder, with fault injection
(see `replay.py`), for the isvcs that call MediaWiki."""

from sandbox.mediawiki.faults import Fault, FaultMode
from sandbox.mediawiki.fixtures import FixtureError, load_wikis
from sandbox.mediawiki.recordings import RecordingStore, normalize
from sandbox.mediawiki.replay import ReplayServer

__all__ = [
    "Fault",
    "FaultMode",
    "FixtureError",
    "RecordingStore",
    "ReplayServer",
    "load_wikis",
    "normalize",
]
