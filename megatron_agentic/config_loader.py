"""The generic config loader: any dataclass tree from a YAML file and `key.sub=value` overrides.

Used by the training config (megatron_agentic/config.py) and the synthesis config
(data_synthesis/config.py), so both read recipes, overrides and errors the same way: unknown keys,
wrong types and `Literal` choice fields outside their values are refused at load, naming the
recipe file and line (or the override), the key and the allowed values. Imports nothing heavy
(no torch, no megatron-core): the synthesis environments use it too.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Literal

import yaml


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration schema, naming the key."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _not_one_of(key: str, value, choices) -> str:
    return f"{key}: {value!r} is not one of {', '.join(map(str, choices))}"


# --- loading: generic over any dataclass tree --------------------------------------------------


def read_recipe(recipe: str | Path | None) -> tuple[dict, dict[str, int]]:
    """A recipe YAML as a mapping, and the line of every dotted key (for error messages)."""
    if recipe is None:
        return {}, {}
    path = Path(recipe)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text) or {}
        lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections")
    return raw, lines


def _key_lines(node, prefix: str = "") -> dict[str, int]:
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            dotted = f"{prefix}{key.value}"
            lines[dotted] = key.start_mark.line + 1
            lines.update(_key_lines(value, dotted + "."))
    return lines


def apply_overrides(raw: dict, overrides) -> dict[str, str]:
    """Apply `key.sub=value` items (values parsed as YAML) to `raw`; returns key -> item."""
    sources = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key.sub=value")
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            parsed = value
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = parsed
        sources[key] = item
    return sources


T = typing.TypeVar("T")


def load_dataclass(
    base: T | type[T], recipe: str | Path | None = None, overrides=(), *, where: str = ""
) -> T:
    """Any dataclass tree (a class, or an instance giving the defaults) from a YAML recipe and
    `key.sub=value` overrides; nested dataclasses are sections. Errors name the recipe file and
    line, or the override, and the key."""
    raw, lines = read_recipe(recipe)
    sources = apply_overrides(raw, overrides)
    instance = base() if isinstance(base, type) else base
    try:
        return fill(instance, raw, where)
    except ConfigError as error:
        raise _located(error, recipe, lines, sources) from None


def _located(error: ConfigError, recipe, lines: dict, sources: dict) -> ConfigError:
    """Prefix the error with where its key was set: the override, or the recipe's line."""
    key = (error.key or "").split("[")[0]
    while key:
        items = [
            item for name, item in sources.items() if name == key or name.startswith(key + ".")
        ]
        if items:
            return ConfigError(f"override {items[-1]!r}: {error}", error.key)
        if key in lines:
            return ConfigError(f"{recipe}:{lines[key]}: {error}", error.key)
        key = key.rpartition(".")[0]
    return error


def fill(instance, values: dict, where: str = ""):
    """A copy of the dataclass `instance` with `values` type-checked and applied (recursively:
    a nested dataclass field takes a mapping)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: must be a mapping, got {values!r}", where)
    hints = typing.get_type_hints(type(instance))
    known = {f.name for f in dataclasses.fields(instance)}
    updates = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise ConfigError(f"unknown key {dotted}; known: {', '.join(sorted(known))}", dotted)
        updates[key] = _check(hints[key], value, dotted, getattr(instance, key))
    return dataclasses.replace(instance, **updates)


def _check(hint, value, key: str, current=None):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        errors = []
        for option in options:
            try:
                return _check(option, value, key, current)
            except ConfigError as error:
                errors.append(error)
        raise errors[0] if errors else ConfigError(f"{key}: bad value {value!r}", key)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(_not_one_of(key, value, choices), key)
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}", key)
        (item,) = typing.get_args(hint)
        return [_check(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is dict or origin is dict:  # a free-form mapping (validated by its owner)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}", key)
        return value
    if hint is typing.Any:
        return value
    if dataclasses.is_dataclass(hint):
        if value is None:  # an empty section (`data:` with nothing under it)
            return current if isinstance(current, hint) else hint()
        return fill(current if isinstance(current, hint) else hint(), value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}", key)
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}", key)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}", key)
        return value
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}", key)
        return str(value)
    raise ConfigError(f"{key}: unsupported type {hint}", key)


def to_dict(config) -> dict:
    """The resolved configuration as plain data (for printing and saving with checkpoints)."""
    return dataclasses.asdict(config)


def dump_yaml(config) -> str:
    """YAML text of a config dataclass."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
