"""The minikube target's logic that needs no cluster: the recorded facts, command lines, reading
recorded cluster documents, and clear errors when no cluster answers.

The documents under fixtures/minikube/ have the shape KServe 0.17, Knative and the Kubernetes API
return (`kubectl get ... -o json`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from sandbox import catalog, images, manifests
from sandbox.errors import RunError
from sandbox.paths import REPO_ROOT
from sandbox.runtime.minikube import documents, kubectl, model_store
from sandbox.runtime.minikube import facts as facts_mod
from sandbox.runtime.minikube import target as mk
from sandbox.runtime.options import MediaWiki, UpOptions

pytestmark = pytest.mark.unit

PLAYBOOK_VARS = REPO_ROOT / "playbooks" / "group_vars" / "all" / "sandbox.yml"

FIXTURES = Path(__file__).parent / "fixtures" / "minikube"


def _doc(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _recorded(home: Path, **changes) -> Path:
    """The cluster facts as the playbook's verify role writes them (roles/verify)."""
    doc = {
        "provider": "minikube",
        "driver": "docker",
        "profile": "ml-sandbox",
        "context": "ml-sandbox",
        "bin_dir": str(home / "bin"),
        "ingress": {"host": "127.0.0.1", "port": 8080},
        "model_store": {
            "namespace": "model-store",
            "service": "seaweedfs",
            "s3_port": 8333,
            "bucket": "wmf-ml-models",
            "region": "us-east-1",
            "credentials_file": str(home / "state" / "s3-credentials.json"),
        },
        "isvc_s3_secret_name": "kserve-s3",
        "isvc_service_account": "kserve",
        "isvc_namespaces": ["articletopic-outlink", "llm"],
    }
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            doc[section][leaf] = value
        else:
            doc[section] = value
    path = home / facts_mod.FACTS_RELPATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def facts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> facts_mod.ClusterFacts:
    monkeypatch.setenv("SANDBOX_HOME", str(tmp_path))
    _recorded(tmp_path)
    return facts_mod.load_facts()


@pytest.fixture(scope="module")
def services() -> dict[str, catalog.Service]:
    return catalog.load_all()


def test_facts_are_what_the_playbook_recorded(tmp_path: Path) -> None:
    """The CLI reads the playbook's record, so `-e ingress_host_port=9090` is seen."""
    f = facts_mod.load_facts(_recorded(tmp_path, ingress__port=9090, context="other"))
    assert (f.context, f.driver, f.ingress_port) == ("other", "docker", 9090)
    assert f.s3_bucket == "wmf-ml-models" and f.s3_port == 8333
    assert f.bin_dir == tmp_path / "bin"


def test_missing_or_broken_facts_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"no cluster sandbox is recorded.*ansible-playbook"):
        facts_mod.load_facts(tmp_path / "absent.json")
    path = _recorded(tmp_path, ingress={"host": "127.0.0.1"})
    with pytest.raises(RunError, match=r"ingress\.port is missing"):
        facts_mod.load_facts(path)
    path = _recorded(tmp_path, model_store__s3_port="eighty")
    with pytest.raises(RunError, match="s3_port must be a int"):
        facts_mod.load_facts(path)
    path.write_text("{")
    with pytest.raises(RunError, match="cannot read the cluster facts"):
        facts_mod.load_facts(path)


def test_existing_clusters_use_the_current_context(tmp_path: Path) -> None:
    f = facts_mod.load_facts(_recorded(tmp_path, provider="existing", context=""))
    assert "--context" not in kubectl.kubectl_argv(f, "get", "pods")


def test_pinned_tools_come_from_the_sandbox_bin_dir(facts: facts_mod.ClusterFacts) -> None:
    facts.bin_dir.mkdir(parents=True)
    (facts.bin_dir / "kubectl").write_text("#!/bin/sh\n")
    argv = kubectl.kubectl_argv(facts, "get", "pods")
    assert argv == [str(facts.bin_dir / "kubectl"), "--context", facts.context, "get", "pods"]


def test_apply_is_server_side_with_our_field_manager(facts: facts_mod.ClusterFacts) -> None:
    argv = kubectl.apply_argv(facts, Path("/tmp/x.yaml"))
    assert argv[1:3] == ["--context", facts.context]
    assert "--server-side" in argv and "--force-conflicts" in argv
    assert f"--field-manager={kubectl.FIELD_MANAGER}" in argv
    assert argv[-2:] == ["-f", "/tmp/x.yaml"]


