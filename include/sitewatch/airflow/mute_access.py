"""Who may mute a site: the triggering user's access to the site's DAG, asked of the auth manager.

Airflow checks only that the user may trigger ``sitewatch_mute`` (or ``sitewatch_unmute``); the
sites are values in the run's conf. Muting a site holds its alerts as pausing its DAG would, so
it takes what pausing takes: permission to edit ``site_<name>`` (``is_authorized_dag`` with
``PUT``). A user who may not even read a site's DAG can therefore never mute it.

A task knows the user's name (``DagRun.triggering_user_name``), not the user, so the auth manager
must look the name up. SimpleAuthManager (Airflow's default, and this project's) keeps its users
in the configuration, which a task can read. Managers that keep them in the metadata database
(FAB) or an identity provider (Keycloak) cannot be asked from a task in Airflow 3: there, as for
a run with no user or a name the manager does not know, the request is refused (fail closed)
with a message saying why. Trade-off: in multi-team mode the site DAG's team is not known to the
task; it is the mute DAG's own (one bundle holds both), whose trigger already required it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sitewatch.names import site_dag_id

EDIT = "PUT"  # the auth manager's method for changing a DAG (pausing it, editing its runs)


class AccessRefused(PermissionError):
    """The triggering user may not mute (or unmute) the sites named, or cannot be checked."""


def check_access(user_name: str | None, sites: Sequence[str], manager=None) -> None:
    """Return when ``user_name`` may edit the DAG of every one of ``sites``.

    manager: an auth manager (default: the one Airflow is configured with). Raises AccessRefused
    naming every site whose DAG the user may not edit, or saying why the user cannot be checked
    (no triggering user, a name the manager does not know, a manager that cannot look names up).
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    if not user_name:
        raise AccessRefused(
            "this run has no triggering user, so nobody's access to the sites' DAGs can be "
            "checked; trigger it from the Airflow UI or API as a user"
        )
    if manager is None:
        from airflow.api_fastapi.app import create_auth_manager

        manager = create_auth_manager()
    user = user_named(manager, user_name)
    refused = [
        site
        for site in sites
        if not manager.is_authorized_dag(
            method=EDIT, user=user, details=DagDetails(id=site_dag_id(site))
        )
    ]
    if refused:
        raise AccessRefused(
            f"user {user_name!r} may not edit the DAGs of these sites, so may not mute or unmute "
            "them: " + ", ".join(f"{site} ({site_dag_id(site)})" for site in refused)
        )


def user_named(manager, name: str):
    """The user called ``name``, as ``manager`` would authorize them; raises AccessRefused when
    ``manager`` does not know the name or cannot look names up from a task."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.configuration import conf

    kind = type(manager).__name__
    if not isinstance(manager, SimpleAuthManager):
        raise AccessRefused(
            f"the auth manager {kind} cannot look up user {name!r} from a task, so their access "
            "to the sites' DAGs cannot be checked; plan the pause in the sites file "
            "(maintenance) instead"
        )
    if conf.getboolean("core", "simple_auth_manager_all_admins"):
        return SimpleAuthManagerUser(username=name, role="ADMIN")  # as the API server treats all
    found = next((user for user in manager.get_users() if user.username == name), None)
    if found is None:
        raise AccessRefused(
            f"user {name!r} is not one of {kind}'s users, so their access to the sites' DAGs "
            "cannot be checked"
        )
    return found
