"""User settings: the Hub repo to contribute to and whether to show the after-run prompts.

Precedence for every setting: command-line option > environment variable > user config file >
default. The config file is YAML at $VDATA_CONFIG, else ~/.config/vdata-hub/config.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from vdata_hub import DEFAULT_REPO
from vdata_hub.errors import VdataError

KNOWN_SETTINGS = {"repo": str, "donate_prompt": bool}


def config_path() -> Path:
    if os.environ.get("VDATA_CONFIG"):
        return Path(os.environ["VDATA_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vdata-hub" / "config.yaml"


def load_user_config() -> dict:
    """The user's settings, validated; an empty dict when there is no file."""
    path = config_path()
    if not path.exists():
        return {}
    try:
        settings = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise VdataError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix or delete the file") from None
    if not isinstance(settings, dict):
        raise VdataError(f"{path}: expected a mapping of settings")
    for key, value in settings.items():
        if key not in KNOWN_SETTINGS:
            raise VdataError(f"{path}: unknown setting {key!r} (known: {', '.join(KNOWN_SETTINGS)})")
        if not isinstance(value, KNOWN_SETTINGS[key]):
            raise VdataError(f"{path}: setting {key!r} must be a {KNOWN_SETTINGS[key].__name__}")
    return settings


def save_user_setting(key: str, value) -> Path:
    """Write one setting into the user config file (used to turn the donate prompt off for good)."""
    settings = load_user_config()
    settings[key] = value
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(settings, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path


def resolve_repo(repo: str | None = None) -> str:
    """The Hub dataset repo: --repo, else $VDATA_REPO, else the config file, else org/vdata."""
    return repo or os.environ.get("VDATA_REPO") or load_user_config().get("repo") or DEFAULT_REPO


def donate_prompt_enabled() -> bool:
    return load_user_config().get("donate_prompt", True)
