"""`ml-sandbox dev` without servers: what is watched and what a change means, the third-party
imports a zygote loads ahead, kserve's import-time command line re-read in a forked child, and the
target each `--target` rolls on."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from sandbox import catalog
from sandbox.commands.dev import make_target
from sandbox.dev import zygotes
from sandbox.dev.watched import classify, watched
from sandbox.runtime import zygote
from sandbox.runtime.lifecycle import HostTarget

pytestmark = pytest.mark.unit


def test_langid_watch_set_and_what_each_change_means():
    service = catalog.get("langid")
    w = watched(service)
    root = service.dir
    assert w.roots() == [root]  # one folder holds everything langid uses
    assert w.kind(root / "predictor" / "model.py") == "code"
    assert w.kind(root / "predictor" / "languages.tsv") == "code"
    assert w.kind(root / "requirements.txt") == "requirements"
    assert w.kind(root / "service.yaml") == "service"
    assert w.kind(root / "training" / "train.py") == "model"
    assert w.kind(root / "tests" / "test_model.py") is None  # the isvc does not run its tests
    assert w.kind(root / "predictor" / "__pycache__" / "model.cpython-311.pyc") is None
    assert w.kind(root / "predictor" / ".model.py.swp") is None
    kind, paths = classify(w, {root / "predictor" / "model.py", root / "requirements.txt"})
    assert kind == "requirements" and len(paths) == 2
    assert classify(w, {root / "README"}) == (None, [])


def test_outlink_watches_both_components_and_their_requirements():
    service = catalog.get("outlink-topic-model")
    w = watched(service)
    assert {d.name for d in w.code_dirs} == {"predictor", "transformer"}
    for _, comp in service.component_items():
        for req in comp.requirements:
            assert w.kind((service.source_dir / req).resolve()) == "requirements"


def test_a_zygote_preloads_the_isvcs_third_party_imports_only():
    langid = zygotes.third_party_imports(catalog.get("langid"))
    assert "fasttext" in langid
    assert "kserve" not in langid  # always imported
    assert not {"os", "json", "logging", "model"} & set(langid)  # stdlib and its own code
    outlink = zygotes.third_party_imports(catalog.get("outlink-topic-model"))
    assert {"fasttext", "mwapi"} <= set(outlink) or {"fasttext", "aiohttp"} <= set(outlink)


KSERVE_LIKE = """
import argparse

parser = argparse.ArgumentParser(add_help=False)
parser.add_argument("--http_port", default=8080, type=int)
parser.add_argument("--grpc_port", default=8081, type=int)
parser.add_argument("--workers", default=1, type=int)
args, _ = parser.parse_known_args()


class ModelServer:
    def __init__(self, http_port: int = args.http_port, grpc_port: int = args.grpc_port,
                 workers: int = args.workers, name: str = "x"):
        self.http_port, self.grpc_port, self.workers = http_port, grpc_port, workers


def serve(*, http_port: int = args.http_port) -> int:
    return http_port
"""


def test_kserve_import_time_arguments_are_re_read_in_the_child(monkeypatch):
    # kserve.model_server's pattern (kserve 0.13.1, 0.14.1): module-level parse_known_args whose
    # values become default arguments. The zygote imported it with an empty command line.
    monkeypatch.setattr(sys, "argv", ["zygote.py"])
    module = types.ModuleType("kserve.model_server")
    exec(compile(KSERVE_LIKE, "model_server.py", "exec"), module.__dict__)
    module.ModelServer.__module__ = module.serve.__module__ = "kserve.model_server"
    monkeypatch.setitem(sys.modules, "kserve.model_server", module)
    assert module.ModelServer().http_port == 8080

    monkeypatch.setattr(sys, "argv", ["model.py", "--http_port", "4001", "--grpc_port", "4002"])
    zygote.rebind_kserve_args()
    server = module.ModelServer()
    assert (server.http_port, server.grpc_port, server.workers) == (4001, 4002, 1)
    assert module.serve() == 4001
    assert module.args.http_port == 4001
    assert module.ModelServer(http_port=5).http_port == 5  # an explicit argument still wins


def test_a_zygote_child_prints_the_isvcs_traceback_from_its_own_frames():
    assert zygote.launch.__file__ in zygote._OWN_FILES
    assert "<frozen runpy>" in zygote._OWN_FILES


def test_each_target_rolls_with_its_own_up():
    target, pool = make_target("local")
    assert isinstance(target, HostTarget)
    assert isinstance(target.backend, zygotes.ZygoteBackend) and pool is target.backend.zygotes
    target, pool = make_target("docker")
    assert isinstance(target, HostTarget) and pool is None
    assert type(target.backend).__name__ == "DockerBackend"


def test_dev_options_are_checked_like_up(capsys):
    from sandbox.cli import main

    assert main(["dev", "langid", "--port", "0"]) == 2  # bad usage, as for up
    assert "--port" in capsys.readouterr().err
    assert main(["dev", "no-such-isvc"]) == 2
    assert main(["dev", "langid", "--mediawiki", "nope"]) == 2  # bad usage, as for up
    assert "--mediawiki" in capsys.readouterr().err


def test_zygote_backend_falls_back_to_a_new_process_without_a_zygote(tmp_path, monkeypatch):
    started = []

    def spawn(self, cmd, log, env, cwd=None):
        started.append(cmd)
        return "spawned"

    monkeypatch.setattr(zygotes.local.LocalBackend, "spawn", spawn)
    backend = zygotes.ZygoteBackend(zygotes.Zygotes(tmp_path))
    cmd = [sys.executable, str(zygotes.local.LAUNCHER), "--", "model.py"]
    assert backend.spawn(cmd, tmp_path / "x.log", {}, Path(".")) == "spawned"
    assert started == [cmd] and backend.forked == 0


def test_dev_on_minikube_without_a_cluster_is_a_clear_error(capsys):
    from sandbox.cli import main

    assert main(["dev", "langid", "--target", "minikube"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ml-sandbox: error:") and "Traceback" not in err
