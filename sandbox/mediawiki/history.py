"""The emulator's revision history and users: `action=query` with `prop=revisions` or `list=users`,
from `revisions:` and `users:` fixtures (revertrisk-wikidata asks these of www.wikidata.org).

Shapes follow MediaWiki's ApiQueryRevisions/ApiQueryRevisionsBase and ApiQueryUsers
(wikimedia/mediawiki includes/api/): pages keyed by page id (formatversion 1) with `revisions` in
the order asked; each revision has the `rvprop`s asked for (`ids`: `revid`, `parentid`; `user`,
`userid`, `timestamp`, `comment`; `content` with `rvslots=main`: `slots.main` with
`contentmodel`, `contentformat` and the text under `*`, or `content` in formatversion 2).
`revids` lists the pages of the revisions named; `pageids`/`titles` with `rvlimit` and `rvdir`
(`older`, the default, or `newer`) list a page's history, with `continue`/`rvcontinue`
(`<timestamp>|<revid>`) when more is left. `list=users` gives `userid`, `name` and the `usprop`s
asked (`groups`, `registration`, `editcount`); a name that is an IP address is `invalid`, as
MediaWiki answers for a logged-out editor.

What the fixtures do not say (a revision or user they do not name) is `NotInFixtures`.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from sandbox.mediawiki.api import (
    MAIN_PARAMS,
    ApiError,
    NotInFixtures,
    _integer,
    _split,
    _unsupported,
)
from sandbox.mediawiki.fixtures import RevisionSpec, Wiki

PARAMS = frozenset(
    MAIN_PARAMS
    | {
        "prop",
        "list",
        "revids",
        "pageids",
        "titles",
        "rvprop",
        "rvslots",
        "rvlimit",
        "rvdir",
        "ususers",
        "usprop",
    }
)
RVPROPS = frozenset({"ids", "user", "userid", "timestamp", "comment", "content", "title"})
USPROPS = frozenset({"groups", "registration", "editcount"})


def handles(wiki: Wiki, params: dict[str, str]) -> bool:
    """Whether this module answers the request: revisions or users of a wiki with them."""
    if params.get("action") != "query" or not (wiki.revisions or wiki.users):
        return False
    return params.get("prop") == "revisions" or params.get("list") == "users"


def _revision(spec: RevisionSpec, props: set[str], params: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "ids" in props:
        out["revid"] = spec.revid
        out["parentid"] = spec.parentid
    if "user" in props:
        out["user"] = spec.user
        if spec.anon:
            out["anon"] = True
    if "userid" in props:
        out["userid"] = 0 if spec.anon else spec.userid
    if "timestamp" in props:
        out["timestamp"] = spec.timestamp
    if "comment" in props:
        out["comment"] = spec.comment
    if "content" in props:
        text = json.dumps(spec.content, ensure_ascii=False, separators=(",", ":"))
        if params.get("rvslots") != "main":
            raise _unsupported("prop=revisions with rvprop=content without rvslots=main")
        slot: dict[str, Any] = {"contentmodel": spec.contentmodel}
        slot["contentformat"] = "application/json"
        if params.get("formatversion") in ("2", "latest"):
            slot["content"] = text
        else:
            slot["*"] = text
        out["slots"] = {"main": slot}
    return out


def _page(wiki: Wiki, spec: RevisionSpec, revisions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"pageid": spec.pageid, "ns": spec.ns, "title": spec.title, "revisions": revisions}


def _revisions(wiki: Wiki, params: dict[str, str]) -> dict[str, Any]:
    props = set(_split(params.get("rvprop", "ids|timestamp|flags|comment|user")))
    unknown = sorted(props - RVPROPS)
    if unknown:
        raise _unsupported(f"rvprop {'|'.join(unknown)}")
    pages: dict[int, dict[str, Any]] = {}
    body: dict[str, Any] = {"batchcomplete": True}
    if "revids" in params:
        for raw in _split(params["revids"]):
            revid = _integer("revids", raw)
            spec = wiki.revisions.get(revid)
            if spec is None:
                raise NotInFixtures(f"the fixtures have no revision {revid} on {wiki.host}")
            page = pages.setdefault(spec.pageid, _page(wiki, spec, []))
            page["revisions"].append(_revision(spec, props, params))
    elif "pageids" in params:
        pageid = _integer("pageids", params["pageids"])
        history = sorted(
            (r for r in wiki.revisions.values() if r.pageid == pageid), key=lambda r: r.revid
        )
        if not history or not any(r.parentid == 0 for r in history):
            raise NotInFixtures(
                f"the fixtures have no full history of page id {pageid} on {wiki.host}"
            )
        if params.get("rvdir", "older") == "older":
            history.reverse()
        limit = _integer("rvlimit", params.get("rvlimit", "1"))
        shown, rest = history[:limit], history[limit:]
        pages[pageid] = _page(wiki, shown[0], [_revision(r, props, params) for r in shown])
        if rest:
            stamp = rest[0].timestamp.replace("-", "").replace(":", "").replace("T", "")
            body = {
                "continue": {"rvcontinue": f"{stamp.rstrip('Z')}|{rest[0].revid}", "continue": "||"}
            }
    else:
        raise _unsupported("prop=revisions without revids or pageids")
    if params.get("formatversion") in ("2", "latest"):
        body["query"] = {"pages": list(pages.values())}
    else:
        body["query"] = {"pages": {str(k): v for k, v in pages.items()}}
    return body


def _users(wiki: Wiki, params: dict[str, str]) -> dict[str, Any]:
    props = set(_split(params.get("usprop", "")))
    unknown = sorted(props - USPROPS)
    if unknown:
        raise _unsupported(f"usprop {'|'.join(unknown)}")
    users = []
    for name in _split(params.get("ususers", "")):
        try:
            ipaddress.ip_address(name)
        except ValueError:
            pass
        else:
            users.append({"name": name, "invalid": True})
            continue
        spec = wiki.users.get(name)
        if spec is None:
            raise NotInFixtures(f"the fixtures have no user {name!r} on {wiki.host}")
        user: dict[str, Any] = {"userid": spec.userid, "name": spec.name}
        if "editcount" in props:
            user["editcount"] = spec.editcount
        if "registration" in props:
            user["registration"] = spec.registration
        if "groups" in props:
            user["groups"] = ["*", "user", *spec.groups]
        users.append(user)
    return {"batchcomplete": True, "query": {"users": users}}


def answer(wiki: Wiki, params: dict[str, str]) -> dict[str, Any]:
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise _unsupported("with prop=revisions or list=users the parameters " + ", ".join(unknown))
    if params.get("prop") == "revisions" and "list" in params:
        raise _unsupported("prop=revisions together with list=users")
    if params.get("format") != "json":
        raise _unsupported(f'format "{params.get("format", "jsonfm")}" (use format=json)')
    if params.get("prop") == "revisions":
        return _revisions(wiki, params)
    if params.get("list") == "users":
        return _users(wiki, params)
    raise ApiError("badvalue", "Unrecognized value for parameter.")
