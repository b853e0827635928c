"""The minikube target's pure logic: command lines, facts, and reading recorded cluster documents.

No cluster runs here; the documents under fixtures/minikube/ have the shape KServe 0.17, Knative
and the Kubernetes API return (`kubectl get ... -o json`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from sandbox import catalog, images, manifests
from sandbox.runtime import minikube as mk
from sandbox.runtime.base import RuntimeError_, UpOptions

pytestmark = pytest.mark.cluster

FIXTURES = Path(__file__).parent / "fixtures" / "minikube"


def _doc(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def facts(tmp_path: Path) -> mk.ClusterFacts:
    return mk.load_facts(env={"SANDBOX_HOME": str(tmp_path)})


@pytest.fixture(scope="module")
def services() -> dict[str, catalog.Service]:
    return catalog.load_all()


def test_facts_come_from_the_playbook_vars(tmp_path: Path) -> None:
    v = yaml.safe_load(mk.PLAYBOOK_VARS.read_text())
    f = mk.load_facts(env={"SANDBOX_HOME": str(tmp_path)})
    assert (f.context, f.driver) == (v["minikube_profile"], v["minikube_driver"])
    assert v["minikube_driver"] == "docker"  # publishes the NodePort on the host
    assert (f.ingress_host, f.ingress_port) == (v["ingress_host_address"], v["ingress_host_port"])
    assert f.s3_bucket == v["model_store_bucket"]
    assert (f.s3_namespace, f.s3_service, f.s3_port) == (
        v["model_store_namespace"],
        v["model_store_service"],
        v["model_store_s3_port"],
    )
    assert f.bin_dir == tmp_path / "bin"
    assert f.s3_credentials_file.is_relative_to(tmp_path)


def test_env_overrides_the_playbook_vars(tmp_path: Path) -> None:
    env = {"SANDBOX_HOME": str(tmp_path), "SANDBOX_MINIKUBE_PROFILE": "other"}
    f = mk.load_facts(env={**env, "SANDBOX_INGRESS_PORT": "9999"})
    assert (f.context, f.ingress_port) == ("other", 9999)
    none = mk.load_facts(env={**env, "SANDBOX_MINIKUBE_DRIVER": "none"})
    v = yaml.safe_load(mk.PLAYBOOK_VARS.read_text())
    assert none.ingress_port == v["ingress_node_port"]  # the host is the node: no publishing
    with pytest.raises(RuntimeError_, match="port number"):
        mk.load_facts(env={**env, "SANDBOX_S3_PORT": "eighty"})


def test_missing_vars_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError_, match="cannot read the playbook settings"):
        mk.load_facts(tmp_path / "absent.yml", env={})


def test_pinned_tools_come_from_the_sandbox_bin_dir(facts: mk.ClusterFacts) -> None:
    facts.bin_dir.mkdir(parents=True)
    (facts.bin_dir / "kubectl").write_text("#!/bin/sh\n")
    argv = mk.kubectl_argv(facts, "get", "pods")
    assert argv == [str(facts.bin_dir / "kubectl"), "--context", facts.context, "get", "pods"]


def test_apply_is_server_side_with_our_field_manager(facts: mk.ClusterFacts) -> None:
    argv = mk.apply_argv(facts, Path("/tmp/x.yaml"))
    assert argv[1:3] == ["--context", facts.context]
    assert "--server-side" in argv and "--force-conflicts" in argv
    assert f"--field-manager={mk.FIELD_MANAGER}" in argv
    assert argv[-2:] == ["-f", "/tmp/x.yaml"]


def test_logs_and_port_forward_command_lines(
    facts: mk.ClusterFacts, services: dict[str, catalog.Service]
) -> None:
    svc = services["langid"]
    argv = mk.logs_argv(facts, svc.namespace, "pod-1", "storage-initializer", previous=True)
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
    follow = mk.follow_logs_argv(facts, svc, "predictor", follow=True)
    assert f"{mk.ISVC_LABEL}=langid,component=predictor" in follow and follow[-1] == "--follow"
    pf = mk.port_forward_argv(facts, 41234)
    assert f"service/{facts.s3_service}" in pf and f"41234:{facts.s3_port}" in pf
    assert "--address=127.0.0.1" in pf


def test_docker_env_output_parses_to_a_build_env() -> None:
    env = mk.docker_build_env((FIXTURES / "docker-env.txt").read_text())
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
            assert mk.stable_ref(built) == image
    replay = manifests.load_documents(manifests.REPLAY_MANIFEST)
    (deployment,) = [d for d in replay if d["kind"] == "Deployment"]
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert mk.stable_ref(images.replay_image_tag(registry=manifests.IMAGE_REGISTRY)) == image
    assert mk.stable_ref("localhost:5000/x") == "localhost:5000/x:sandbox"


def test_ready_isvc_is_ready_and_lists_its_revisions() -> None:
    doc = _doc("isvc-ready.json")
    assert mk.is_ready(doc)
    assert mk.generation(doc) == 2
    assert mk.latest_revisions(doc) == {
        "predictor": "outlink-topic-model-predictor-00002",
        "transformer": "outlink-topic-model-transformer-00002",
    }


def test_status_behind_the_applied_generation_is_not_ready() -> None:
    doc = _doc("isvc-ready.json")
    doc["metadata"]["generation"] = 3  # just applied a change; the controller has not caught up
    assert not mk.is_ready(doc)


def test_failed_isvc_is_not_ready_and_says_why() -> None:
    doc = _doc("isvc-storage-failed.json")
    assert not mk.is_ready(doc)
    by_type = {c.type: c for c in mk.conditions(doc)}
    assert by_type["PredictorReady"].reason == "RevisionFailed"
    assert "HeadObject" in by_type["PredictorReady"].line()
    assert not mk.is_ready({"metadata": {"generation": 1}})  # no status at all yet


def test_status_rows_per_component() -> None:
    listed = {"items": [_doc("isvc-ready.json"), _doc("isvc-storage-failed.json")]}
    rows = {(r.isvc, r.component): r for r in mk.component_statuses(listed)}
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
    targets = mk.log_targets(_doc("pods-langid.json"))
    names = [t.container for t in targets]
    assert names.index("storage-initializer") < names.index(mk.KSERVE_CONTAINER)
    by_name = {t.container: t for t in targets}
    assert by_name["storage-initializer"].previous  # it restarted: its last run says why
    assert not by_name[mk.KSERVE_CONTAINER].previous


def test_events_of_the_isvc_only_oldest_first() -> None:
    lines = mk.relevant_events(_doc("events-llm.json"), "langid")
    assert len(lines) == 3  # the isvc, its revision, its pod; not langidx-* nor the LimitRange
    assert "InferenceService/langid" in lines[0]
    assert "Revision/langid-predictor-00001" in lines[1]
    assert "storage-initializer" in lines[2]


def test_model_goes_to_its_production_path(services: dict[str, catalog.Service]) -> None:
    for svc in services.values():
        key = mk.object_key(svc, "wmf-ml-models")
        assert f"s3://wmf-ml-models/{key}" == svc.model.storage_uri + svc.model.file
        with pytest.raises(RuntimeError_, match="not in bucket"):
            mk.object_key(svc, "another-bucket")


def test_credentials_file_must_be_private_and_complete(tmp_path: Path) -> None:
    path = tmp_path / "s3-credentials.json"
    path.write_text(json.dumps({"access_key": "sandboxabc", "secret_key": "def"}))
    path.chmod(0o644)
    with pytest.raises(RuntimeError_, match="chmod 600"):
        mk.read_credentials(path)
    path.chmod(0o600)
    assert mk.read_credentials(path) == {"access_key": "sandboxabc", "secret_key": "def"}
    path.write_text(json.dumps({"access_key": "sandboxabc"}))
    with pytest.raises(RuntimeError_, match="secret_key"):
        mk.read_credentials(path)
    path.write_text("access_key=abc\n")
    with pytest.raises(RuntimeError_, match="not JSON"):
        mk.read_credentials(path)
    with pytest.raises(RuntimeError_, match=r"ansible-playbook sandbox\.yml"):
        mk.read_credentials(tmp_path / "absent.json")


def test_credentials_path_is_the_playbooks() -> None:
    defaults = mk.REPO_ROOT / "playbooks" / "roles" / "s3_credentials" / "defaults" / "main.yml"
    playbook_path = yaml.safe_load(defaults.read_text())["s3_credentials_file"]
    assert playbook_path == "{{ sandbox_state_dir }}/" + Path(mk.CREDENTIALS_RELPATH).name
    group_vars = yaml.safe_load(mk.PLAYBOOK_VARS.read_text())
    assert group_vars["sandbox_state_dir"] == "{{ sandbox_home }}/" + str(
        Path(mk.CREDENTIALS_RELPATH).parent
    )
    assert group_vars["sandbox_bin_dir"] == "{{ sandbox_home }}/bin"
    assert group_vars["sandbox_home"].endswith("/" + "/".join(mk.SANDBOX_HOME.parts[-3:]))


def test_an_unchanged_model_is_not_uploaded_again(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"fastText model bytes")
    sha, md5 = mk.file_digests(model)
    assert mk.same_object({"Metadata": {"sha256": sha}, "ETag": '"abc-2"'}, sha, md5)
    assert mk.same_object({"Metadata": {}, "ETag": f'"{md5}"'}, sha, md5)  # seeded by the playbook
    model.write_bytes(b"a retrained model")
    sha2, md52 = mk.file_digests(model)
    assert not mk.same_object({"Metadata": {"sha256": sha}, "ETag": f'"{md5}"'}, sha2, md52)


def test_context_answers_is_false_without_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A kubeconfig with no `ml-sandbox` context: kubectl (if any) fails; no kubectl: also False.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("SANDBOX_HOME", str(tmp_path))
    assert mk.context_answers(timeout_s=2) is False


def test_without_a_cluster_up_fails_clearly_and_down_status_are_no_ops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, services: dict[str, catalog.Service]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("SANDBOX_HOME", str(tmp_path))
    out = io.StringIO()
    target = mk.MinikubeTarget(out=out)
    with pytest.raises(RuntimeError_, match=r"does not answer.*ansible-playbook sandbox\.yml"):
        target.up(list(services.values()), UpOptions(mediawiki="replay"))
    assert target.status() == []
    target.down(None)
    assert "nothing to remove" in out.getvalue()


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
