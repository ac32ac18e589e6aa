"""Header values from the environment: ``Authorization: "Bearer ${SHOP_TOKEN}"``.

Secrets never live in the sites file. A header value may name environment variables as
``${NAME}``; they are read when the check runs (on the worker), so the value is never parsed into
a DAG, shown on its page, or stored anywhere. ``$${`` writes a literal ``${``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping

from sitewatch.config.site import ConfigIssue, Site
from sitewatch.errors import ConfigError

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_headers(
    site: Site,
    environ: Mapping[str, str] | None = None,
    on_secret: Callable[[str], None] | None = None,
) -> Site:
    """Return ``site`` with every ``${NAME}`` in its header values replaced from ``environ``.

    on_secret: called with each substituted value (the task passes Airflow's ``mask_secret`` so
    the value is redacted from task logs). Raises ConfigError naming the site, the header and
    every variable that is not set.
    """
    environ = os.environ if environ is None else environ
    if not any("${" in value for value in site.headers.values()):
        return site
    missing: list[ConfigIssue] = []
    headers = {}
    for name, value in site.headers.items():

        def substitute(match: re.Match, header: str = name) -> str:
            if match.group(1) is None:
                return "${"
            var = match.group(1)
            if var not in environ:
                missing.append(
                    ConfigIssue(
                        "<environment>",
                        site.line,
                        f"{site.name}.headers.{header}",
                        f"environment variable {var} is not set",
                    )
                )
                return ""
            if on_secret is not None:
                on_secret(environ[var])
            return environ[var]

        headers[name] = _REFERENCE.sub(substitute, value)
    if missing:
        raise ConfigError(missing)
    return dataclasses.replace(site, headers=headers)
