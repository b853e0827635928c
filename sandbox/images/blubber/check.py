"""`ml-sandbox blubber check <checkout>`: every Blubber file and variant of a checkout, translated
as the docker target would build it: ok (with the blubber version, the python layout and the base
stand-in), or unsupported with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.images import blubber
from sandbox.images.blubber import versions


@dataclass(frozen=True)
class Result:
    file: str  # relative to the checkout
    variant: str  # "" when the file itself cannot be read
    blubber_version: str
    ok: bool
    detail: str


def blubber_files(checkout: Path) -> list[Path]:
    """The Blubber files under `.pipeline/`: every YAML file but PipelineLib's config.yaml."""
    root = Path(checkout) / ".pipeline"
    return sorted(p for p in root.rglob("*.yaml") if p.name != "config.yaml" and p.is_file())


def check_file(path: Path, checkout: Path, base_image: str) -> list[Result]:
    rel = path.relative_to(checkout).as_posix()
    try:
        tag = versions.rules_for(path).tag
        names = blubber.variants(path)
    except (blubber.BlubberError, versions.BlubberVersionError) as e:
        return [Result(rel, "", "?", False, _reason(e, path))]
    out = []
    for name in names:
        try:
            t = blubber.translate(path, name, base_image=base_image)
        except blubber.BlubberError as e:
            out.append(Result(rel, name, tag, False, _reason(e, path)))
            continue
        kinds = [s.kind for s in t.stand_ins]
        detail = f"{t.layout}; base: {kinds[-1]}"
        if t.fetches:
            detail += "; needs the network or SANDBOX_GIT_MIRRORS for " + ", ".join(
                sorted({url for _, url in t.fetches})
            )
        out.append(Result(rel, name, tag, True, detail))
    return out


def _reason(error: Exception, path: Path) -> str:
    return str(error).removeprefix(f"{path}: ")


def check(checkout: Path, base_image: str) -> list[Result]:
    checkout = Path(checkout)
    return [r for p in blubber_files(checkout) for r in check_file(p, checkout, base_image)]
