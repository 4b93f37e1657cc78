"""A sketch's own platformio.ini, read the way PlatformIO reads it (pure Python: the no-op path).

Only what doit needs to name and check environments: every `[env:NAME]` with `board`, `platform`
and `framework`, after the common `[env]` section and `extends = ...` are applied. Values with
`${...}` interpolation are kept as written (PlatformIO resolves them when it builds).
"""
from __future__ import annotations

import configparser
import glob
import os
from pathlib import Path

from .errors import TinyMLError


def _parser() -> configparser.ConfigParser:
    p = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"), strict=False,
                                  default_section="__none__")
    p.optionxform = str  # keep option names as written
    return p


def read_envs(ini: Path) -> dict[str, dict[str, str]]:
    """{env name: {option: value}} of a platformio.ini (with [env] and `extends` applied)."""
    ini = Path(ini)
    p = _parser()
    try:
        p.read_string(ini.read_text(encoding="utf-8", errors="replace"), source=str(ini))
        extra = p.get("platformio", "extra_configs", fallback="")
        for pattern in (x.strip() for x in extra.splitlines() if x.strip()):
            for f in sorted(glob.glob(os.path.join(ini.parent, pattern))):
                p.read_string(Path(f).read_text(encoding="utf-8", errors="replace"), source=f)
    except (OSError, configparser.Error) as e:
        raise TinyMLError(f"{ini} cannot be read as a PlatformIO project file: {str(e).splitlines()[0]}") from None
    common = dict(p.items("env")) if p.has_section("env") else {}

    def section(name: str, seen: tuple = ()) -> dict[str, str]:
        if name in seen or not p.has_section(name):
            return {}
        own = dict(p.items(name))
        base: dict[str, str] = {}
        for parent in (x.strip() for x in own.get("extends", "").replace(",", "\n").splitlines() if x.strip()):
            base.update(section(parent, seen + (name,)))
        return {**base, **own}

    envs = {}
    for s in p.sections():
        if s.startswith("env:"):
            envs[s[4:].strip()] = {**common, **section(s)}
    return envs
