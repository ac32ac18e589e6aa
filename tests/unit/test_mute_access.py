"""Who may mute a site (issue 24 item 9): the triggering user's access to each site's DAG, asked of
Airflow's own SimpleAuthManager with users from the configuration, as a task would ask it.

SimpleAuthManager's roles apply to every DAG alike; FAB and Keycloak, which grant per DAG, are not
installed here, so the per-site case uses SimpleAuthManager with one DAG-level rule added."""

from __future__ import annotations

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

from sitewatch.airflow.mute_access import AccessRefused, check_access, user_named

SITES = ["shop", "blog"]


@pytest.fixture
def manager(monkeypatch):
    """The real SimpleAuthManager, with users of each role in the configuration."""
    users = "admin:admin,ops:op,dev:user,guest:viewer"
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", users)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    return SimpleAuthManager()


@pytest.mark.parametrize("name", ["admin", "ops", "dev"])
def test_a_user_who_may_edit_dags_may_mute(manager, name):
    check_access(name, SITES, manager)


def test_a_viewer_may_not_mute_and_every_site_is_named(manager):
    with pytest.raises(AccessRefused) as refused:
        check_access("guest", SITES, manager)
    assert str(refused.value) == (
        "user 'guest' may not edit the DAGs of these sites, so may not mute or unmute them: "
        "shop (site_shop), blog (site_blog)"
    )


def test_only_the_sites_whose_dag_the_user_may_not_edit_are_named(manager, monkeypatch):
    # per-DAG grants, as FAB or Keycloak would give them: dev may edit site_shop only
    real = SimpleAuthManager.is_authorized_dag

    def per_dag(self, *, method, user, access_entity=None, details=None):
        allowed = details is None or details.id == "site_shop" or user.username != "dev"
        return allowed and real(self, method=method, user=user, details=details)

    monkeypatch.setattr(SimpleAuthManager, "is_authorized_dag", per_dag)
    check_access("dev", ["shop"], manager)
    with pytest.raises(AccessRefused, match=r"them: blog \(site_blog\)$"):
        check_access("dev", ["shop", "blog"], manager)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "this run has no triggering user"),
        ("", "this run has no triggering user"),
        ("mallory", "user 'mallory' is not one of SimpleAuthManager's users"),
    ],
)
def test_a_user_who_cannot_be_checked_is_refused(manager, name, message):
    with pytest.raises(AccessRefused, match=message):
        check_access(name, SITES, manager)


def test_with_all_admins_everyone_is_admin_as_in_the_api_server(manager, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    assert user_named(manager, "anyone").role == "ADMIN"
    check_access("anyone", SITES, manager)


def test_a_manager_that_cannot_look_users_up_is_refused():
    class KeycloakAuthManager:  # the name is all the check may show of it
        pass

    with pytest.raises(AccessRefused, match="KeycloakAuthManager cannot look up user 'dev'"):
        check_access("dev", SITES, KeycloakAuthManager())


def test_the_configured_auth_manager_is_used_by_default(manager):
    # the test environment's Airflow is configured with SimpleAuthManager, as deployed
    with pytest.raises(AccessRefused, match="user 'guest' may not edit"):
        check_access("guest", SITES)
