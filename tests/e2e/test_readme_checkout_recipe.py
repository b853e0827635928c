"""The README's "A new isvc in your checkout" recipe works as written (issue 15, defect 4).

The steps are read from README.md and run in order: its shell lines from the repository root, its
service.yaml written where its first line says. Only what points at the user's machine changes:
`~/src/inference-services` is the snapshot in ../shared/inference-services, `~/sandbox-services` a
folder of this test, `.venv/bin/ml-sandbox` this interpreter's `-m sandbox`, and the gateway gets a
free port and a run directory of its own.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox.paths import REPO_ROOT
from sandbox.runtime.processes import free_port

pytestmark = pytest.mark.e2e

CHECKOUT = REPO_ROOT.parent / "shared" / "inference-services"
SECTION = "### A new isvc in your checkout"


def recipe() -> list[tuple[str, str]]:
    """The section's code blocks, in order: (language, text)."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n### ", start + len(SECTION))
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end], re.S)


def test_the_recipe_has_its_steps() -> None:
    kinds = [k for k, _ in recipe()]
    assert kinds == ["sh", "yaml", "sh"], kinds
    doc = yaml.safe_load(recipe()[1][1])
    assert doc["components"]["predictor"]["resources"]  # required; the old recipe left it out


@pytest.mark.skipif(
    not (CHECKOUT / "src/models/langid/model.py").is_file(),
    reason=f"no inference-services snapshot at {CHECKOUT}",
)
def test_the_checkout_recipe_works_as_written(tmp_path: Path) -> None:
    services = tmp_path / "sandbox-services"
    port = free_port()

    def local(text: str) -> str:
        text = text.replace("~/src/inference-services", str(CHECKOUT))
        return text.replace("~/sandbox-services", str(services))

    env = {**os.environ, "SANDBOX_RUN_DIR": str(tmp_path / "run")}
    cli = f"{shlex.quote(sys.executable)} -m sandbox"
    try:
        for kind, block in recipe():
            if kind == "yaml":
                target = Path(local(block.splitlines()[0].removeprefix("# ")))
                target.write_text(local(block))
                continue
            for line in local(block).splitlines():
                line = line.split("  #", 1)[0].strip()
                if not line:
                    continue
                if line.startswith(".venv/bin/ml-sandbox "):
                    line = line.replace(".venv/bin/ml-sandbox", cli, 1) + f" --port {port}"
                proc = subprocess.run(
                    ["bash", "-c", line], cwd=REPO_ROOT, env=env, capture_output=True,
                    text=True, timeout=1500,
                )  # fmt: skip
                assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr[-3000:]}"
        # The deploy passed every sample, production's documented 500 included.
        assert "✓ langid/english: HTTP 200" in proc.stdout, proc.stdout
        assert "✓ langid/body-not-an-object: HTTP 500" in proc.stdout, proc.stdout
        served = yaml.safe_load((services / "langid" / "service.yaml").read_text())["source"]
        assert served == str(CHECKOUT)
    finally:
        subprocess.run([sys.executable, "-m", "sandbox", "down"], env=env, capture_output=True)