def test_logs_and_port_forward_command_lines(
    facts: facts_mod.ClusterFacts, services: dict[str, catalog.Service]
) -> None:
    svc = services["langid"]
    argv = kubectl.logs_argv(facts, svc.namespace, "pod-1", "storage-initializer", previous=True)
    assert argv[3:] == [
        "logs",
        "-n",
        "llm",
        "pod-1",
        "-c",
        "storage-initializer",
        "--tail=200",
        "--previous",
    ]
    follow = kubectl.follow_logs_argv(facts, svc, "predictor", follow=True)
    assert f"{kubectl.ISVC_LABEL}=langid,component=predictor" in follow and follow[-1] == "--follow"
    pf = kubectl.port_forward_argv(facts, 41234)
    assert f"service/{facts.s3_service}" in pf and f"41234:{facts.s3_port}" in pf
    assert "--address=127.0.0.1" in pf


def test_docker_env_output_parses_to_a_build_env() -> None:
    env = kubectl.docker_build_env((FIXTURES / "docker-env.txt").read_text())
    assert env == {
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_HOST": "tcp://192.168.49.2:2376",
        "DOCKER_CERT_PATH": "/home/dev/.minikube/certs",
        "MINIKUBE_ACTIVE_DOCKERD": "ml-sandbox",
    }


