"""The field checks that keep every Blubber field data, and the quoting that keeps it so.

blubber validates its config with go-playground tags (wikimedia/blubber@v0.21.1 and
@v1.5.1:config/validation.go, the same patterns at both tags); the sandbox applies the same
patterns and, where blubber leaves a field free and then writes it into a shell line
(`python.version`, apt target releases, whose pattern blubber does not anchor), a stricter one.
Nothing in a Blubber file may carry a control character: a newline would start a new Dockerfile
instruction. Custom builder commands are commands by design (blubber runs their first word as
shell text); every other field is quoted for the shell with `shlex.quote`.
"""

from __future__ import annotations

import posixpath
import re
import shlex

# wikimedia/blubber@v1.5.1:config/validation.go
VARIANT_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9\-.]+[a-zA-Z0-9]")
ENV_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]+")
_DEB_NAME = r"[a-z0-9][a-z0-9+.\-]+"
_DEB_VERSION = r"(?:[0-9]+:)?[0-9]+[a-zA-Z0-9.+\-~]*"
_DEB_RELEASE = r"[a-zA-Z](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?"
DEBIAN_PACKAGE = re.compile(rf"{_DEB_NAME}(?:={_DEB_VERSION}|/{_DEB_RELEASE})?")
# blubber's debianReleaseRegexp is unanchored (it accepts "x; rm -rf /"); anchored here.
DEBIAN_RELEASE = re.compile(_DEB_RELEASE)
# Not validated by blubber, which runs it as the first word of a shell line: a command name or an
# absolute path (python3, python3.11, /usr/bin/python3).
PYTHON_VERSION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+/\-]*")
_REF_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REF_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?")
_REF_TAG = re.compile(r"[\w][\w.-]{0,127}")
_REF_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
MAX_FIELD = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def control_character(value: str) -> str | None:
    """The first control character in `value`, as a readable escape, or None."""
    m = _CONTROL.search(value)
    return None if m is None else repr(m.group())[1:-1]


def is_variant_name(value: str) -> bool:
    return VARIANT_NAME.fullmatch(value) is not None


def is_env_name(value: str) -> bool:
    return ENV_NAME.fullmatch(value) is not None


def is_debian_package(value: str) -> bool:
    return DEBIAN_PACKAGE.fullmatch(value) is not None


def is_debian_release(value: str) -> bool:
    return DEBIAN_RELEASE.fullmatch(value) is not None


def is_python_version(value: str) -> bool:
    return len(value) <= 255 and PYTHON_VERSION.fullmatch(value) is not None


def is_username(value: str) -> bool:
    """go-playground's `hostname` (RFC 952) and not root: blubber's `username` alias. Written
    without nested quantifiers (`^[a-zA-Z]([a-zA-Z0-9\\-]+[\\.]?)*[a-zA-Z0-9]$` backtracks)."""
    return (
        2 <= len(value) <= 255
        and value != "root"
        and value[0].isascii()
        and value[0].isalpha()
        and re.fullmatch(r"[a-zA-Z0-9.\-]*", value) is not None
        and value[1] != "."
        and ".." not in value
        and value[-1].isascii()
        and value[-1].isalnum()
    )


def is_abs_path(value: str) -> bool:
    """blubber's `abspath`: absolute and not the root."""
    return posixpath.isabs(value) and posixpath.normpath(value) != "/"


def is_relative_local(value: str) -> bool:
    """blubber's `relativelocal`: a `from: local` source stays inside the build context."""
    return not (posixpath.isabs(value) or posixpath.normpath(value).startswith(".."))


def is_image_ref(value: str) -> bool:
    """distribution's reference grammar (blubber's `imageref`): [domain/]path[:tag][@digest]."""
    if not value or len(value) > 512:
        return False
    name, _, digest = value.partition("@")
    if digest and _REF_DIGEST.fullmatch(digest) is None:
        return False
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = name.rpartition(":")
        if _REF_TAG.fullmatch(tag) is None:
            return False
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if _REF_DOMAIN.fullmatch(parts[0]) is None:
            return False
        parts = parts[1:]
    return all(_REF_COMPONENT.fullmatch(p) for p in parts)


# -- quoting ----------------------------------------------------------------------------------
def sh(value: str) -> str:
    """One shell word that stays data: no expansion of $, backticks or globs."""
    return shlex.quote(value)


def sh_words(values: list[str]) -> str:
    return " ".join(sh(v) for v in values)


def go_quote(value: str) -> str:
    """blubber's own argument quoting (Go's strconv.Quote, build/instructions.go): a double-quoted
    shell word, which the shell still expands. Used only for custom builder commands' arguments,
    which are commands by design and expand in production too."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dockerfile_word(value: str, *, expand: bool = True) -> str:
    """A double-quoted word for ENV/LABEL/WORKDIR/ARG, where the Dockerfile parser itself reads
    `\\`, `"` and `$` (moby's shell lexer). With `expand`, `$VAR` expands as blubber's ENV does
    (production's `PATH: $PATH:/srv/app`); without, it is literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    if not expand:
        escaped = escaped.replace("$", "\\$")
    return f'"{escaped}"'
