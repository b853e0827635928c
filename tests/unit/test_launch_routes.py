"""launch.py's outside world (`--route`, `--cafile`) and mesh.py's rules: production's mesh egress
to the wikis' own domains, as the local target gives it to an isvc's process."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox.runtime import launch, mesh

pytestmark = pytest.mark.unit

LAUNCH = Path(launch.__file__)


def test_a_route_matches_the_name_and_port_as_the_mesh_does() -> None:
    routes = launch.Routes(["*.wikipedia.org:80=127.0.0.1:8090", "wikipedia.org:80=127.0.0.1:8090"])
    assert routes.target("en.wikipedia.org", 80) == ("127.0.0.1", 8090)
    assert routes.target("EN.Wikipedia.org.", "80") == ("127.0.0.1", 8090)
    assert routes.target(b"fr.wikipedia.org", 80) == ("127.0.0.1", 8090)
    assert routes.target("wikipedia.org", "http") == ("127.0.0.1", 8090)
    # Other ports (https on 443 is not intercepted in production) and names resolve as always.
    assert routes.target("en.wikipedia.org", 443) is None
    assert routes.target("en.wikipedia.org.example.com", 80) is None
    assert routes.target("wikidata.org", 80) is None


@pytest.mark.parametrize(
    "rule", ["*.wikipedia.org=127.0.0.1:1", "*.wikipedia.org:80=localhost:1", ":80=127.0.0.1:1",
             "*.wikipedia.org:80=127.0.0.1:0", "*.wikipedia.org:x=127.0.0.1:1"],
)  # fmt: skip
def test_a_bad_route_is_refused(rule: str) -> None:
    with pytest.raises(ValueError, match="PATTERN:PORT=ADDR:PORT"):
        launch.Routes([rule])


def test_the_launcher_refuses_a_bad_route_with_usage_exit_2(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    proc = subprocess.run(
        [sys.executable, str(LAUNCH), "--route", "nonsense", "--", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "PATTERN:PORT=ADDR:PORT" in proc.stderr
    assert "ran" not in proc.stdout


def test_mesh_rules_cover_productions_domains_and_ports() -> None:
    domains, ports = mesh.proxied_domains()
    assert "*.wikipedia.org" in domains and "wikipedia.org" in domains
    assert set(ports) == {80, 4680}
    rules = mesh.wiki_routes("http://127.0.0.1:8090")
    assert "*.wikipedia.org:80=127.0.0.1:8090" in rules
    assert len(rules) == len(domains) * len(ports)
    # A replay server known only by name is not routed (the launcher connects to addresses).
    assert mesh.wiki_routes("http://mediawiki-replay:8080") == []
    assert mesh.launcher_args(None) == []
    assert mesh.launcher_args("http://127.0.0.1:8090")[-1] == f"--cafile={mesh.WMF_CA_BUNDLE}"


CHILD = textwrap.dedent(
    """
    import multiprocessing, socket, ssl, sys

    def resolve(queue):
        queue.put(socket.getaddrinfo("en.wikipedia.org", 80, type=socket.SOCK_STREAM)[0][4])

    if __name__ == "__main__":
        print("here", socket.getaddrinfo("en.wikipedia.org", 80, type=socket.SOCK_STREAM)[0][4])
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        p = ctx.Process(target=resolve, args=(queue,))
        p.start()
        print("worker", queue.get(timeout=60))
        p.join()
        ssl.create_default_context(cafile=sys.argv[1])
        print("cafile ok")
    """
)


def test_routes_and_cafile_hold_in_the_isvc_and_its_spawned_workers(tmp_path: Path) -> None:
    """As in KServe's REST workers (multiprocessing `spawn`): a fresh interpreter gets them too."""
    script = tmp_path / "server.py"
    script.write_text(CHILD)
    absent = tmp_path / "wmf-ca-certificates.crt"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", launch.ENV_VAR)}
    proc = subprocess.run(
        [sys.executable, str(LAUNCH), "--route", "*.wikipedia.org:80=127.0.0.1:4321",
         "--cafile", str(absent), "--", str(script), str(absent)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "here ('127.0.0.1', 4321)" in proc.stdout
    assert "worker ('127.0.0.1', 4321)" in proc.stdout
    assert "cafile ok" in proc.stdout


def test_a_cafile_not_named_still_fails_as_without_the_launcher(tmp_path: Path) -> None:
    saved = ssl.SSLContext.load_verify_locations
    try:
        launch.patch_cafiles([str(tmp_path / "named.crt")])
        ssl.create_default_context(cafile=str(tmp_path / "named.crt"))  # the host's store
        with pytest.raises(FileNotFoundError):
            ssl.create_default_context(cafile=str(tmp_path / "other.crt"))
    finally:
        ssl.SSLContext.load_verify_locations = saved  # type: ignore[method-assign]


def test_getaddrinfo_is_untouched_for_other_names() -> None:
    saved = socket.getaddrinfo
    try:
        launch.patch_getaddrinfo(launch.Routes(["*.wikipedia.org:80=127.0.0.1:4321"]))
        assert socket.getaddrinfo("127.0.0.2", 81)[0][4][:2] == ("127.0.0.2", 81)
        assert socket.getaddrinfo("de.wikipedia.org", 80)[0][4][:2] == ("127.0.0.1", 4321)
    finally:
        socket.getaddrinfo = saved


def _component(env: dict[str, str]):
    from sandbox.catalog import Component

    return Component.model_validate(
        {
            "entrypoint": "model.py",
            "env": env,
            "resources": {
                "requests": {"cpu": "1", "memory": "1Gi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        }
    )


PRODUCTION_EVENTGATE = "http://eventgate-main.discovery.wmnet:4480/v1/events"


def test_eventgate_url_points_at_the_replay_servers_eventgate_only_when_it_runs() -> None:
    from sandbox.runtime.lifecycle import component_env
    from sandbox.runtime.options import MediaWiki, UpOptions

    comp = _component({"EVENTGATE_URL": PRODUCTION_EVENTGATE, "FORCE_HTTP": "True"})
    replay = UpOptions(mediawiki=MediaWiki.parse("replay"))
    env = component_env(comp, "http://127.0.0.1:8090", replay)
    assert env["EVENTGATE_URL"] == "http://127.0.0.1:8090/v1/events"
    assert env["FORCE_HTTP"] == "True"
    # Another MediaWiki (a URL, the live wikis) is no EventGate: production's value stays.
    other = UpOptions(mediawiki=MediaWiki.parse("https://en.wikipedia.org"))
    assert component_env(comp, "https://en.wikipedia.org", other)["EVENTGATE_URL"] == (
        PRODUCTION_EVENTGATE
    )
    assert component_env(comp, None, UpOptions())["EVENTGATE_URL"] == PRODUCTION_EVENTGATE
    # --env still has the last word.
    mine = UpOptions(mediawiki=MediaWiki.parse("replay"), env={"EVENTGATE_URL": "http://x/e"})
    assert component_env(comp, "http://127.0.0.1:8090", mine)["EVENTGATE_URL"] == "http://x/e"
    # Without EVENTGATE_URL in service.yaml, none is added.
    assert "EVENTGATE_URL" not in component_env(_component({}), "http://127.0.0.1:8090", replay)


def test_the_local_plan_routes_the_wikis_only_under_the_replay_server(tmp_path: Path) -> None:
    from sandbox import catalog
    from sandbox.runtime.local import LocalBackend, LocalPrepared
    from sandbox.runtime.options import MediaWiki, UpOptions

    service = catalog.get("outlink-topic-model")
    prepared = LocalPrepared(pythons={f"{service.name}/predictor": sys.executable})
    comp = service.components.predictor

    def plan(opts: UpOptions, url: str | None):
        return LocalBackend().plan(service, "predictor", comp, opts, url, prepared)

    replay = plan(UpOptions(mediawiki=MediaWiki.parse("replay")), "http://127.0.0.1:8090")
    assert "--route=*.wikipedia.org:80=127.0.0.1:8090" in replay.outside
    assert f"--cafile={mesh.WMF_CA_BUNDLE}" in replay.outside
    assert plan(UpOptions(), None).outside == ()
    url = UpOptions(mediawiki=MediaWiki.parse("http://127.0.0.1:9000"))
    assert plan(url, "http://127.0.0.1:9000").outside == ()


def test_isvcs_that_name_eventgate_url_use_the_replay_server(monkeypatch) -> None:
    from sandbox import catalog
    from tests.production_support import checkout

    services = catalog.load_all()
    assert services["outlink-topic-model"].uses_mediawiki  # WIKI_URL
    assert not services["langid"].uses_mediawiki
    root = checkout()
    if root is None:
        pytest.skip("no inference-services checkout for the production entry")
    monkeypatch.setenv("SANDBOX_INFERENCE_SERVICES", str(root))
    entry = catalog.PRODUCTION_DIR / "revise-tone-task-generator" / "service.yaml"
    revise_tone = catalog.load_file(entry)
    assert "WIKI_URL" not in revise_tone.components.predictor.env
    assert revise_tone.uses_mediawiki  # EVENTGATE_URL: the replay server is its EventGate