def test_stable_tag_is_the_committed_manifests(services: dict[str, catalog.Service]) -> None:
    for svc in services.values():
        committed = manifests.load_documents(manifests.isvc_path(svc))[0]
        for component, _ in svc.component_items():
            built = images.image_tag(svc, component, registry=manifests.IMAGE_REGISTRY)
            image = committed["spec"][component]["containers"][0]["image"]
            assert kubectl.stable_ref(built) == image
    replay = manifests.load_documents(manifests.REPLAY_MANIFEST)
    (deployment,) = [d for d in replay if d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert kubectl.stable_ref(images.replay_image_tag(registry=manifests.IMAGE_REGISTRY)) == image
    assert kubectl.stable_ref("localhost:5000/x") == "localhost:5000/x:sandbox"


def test_ready_isvc_is_ready_and_lists_its_revisions() -> None:
    doc = _doc("isvc-ready.json")
    assert documents.is_ready(doc)
    assert documents.generation(doc) == 2
    assert documents.latest_revisions(doc) == {
        "predictor": "outlink-topic-model-predictor-00002",
        "transformer": "outlink-topic-model-transformer-00002",
    }


def test_status_behind_the_applied_generation_is_not_ready() -> None:
    doc = _doc("isvc-ready.json")
    doc["metadata"]["generation"] = 3  # just applied a change; the controller has not caught up
    assert not documents.is_ready(doc)


def test_failed_isvc_is_not_ready_and_says_why() -> None:
    doc = _doc("isvc-storage-failed.json")
    assert not documents.is_ready(doc)
    by_type = {c.type: c for c in documents.conditions(doc)}
    assert by_type["PredictorReady"].reason == "RevisionFailed"
    assert "HeadObject" in by_type["PredictorReady"].line()
    assert not documents.is_ready({"metadata": {"generation": 1}})  # no status at all yet


def test_status_rows_per_component() -> None:
    listed = {"items": [_doc("isvc-ready.json"), _doc("isvc-storage-failed.json")]}
    rows = {(r.isvc, r.component): r for r in documents.component_statuses(listed)}
    assert set(rows) == {
        ("outlink-topic-model", "predictor"),
        ("outlink-topic-model", "transformer"),
        ("langid", "predictor"),
    }
    assert rows["outlink-topic-model", "transformer"].state == "ready"
    assert rows["outlink-topic-model", "transformer"].address.endswith(".wikimedia.org")
    failed = rows["langid", "predictor"]
    assert failed.state == "not ready" and "HeadObject" in failed.detail


def test_log_targets_include_the_storage_initializer_and_previous_runs() -> None:
    targets = documents.log_targets(_doc("pods-langid.json"))
    names = [t.container for t in targets]
    assert names.index("storage-initializer") < names.index(documents.KSERVE_CONTAINER)
    by_name = {t.container: t for t in targets}
    assert by_name["storage-initializer"].previous  # it restarted: its last run says why
    assert not by_name[documents.KSERVE_CONTAINER].previous


def test_events_of_the_isvc_only_oldest_first() -> None:
    lines = documents.relevant_events(_doc("events-llm.json"), "langid")
    assert len(lines) == 3  # the isvc, its revision, its pod; not langidx-* nor the LimitRange
    assert "InferenceService/langid" in lines[0]
    assert "Revision/langid-predictor-00001" in lines[1]
    assert "storage-initializer" in lines[2]


def test_model_goes_to_its_production_path(services: dict[str, catalog.Service]) -> None:
    for svc in services.values():
        key = model_store.object_key(svc, "wmf-ml-models")
        assert f"s3://wmf-ml-models/{key}" == svc.model.storage_uri + svc.model.file
        with pytest.raises(RunError, match="not in bucket"):
            model_store.object_key(svc, "another-bucket")


def test_credentials_file_must_be_private_and_complete(tmp_path: Path) -> None:
    path = tmp_path / "s3-credentials.json"
    path.write_text(json.dumps({"access_key": "sandboxabc", "secret_key": "def"}))
    path.chmod(0o644)
    with pytest.raises(RunError, match="chmod 600"):
        model_store.read_credentials(path)
    path.chmod(0o600)
    assert model_store.read_credentials(path) == {"access_key": "sandboxabc", "secret_key": "def"}
    path.write_text(json.dumps({"access_key": "sandboxabc"}))
    with pytest.raises(RunError, match="secret_key"):
        model_store.read_credentials(path)
    path.write_text("access_key=abc\n")
    with pytest.raises(RunError, match="not JSON"):
        model_store.read_credentials(path)
    with pytest.raises(RunError, match=r"ansible-playbook sandbox\.yml"):
        model_store.read_credentials(tmp_path / "absent.json")


def test_credentials_path_is_the_playbooks() -> None:
    defaults = REPO_ROOT / "playbooks" / "roles" / "s3_credentials" / "defaults" / "main.yml"
    playbook_path = yaml.safe_load(defaults.read_text())["s3_credentials_file"]
    assert playbook_path == "{{ sandbox_state_dir }}/" + Path(facts_mod.CREDENTIALS_RELPATH).name
    group_vars = yaml.safe_load(PLAYBOOK_VARS.read_text())
    assert group_vars["sandbox_state_dir"] == "{{ sandbox_home }}/" + str(
        Path(facts_mod.CREDENTIALS_RELPATH).parent
    )
    assert Path(facts_mod.FACTS_RELPATH).parent == Path(facts_mod.CREDENTIALS_RELPATH).parent
    assert group_vars["sandbox_bin_dir"] == "{{ sandbox_home }}/bin"
    assert group_vars["sandbox_home"].endswith("/" + "/".join(facts_mod.SANDBOX_HOME.parts[-3:]))


def test_context_answers_is_false_without_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kubeconfig with no `ml-sandbox` context: kubectl (if any) fails; no kubectl: also False.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("SANDBOX_HOME", str(tmp_path))
    assert mk.context_answers(timeout_s=2) is False


def test_without_a_cluster_every_command_fails_clearly(
    facts: facts_mod.ClusterFacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    services: dict[str, catalog.Service],
) -> None:  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    target = mk.MinikubeTarget(facts=facts, out=io.StringIO())
    for call in (
        lambda: target.up(list(services.values()), UpOptions(mediawiki=MediaWiki.parse("replay"))),
        target.status,
        lambda: target.down(None),
    ):
        with pytest.raises(RunError, match=r"does not answer.*ansible-playbook sandbox\.yml"):
            call()


def test_status_of_minikube_without_a_cluster_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from sandbox.cli import main

    monkeypatch.setenv("SANDBOX_HOME", str(tmp_path))
    assert main(["status", "--target", "minikube"]) == 1
    err = capsys.readouterr().err
    assert "no cluster sandbox is recorded" in err and "Traceback" not in err
    _recorded(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    assert main(["status", "--target", "minikube"]) == 1
    assert "does not answer" in capsys.readouterr().err


def test_deploy_render_keeps_the_committed_shape(services: dict[str, catalog.Service]) -> None:
    """What deploy applies is the committed manifest with content-hash tags and nothing else."""
    for svc in services.values():
        committed = manifests.load_documents(manifests.isvc_path(svc))[0]
        refs = {
            c: f"{manifests.image_repository(svc, c)}:0123456789abcdef"
            for c, _ in svc.component_items()
        }
        deployed = manifests.render_isvc(svc, image_refs=refs)
        for component in refs:
            container = deployed["spec"][component]["containers"][0]
            assert container["image"] == refs[component]
            container["image"] = committed["spec"][component]["containers"][0]["image"]
        assert deployed == committed
