"""``${NAME}`` in header values: the syntax, and which environment variables a sites file may name.

The owner of both facts: the header check (``checks``) refuses a name at validation, and the
expansion at run time (``secrets``) reads the same ``REFERENCE``. Only names that start with
``SECRET_PREFIX`` may be used: whoever can edit the sites file must not be able to send the
worker's other variables (Airflow's database URL, Fernet key, JWT secret) to a site of their
choosing. Trade-off: variables named before this rule (``${SHOP_TOKEN}``) must be renamed.
"""

from __future__ import annotations

import re

SECRET_PREFIX = "SITEWATCH_SECRET_"
REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""A ``${NAME}`` (group 1 is the name) or an escaped ``$${`` (no group), which writes ``${``."""


def names(value: str) -> list[str]:
    """The variable names ``value`` refers to, in order (escaped ``$${`` excluded)."""
    return [match[1] for match in REFERENCE.finditer(value) if match[1] is not None]


def refusal(name: str) -> str | None:
    """Why a header value may not name variable ``name``, or None when it may."""
    if name.startswith(SECRET_PREFIX):
        return None
    if name.upper().startswith("AIRFLOW"):
        return (
            f"header values may not name {name}: Airflow's own settings hold its database"
            f" password and keys; use a variable that starts with {SECRET_PREFIX}"
        )
    # Environment names are case-sensitive: sitewatch_secret_x needs its prefix upper-cased.
    suffix = name[len(SECRET_PREFIX) :] if name.upper().startswith(SECRET_PREFIX) else name
    return (
        f"header values may only name variables that start with {SECRET_PREFIX}"
        f" (rename {name} to {SECRET_PREFIX}{suffix} in the worker's environment)"
    )
