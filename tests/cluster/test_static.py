"""Lint and syntax of the cluster tier: ansible-lint (production profile), syntax-check,
yamllint, and the Vagrantfile when vagrant is installed."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from .conftest import REPO, VENV_BIN, run

pytestmark = pytest.mark.cluster

PLAYBOOKS = ["sandbox.yml", "playbooks/teardown.yml", "playbooks/render.yml"]


def test_ansible_lint_production_profile_passes() -> None:
    proc = run(
        [str(VENV_BIN / "ansible-lint"), "--offline", "--profile", "production", "--nocolor"]
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax_check(playbook: str) -> None:
    proc = run([str(VENV_BIN / "ansible-playbook"), "--syntax-check", playbook])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_yamllint_repo_wide() -> None:
    # Errors fail; long lines are warnings (URLs, one-line JSON), reported but accepted.
    proc = run([str(VENV_BIN / "yamllint"), "--format", "parsable", "."])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_role_has_defaults_argument_specs_and_a_tag() -> None:
    stack = (REPO / "playbooks" / "stack.yml").read_text()
    roles = sorted(p.name for p in (REPO / "playbooks" / "roles").iterdir() if p.is_dir())
    for role in roles:
        assert (REPO / "playbooks" / "roles" / role / "meta" / "argument_specs.yml").is_file(), role
        assert (REPO / "playbooks" / "roles" / role / "defaults" / "main.yml").is_file(), role
    for layer in [
        "preflight",
        "tools",
        "cluster",
        "cert_manager",
        "istio",
        "knative",
        "kserve",
        "model_store",
        "namespaces",
        "verify",
    ]:
        assert f"role: {layer}\n" in stack, f"{layer} is not a layer of playbooks/stack.yml"


def test_vagrantfile_validates() -> None:
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        pytest.skip("vagrant is not installed; `vagrant validate --ignore-provider` not run")
    proc = run([vagrant, "validate", "--ignore-provider"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_vagrant_vm_has_the_disk_preflight_requires() -> None:
    """Defect 7: debian/bookworm64's disk (about 20 GB) is below preflight's minimum; the VM gets
    a data disk for Docker at least that big, and preflight checks that path."""
    text = (REPO / "Vagrantfile").read_text()
    preflight = yaml.safe_load((REPO / "playbooks/roles/preflight/defaults/main.yml").read_text())
    size = int(re.search(r'ML_SANDBOX_VM_DISK_GB", "(\d+)"', text).group(1))
    assert size >= preflight["preflight_min_disk_gb"]
    assert 'config.vm.disk :disk, name: "ml-sandbox-docker", size: "#{disk_gb}GB"' in text
    assert 'lv.storage :file, size: "#{disk_gb}G"' in text
    assert 'docker_dir = "/var/lib/docker"' in text and "preflight_disk_path: docker_dir" in text
    # The disk is mounted before Docker is installed (provisioners run in file order).
    assert text.index('provision "disk"') < text.index('provision "deps"')


def test_every_document_the_playbooks_cite_exists() -> None:
    """Defect 7: preflight cited docs/cluster.md, which does not exist."""
    cited = set()
    for f in [*(REPO / "playbooks").rglob("*.yml"), REPO / "sandbox.yml", REPO / "Vagrantfile"]:
        cited |= {
            (f, m)
            for m in re.findall(r"\b((?:docs|scripts)/[\w./-]+\.(?:md|sh|py))", f.read_text())
        }
    assert cited, "the playbooks cite no document at all?"
    missing = [f"{f.relative_to(REPO)} cites {m}" for f, m in cited if not (REPO / m).exists()]
    assert missing == []


def test_each_layer_can_be_rerun_alone_by_its_tag() -> None:
    proc = run([str(VENV_BIN / "ansible-playbook"), "sandbox.yml", "--list-tags"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tags = proc.stdout.split("TASK TAGS:")[-1]
    for tag in [
        "preflight",
        "tools",
        "cluster",
        "cert-manager",
        "istio",
        "knative",
        "kserve",
        "model-store",
        "namespaces",
        "verify",
    ]:
        assert re.search(rf"[\[ ,]{re.escape(tag)}[,\]]", tags), f"no tag {tag}: {tags}"
    knative = run(
        [str(VENV_BIN / "ansible-playbook"), "sandbox.yml", "--list-tasks", "--tags", "knative"]
    )
    assert knative.returncode == 0, knative.stdout + knative.stderr
    assert "Knative | install Serving and net-istio" in knative.stdout
    assert "KServe |" not in knative.stdout and "Istio |" not in knative.stdout


def test_the_cluster_docs_name_every_pinned_version() -> None:
    import yaml

    versions = yaml.safe_load((REPO / "playbooks/group_vars/all/versions.yml").read_text())
    docs = (REPO / "README.md").read_text()
    stale = {k: v for k, v in versions.items() if k.endswith("_version") and str(v) not in docs}
    assert not stale, f"README.md (Cluster sandbox) does not mention {stale}; update its table"


def test_every_role_declares_its_inputs_in_defaults_and_argument_specs() -> None:
    """geerlingguy's style: every default of a role is a documented argument_specs option, and
    the model_store role's inputs are its defaults, not group_vars (issue 14)."""
    import yaml

    roles_dir = REPO / "playbooks" / "roles"
    shared: dict = {}
    for f in (REPO / "playbooks" / "group_vars" / "all").glob("*.yml"):
        shared.update(yaml.safe_load(f.read_text()))
    for role_dir in sorted(p for p in roles_dir.iterdir() if p.is_dir()):
        role = role_dir.name
        text = (role_dir / "defaults" / "main.yml").read_text().replace("!unsafe ", "")
        defaults = yaml.safe_load(text) or {}
        specs = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())
        options = {
            k: v
            for entry in specs["argument_specs"].values()
            for k, v in (entry.get("options") or {}).items()
        }
        assert set(defaults) <= set(options), f"{role}: undocumented {set(defaults) - set(options)}"
        for key, spec in options.items():
            assert spec.get("description"), f"{role}: {key} has no description"
    # The model store's inputs are its own (they used to live in group_vars); settings several
    # layers share (cluster_provider, cluster_memory_mb, ...) stay there.
    store = yaml.safe_load((roles_dir / "model_store" / "defaults" / "main.yml").read_text())
    for key in ("namespace", "bucket", "region", "service", "s3_port"):
        assert f"model_store_{key}" in store
    assert sorted(k for k in shared if k.startswith("model_store_")) == []
