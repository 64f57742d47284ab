"""How a config mistake becomes one :class:`ConfigError` line, with no secret in it.

A top-level name of the file that no section claims is named with the known sections
(:func:`unknown_sections`). A settings ``ValidationError`` is turned into one line
(:func:`validation_error`) in two layers, so that no validator (ours, an app's, or
pydantic's own) can leak a secret:

1. **What is echoed.** The input pydantic attaches to an error is quoted (``got ...``) only
   for a field that is not secret. Never for a secret field, and never for a section-level
   (model) validator, whose input is the whole section with its secrets. A table or list
   quoted for a non-secret field has its secret keys masked.
2. **What is left.** Every secret value this load was given (argument, environment variable,
   config file), in every spelling that could appear (as written, percent-encoded or decoded,
   as a repr, the part after ``:`` of a bot token, the password inside a URL), is replaced by
   ``***`` in the finished message: a validator that quotes a secret in its own text leaks
   nothing either.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from pydantic import SecretBytes, SecretStr, ValidationError

from db_manager.errors import ConfigError

if TYPE_CHECKING:
    from db_manager.config import ConfigFile, SectionSettings

__all__ = ["secret_values", "settings_error", "unknown_sections", "validation_error"]

MASK = "***"
# Shorter fragments are not scrubbed: they would garble every message (a 3-character
# password is a substring of ordinary words) and are no secret worth the name anyway.
MIN_SCRUBBED = 4


def validation_error(
    cls: type[SectionSettings],
    exc: ValidationError,
    path: Path | None,
    section: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> ConfigError:
    """One line per error: where (argument, env var, file and key), what is wrong."""
    lines = []
    first_key: str | None = None
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc) or "(section)"
        top = loc[0] if loc else ""
        env_name = f"{cls.section.upper()}__{top.upper()}"
        if top in overrides:
            where = f"argument {top}"
        elif top and any(name.upper() == env_name for name in os.environ):
            where = f"environment variable {env_name}"
        elif path is not None and (top in section or not top):
            where = f"{path}: [{cls.section}] {key}"
        else:
            where = f"[{cls.section}] {key}"
        reason = error["msg"]
        secret = not loc or any(part.lower() in cls.secret_keys for part in loc)
        if error["type"] == "extra_forbidden":
            reason = "unknown key (check the spelling against config.toml.example)"
        elif not secret and "input" in error and error["type"] != "missing":
            reason = f"{reason} (got {_masked(error['input'], cls.secret_keys)!r})"
        lines.append(f"{where}: {reason}")
        if first_key is None:
            first_key = key
    message = scrub("; ".join(lines), secret_values(cls, section, overrides))
    return ConfigError(message, source=str(path) if path else None, key=first_key)


def settings_error(
    cls: type[SectionSettings],
    exc: Exception,
    path: Path | None,
    section: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> ConfigError:
    """pydantic-settings' own error (an environment value that is not the JSON a list or
    table field needs) as one line."""
    message = (
        f"[{cls.section}]: {exc} (a list or table in an environment variable is written as JSON)"
    )
    return ConfigError(
        scrub(message, secret_values(cls, section, overrides)),
        source=str(path) if path else None,
    )


def unknown_sections(config: ConfigFile, known: set[str]) -> ConfigError | None:
    """The error for top-level names of the file that no section claims, if there are any."""
    unknown = [name for name in config.data if name not in known]
    if not unknown:
        return None
    tables = [f"[{name}]" for name in unknown if isinstance(config.data[name], dict)]
    keys = [name for name in unknown if not isinstance(config.data[name], dict)]
    problems = []
    if tables:
        problems.append(f"unknown section{'s' if len(tables) > 1 else ''} {', '.join(tables)}")
    if keys:
        # A value above the first [section]: every setting belongs in a section.
        problems.append(f"unknown top-level key{'s' if len(keys) > 1 else ''} {', '.join(keys)}")
    listed = ", ".join(f"[{name}]" for name in sorted(known))
    return ConfigError(
        f"{config.path}: {'; '.join(problems)}; known sections: {listed}",
        source=str(config.path),
        key=unknown[0],
    )


def secret_values(
    cls: type[SectionSettings], section: Mapping[str, Any], overrides: Mapping[str, Any]
) -> set[str]:
    """Every spelling of every secret value given to ``cls`` by any source."""
    given: list[Any] = []
    for source in (overrides, section):
        given.extend(value for key, value in source.items() if key.lower() in cls.secret_keys)
    env_names = {f"{cls.section}__{key}".upper() for key in cls.secret_keys}
    given.extend(value for name, value in os.environ.items() if name.upper() in env_names)
    return {form for text in _strings(given) for form in _spellings(text)}


def scrub(message: str, secrets: Iterable[str]) -> str:
    # Longest first, so a value is masked whole before any fragment of it is looked for.
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, MASK)
    return message


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr | SecretBytes):
        value = value.get_secret_value()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def _spellings(text: str) -> set[str]:
    parts = {text, text.strip()}
    # A bot token's secret is what follows "<bot id>:"; a URL's is the password in it.
    parts.add(text.partition(":")[2])
    _, sep, rest = text.partition("://")
    if sep:
        userinfo = rest.rpartition("@")[0]
        parts.update({userinfo, userinfo.partition(":")[2]})
    forms = set()
    for part in parts:
        forms.update(
            {part, quote(part, safe=""), quote_plus(part), unquote(part), unquote_plus(part)}
        )
        forms.add(repr(part)[1:-1])
    return {form for form in forms if len(form) >= MIN_SCRUBBED}


def _masked(value: Any, secret_keys: frozenset[str]) -> Any:
    if isinstance(value, Mapping):
        return {
            key: MASK if str(key).lower() in secret_keys else _masked(item, secret_keys)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(item, secret_keys) for item in value]
    return value
