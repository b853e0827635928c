"""`ml-sandbox dev --target minikube`, statically: each roll builds the images in the minikube
node's Docker daemon (the cluster has them without a registry), under `dev.local/` tags that
follow the code, applies the InferenceService with them server-side (a new Knative revision),
and waits for Ready.

No cluster here: the cluster's API is a double that answers kubectl and minikube command lines as
a cluster would (the InferenceService's generation moves when the applied spec changes), the
node's Docker daemon is a double that records what it is asked to build, and the Istio ingress
(the samples) is left out."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox import catalog, images
from sandbox.dev.loop import DevLoop
from sandbox.paths import REPO_ROOT
from sandbox.runtime import local, smoke
from sandbox.runtime.minikube import facts as facts_mod
from sandbox.runtime.minikube import kubectl, model_store
from sandbox.runtime.minikube import target as mk
from sandbox.runtime.options import UpOptions
from tests.unit.test_minikube import FIXTURES, _recorded

pytestmark = pytest.mark.unit


class Cluster:
    """The cluster's API, as kubectl and minikube answer: what was run, what was applied."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []
        self.applied: list[dict] = []
        self.generation = 0

    def answer(self, argv: list[str]) -> subprocess.CompletedProcess:
        self.argvs.append(argv)
        out = ""
        if "docker-env" in argv:
            out = (FIXTURES / "docker-env.txt").read_text()
        elif "apply" in argv:
            docs = yaml.safe_load_all(Path(argv[argv.index("-f") + 1]).read_text())
            for doc in docs:  # the InferenceService; the mesh's MediaWiki objects go by
                if doc.get("kind") != "InferenceService":
                    continue
                if not self.applied or doc["spec"] != self.applied[-1]["spec"]:
                    self.generation += 1
                self.applied.append(doc)
        elif "get" in argv and "inferenceservice" in argv and argv[-2:] == ["-o", "json"]:
            if not self.applied:
                return subprocess.CompletedProcess(argv, 1, "", "Error from server (NotFound)")
            isvc = copy.deepcopy(json.loads((FIXTURES / "isvc-ready.json").read_text()))
            isvc["metadata"]["generation"] = self.generation
            isvc["status"]["observedGeneration"] = self.generation
            out = json.dumps(isvc)
        return subprocess.CompletedProcess(argv, 0, out, "")


def test_each_save_builds_in_the_node_and_applies_a_new_revision(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBOX_HOME", str(tmp_path))
    monkeypatch.setenv("SANDBOX_RUN_DIR", str(tmp_path / "run"))
    _recorded(tmp_path)
    services = tmp_path / "services"
    shutil.copytree(REPO_ROOT / "services" / "langid", services / "langid")
    service = catalog.load_file(services / "langid" / "service.yaml")

    cluster = Cluster()

    class Kube(kubectl.Kube):
        def run(self, argv, *, check=True, env=None, timeout=600):
            return cluster.answer(list(argv))

    builds: list[tuple[str | None, dict[str, str] | None]] = []

    def build_images(svc, *, force=False, registry=None, env=None):
        # The node's daemon: a content tag that follows the code, as images.content_hash does.
        builds.append((registry, env))
        tag = local.code_hash(svc)
        return {n: f"{registry}/ml-sandbox/{svc.name}-{n}:{tag}" for n, _ in svc.component_items()}

    monkeypatch.setattr(mk, "Kube", Kube)
    monkeypatch.setattr(mk, "context_answers", lambda timeout_s=5.0: True)
    monkeypatch.setattr(images, "build_images", build_images)
    monkeypatch.setattr(images, "image_exists", lambda ref, env=None: True)
    monkeypatch.setattr(images, "docker", lambda *args, env=None: None)
    monkeypatch.setattr(mk, "image_exists", lambda ref, env=None: True)
    monkeypatch.setattr(mk, "docker", lambda *args, env=None: None)
    monkeypatch.setattr(model_store, "upload", lambda facts, svc, path, say: None)
    sent = []
    monkeypatch.setattr(mk.MinikubeTarget, "ingress_url", lambda self: "http://127.0.0.1:9")
    monkeypatch.setattr(smoke, "run_on", lambda target, svcs: sent.append(svcs) or 0)

    target = mk.MinikubeTarget(facts=facts_mod.load_facts(), out=sys.stdout)
    loop = DevLoop(service, target, UpOptions(timeout_s=10))
    assert loop.roll("start").ok
    model_py = services / "langid" / "predictor" / "model.py"
    model_py.write_text(model_py.read_text() + "\n# saved\n")
    second = loop.roll("code", [model_py])
    assert second.ok and second.failed_samples == 0
    assert len(sent) == 2  # the samples went through the ingress after each roll

    # Built in the node's daemon (`minikube docker-env`, asked once), tagged dev.local.
    docker_env = [a for a in cluster.argvs if "docker-env" in a]
    assert len(docker_env) == 1
    assert Path(docker_env[0][0]).name == "minikube" and docker_env[0][1:3] == ["-p", "ml-sandbox"]
    node_env = kubectl.docker_build_env((FIXTURES / "docker-env.txt").read_text())
    assert builds == [("dev.local", node_env)] * 2
    # Applied server-side each roll, with the new image: a new generation, a new revision.
    applies = [a for a in cluster.argvs if "apply" in a]
    assert all("--server-side" in a for a in applies)
    assert len(cluster.applied) == 2  # one InferenceService per roll (and the mesh's MediaWiki)
    images_applied = [doc["spec"]["predictor"]["containers"][0]["image"] for doc in cluster.applied]
    assert images_applied[0] != images_applied[1]
    assert all(i.startswith("dev.local/ml-sandbox/langid-predictor:") for i in images_applied)
    assert cluster.generation == 2
    assert not any("delete" in a for a in cluster.argvs)
