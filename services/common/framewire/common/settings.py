"""Configuration: one frozen dataclass per service, mapped onto flags and environment.

Every default and limit of a service lives in its dataclass, declared with
:func:`option`. Command-line flags (``--max-batch-size``) and environment
variables (``FRAMEWIRE_MAX_BATCH_SIZE``) are derived from the field names in
this one place, so they can never drift apart. Precedence: flag, then
environment variable, then the dataclass default. Validation lives in each
dataclass's ``__post_init__`` and raises :class:`ValueError` with a message a
person can act on; the command line turns that into a usage error.

Dataclass fields whose type is itself a settings dataclass are flattened: their
options appear on the same command line without a prefix, so field names must
be unique across the nested classes. Where two nested classes hold the same
idea under different names (``framewire serve`` has ingest's
``max_batch_size`` and the engine's ``max_batch``), the outer class lists the
nested names it sets itself in ``DERIVED``; those get no flag and no
environment variable, so each idea has one name on a command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

ENV_PREFIX = "FRAMEWIRE_"

T = TypeVar("T")

_DURATION = re.compile(r"^\s*(?P<value>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Parses ``"250ms"``, ``"2s"``, ``"1.5"`` (seconds), ``"5m"`` or ``"1h"`` into seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: use a number of seconds or 250ms, 2s, 5m, 1h"
        )
    return float(match["value"]) * _UNIT_SECONDS[match["unit"]]


def parse_wxh(text: str) -> tuple[int, int]:
    """Parses ``"640x480"`` into ``(640, 480)``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a size: use WIDTHxHEIGHT, for example 640x480")
    width, height = int(match[1]), int(match[2])
    if width <= 0 or height <= 0:
        raise ValueError(f"{text!r}: width and height must be positive")
    return width, height


def option(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] | None = None,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    flag: str | None = None,
    env: bool = True,
) -> Any:
    """Declares one setting: its default, its help text and how to read it from text.

    ``parse`` turns the text of a flag or environment variable into the value
    (by default chosen from the field's type). ``flag`` overrides the derived
    flag name; ``env=False`` keeps a setting off the environment.
    """
    return dataclasses.field(
        default=default,
        metadata={
            "help": help,
            "parse": parse,
            "choices": choices,
            "metavar": metavar,
            "flag": flag,
            "env": env,
        },
    )


def flag_name(field: dataclasses.Field[Any]) -> str:
    """The command-line flag of a setting, e.g. ``--max-batch-size``."""
    return str(field.metadata.get("flag") or "--" + field.name.replace("_", "-"))


def env_name(field: dataclasses.Field[Any]) -> str:
    """The environment variable of a setting, e.g. ``FRAMEWIRE_MAX_BATCH_SIZE``."""
    return ENV_PREFIX + field.name.upper()


def _text_parser(field: dataclasses.Field[Any], kind: Any) -> Callable[[str], Any]:
    """How a setting is read from text: its own ``parse``, or one chosen from its type.

    For an optional setting (``X | None``) an empty text or ``none`` means None,
    whichever parser reads the rest.
    """
    parse: Callable[[str], Any] | None = field.metadata.get("parse")
    if parse is None:
        return _parser_for(kind)
    if type(None) in typing.get_args(kind):
        return _none_or(parse)
    return parse


def _none_or(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def optional(text: str) -> Any:
        return None if text.strip().lower() in ("", "none") else parse(text)

    return optional


def _parser_for(kind: Any) -> Callable[[str], Any]:
    """Returns the text parser for a field type."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        members = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _none_or(_parser_for(members[0]))
    if origin is tuple:
        element = _parser_for(typing.get_args(kind)[0])

        def sequence(text: str) -> tuple[Any, ...]:
            return tuple(element(part.strip()) for part in text.split(",") if part.strip())

        return sequence
    if kind is bool:
        return _parse_bool
    if kind in (int, float, str):
        return typing.cast(Callable[[str], Any], kind)
    if kind is Path:
        return Path
    raise TypeError(f"no text parser for settings of type {kind!r}")


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean: use true or false")


def _is_settings(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _fields(
    cls: type[Any], derived: frozenset[str] = frozenset()
) -> list[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    return [
        (field, hints[field.name]) for field in dataclasses.fields(cls) if field.name not in derived
    ]


def _derived(cls: type[Any], inherited: frozenset[str]) -> frozenset[str]:
    """Setting names that ``cls`` (or a class around it) derives instead of reading."""
    return inherited | frozenset(getattr(cls, "DERIVED", ()))


def add_arguments(
    parser: argparse.ArgumentParser, cls: type[Any], derived: frozenset[str] = frozenset()
) -> None:
    """Adds one flag per setting of ``cls`` (and of nested settings) to ``parser``."""
    derived = _derived(cls, derived)
    group = parser.add_argument_group(_group_title(cls))
    for field, kind in _fields(cls, derived):
        if _is_settings(kind):
            add_arguments(parser, kind, derived)
            continue
        meta = field.metadata
        if "help" not in meta:
            continue
        default = field.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{meta['help']} (default: {shown}; env {env_name(field)})"
        if not meta.get("env", True):
            help_text = f"{meta['help']} (default: {shown})"
        if kind is bool:
            group.add_argument(
                flag_name(field),
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        group.add_argument(
            flag_name(field),
            dest=field.name,
            type=_checked(_text_parser(field, kind), field.name),
            choices=meta.get("choices"),
            metavar=meta.get("metavar"),
            default=argparse.SUPPRESS,
            help=help_text,
        )


def _checked(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wraps a parser so argparse reports its ValueError message instead of a generic one."""

    def run(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, TypeError) as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    run.__name__ = name
    return run


def _group_title(cls: type[Any]) -> str:
    """``StreamOptions`` -> ``stream settings``, ``IngestConfig`` -> ``ingest settings``."""
    name = cls.__name__.removesuffix("Config").removesuffix("Options")
    words = re.findall(r"[A-Z][a-z0-9]*|[a-z0-9]+", name)
    return " ".join(word.lower() for word in words) + " settings"


def from_namespace(
    cls: type[T],
    namespace: argparse.Namespace,
    environ: Mapping[str, str] | None = None,
    derived: frozenset[str] = frozenset(),
) -> T:
    """Builds ``cls`` from parsed flags, falling back to the environment, then to defaults.

    Raises :class:`ValueError` naming the variable when an environment value
    cannot be parsed, and whatever the dataclass's own validation raises.
    """
    environ = os.environ if environ is None else environ
    derived = _derived(cls, derived)
    values: dict[str, Any] = {}
    for field, kind in _fields(cls, derived):
        if _is_settings(kind):
            values[field.name] = from_namespace(kind, namespace, environ, derived)
        elif hasattr(namespace, field.name):
            values[field.name] = getattr(namespace, field.name)
        elif field.metadata.get("env", True) and env_name(field) in environ:
            parse = _text_parser(field, kind)
            text = environ[env_name(field)]
            try:
                values[field.name] = parse(text)
            except (ValueError, TypeError) as error:
                raise ValueError(f"{env_name(field)}={text!r}: {error}") from error
    return cls(**values)


def describe(settings: Any) -> dict[str, Any]:
    """Flattens settings into ``{name: value}`` for logging at start-up."""
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            flat.update(describe(value))
        else:
            flat[field.name] = str(value) if isinstance(value, Path) else value
    return flat
