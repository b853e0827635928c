"""An offline stand-in for the outside world of Lift Wing's isvcs: an emulator of the MediaWiki
Action API over fixture wikis (`api.py`), of MediaWiki REST's Parsoid HTML and page summary
(`rest.py`), of Wikidata's wbgetentities (`wikibase.py`) and of EventGate; replay of exchanges
recorded from the real wikis, and a recorder, with fault injection (see `replay.py`); fixtures for
production's load-test pages (`generate.py`); and what `predict` says about a missing answer
(`diagnose.py`)."""

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
