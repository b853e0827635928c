"""The filters that adapt upstream release manifests before they are applied
(playbooks/filter_plugins/stack_manifests.py), on documents shaped like the real releases."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType

import pytest

from .conftest import PLAYBOOKS

pytestmark = pytest.mark.cluster


def _plugin() -> ModuleType:
    path = PLAYBOOKS / "filter_plugins" / "stack_manifests.py"
    spec = importlib.util.spec_from_file_location("stack_manifests", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


F = _plugin()


def deployment(ns: str, name: str, *containers: str, image: str = "gcr.io/x/y:1") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": c,
                            "image": image,
                            "env": [{"name": "KEEP", "value": "1"}],
                            "resources": {"requests": {"cpu": "300m"}},
                        }
                        for c in containers
                    ]
                }
            }
        },
    }


RES = {"knative-serving/activator": {"activator": {"requests": {"cpu": "100m", "memory": "100Mi"}}}}


def test_customize_sets_resources_env_and_images() -> None:
    docs = [
        None,
        deployment("knative-serving", "activator", "activator"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    ]
    out = F.stack_customize(
        docs,
        RES,
        {"knative-serving": {"KUBERNETES_MIN_VERSION": "1.31.4"}},
        [{"from": r"^gcr\.io/x/(\w+):.*$", "to": r"registry.example/\1:2"}],
    )
    assert len(out) == 2
    c = out[0]["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == RES["knative-serving/activator"]["activator"]
    assert c["env"] == [
        {"name": "KEEP", "value": "1"},
        {"name": "KUBERNETES_MIN_VERSION", "value": "1.31.4"},
    ]
    assert c["image"] == "registry.example/y:2"
    assert docs[1]["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "300m"}
    }, "the input must not be modified"
    again = F.stack_customize(out, RES, {"knative-serving": {"KUBERNETES_MIN_VERSION": "1.31.4"}})
    assert again == out, "customizing twice changes nothing (idempotent apply)"


def test_uncovered_lists_workload_containers_missing_from_the_table() -> None:
    docs = [
        deployment("knative-serving", "activator", "activator"),
        deployment("kserve", "llmisvc-controller-manager", "manager"),
    ]
    assert F.stack_uncovered(docs, RES) == ["kserve/llmisvc-controller-manager/manager"]


def test_merge_configmaps_deep_merges_json_and_replaces_plain_keys() -> None:
    release = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": "kserve"},
        "data": {
            "ingress": json.dumps({"ingressDomain": "example.com", "keep": 1}),
            "explainers": "{}",
            "_example": "docs",
        },
    }
    overlay = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "inferenceservice-config", "namespace": "kserve"},
        "data": {"ingress": json.dumps({"ingressDomain": "wikimedia.org"}), "_example": "mine"},
    }
    extra = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "new", "namespace": "kserve"},
        "data": {"a": "b"},
    }
    (merged, added) = F.stack_merge_configmaps([release], [overlay, extra])
    assert json.loads(merged["data"]["ingress"]) == {"ingressDomain": "wikimedia.org", "keep": 1}
    assert merged["data"]["explainers"] == "{}" and merged["data"]["_example"] == "mine"
    assert added == extra
    assert json.loads(release["data"]["ingress"])["ingressDomain"] == "example.com"


def test_split_and_list_what_to_wait_for() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "inferenceservices.serving.kserve.io"},
    }
    dep = deployment("kserve", "kserve-controller-manager", "manager")
    split = F.stack_split_crds([crd, None, dep])
    assert split == {"crds": [crd], "rest": [dep]}
    assert F.stack_crd_names(split["crds"]) == ["inferenceservices.serving.kserve.io"]
    assert F.stack_workloads(split["rest"]) == [
        {"kind": "Deployment", "namespace": "kserve", "name": "kserve-controller-manager"}
    ]


def test_select_drops_documents_by_kind_namespace_name() -> None:
    docs = [
        deployment("kserve", "kserve-controller-manager", "manager"),
        deployment("kserve", "llmisvc-controller-manager", "manager"),
        {
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "localmodelnodes.serving.kserve.io"},
        },
        None,
    ]
    kept = F.stack_select(docs, ["/[^/]*(llmisvc|localmodel)[^/]*$"])
    assert [d["metadata"]["name"] for d in kept] == ["kserve-controller-manager"]
    assert F.stack_select(docs[:2], []) == docs[:2]


def test_namespaces_come_first_with_labels_and_unknown_ones_are_listed() -> None:
    labels = {"kserve": {"istio-injection": "disabled"}, "cert-manager": {"a": "b"}}
    declared = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "cert-manager", "labels": {"x": "y"}},
    }
    docs = [deployment("kserve", "c", "m"), declared, deployment("cert-manager", "d", "m")]
    assert [d["kind"] for d in F.stack_namespaces(docs, labels)].count("Namespace") == 1
    out = F.stack_namespaces(docs, labels, ["kserve"])
    assert [(d["kind"], d["metadata"]["name"]) for d in out[:2]] == [
        ("Namespace", "cert-manager"),
        ("Namespace", "kserve"),
    ]
    assert out[0]["metadata"]["labels"] == {"x": "y", "a": "b"}
    assert out[1]["metadata"]["labels"] == {"istio-injection": "disabled"}
    assert [d["kind"] for d in out].count("Namespace") == 2
    assert declared["metadata"]["labels"] == {"x": "y"}, "the input is not modified"
    assert F.stack_unknown_namespaces(docs, []) == ["kserve"]
    assert F.stack_unknown_namespaces(out, []) == []
    assert F.stack_unknown_namespaces([deployment("kube-system", "r", "m")], ["kube-system"]) == []


def test_server_side_clean_folds_string_data_and_drops_server_fields() -> None:
    secret = {
        "kind": "Secret",
        "metadata": {"name": "s", "creationTimestamp": None},
        "stringData": {"k": "välue"},
        "data": {"old": "b2xk"},
        "status": {},
    }
    (out,) = F.stack_server_side_clean([secret])
    assert out == {
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"old": "b2xk", "k": "dsOkbHVl"},
    }
    assert "stringData" in secret, "the input is not modified"


def test_unset_removes_reconciled_fields_of_matching_documents_only() -> None:
    hook = {
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "webhook.serving.knative.dev"},
        "webhooks": [{"name": "a", "rules": [1]}, {"name": "b", "rules": [2]}],
    }
    other = {**hook, "metadata": {"name": "other"}}
    out = F.stack_unset(
        [hook, other],
        [{"match": r"//webhook\.serving\.knative\.dev$", "field": "webhooks[].rules"}],
    )
    assert out[0]["webhooks"] == [{"name": "a"}, {"name": "b"}]
    assert out[1]["webhooks"] == hook["webhooks"]
