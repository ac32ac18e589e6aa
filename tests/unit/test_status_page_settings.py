"""SITEWATCH_STATUS_PAGE_URL: a folder under the state dir by default, any URL of a folder, and a
SettingError naming the variable for anything else."""

import pytest

from sitewatch.errors import SettingError
from sitewatch.status.settings import target_url


def test_default_is_a_folder_under_the_state_dir(tmp_path):
    assert target_url({"SITEWATCH_STATE_DIR": str(tmp_path)}) == f"{tmp_path.as_uri()}/status-pages"
    assert target_url({"SITEWATCH_STATUS_PAGE_URL": " "}).endswith("/.state/status-pages")


@pytest.mark.parametrize(
    "url", ["file:///srv/status", "s3://aws_status@bucket/status", "memory://status", "gs://b/p/"]
)
def test_a_url_of_a_folder_is_kept(url):
    assert target_url({"SITEWATCH_STATUS_PAGE_URL": url}) == url.rstrip("/")


@pytest.mark.parametrize("url", ["/srv/status", "file:///", "s3://", "bucket/status"])
def test_anything_else_names_the_variable(url):
    with pytest.raises(SettingError, match="SITEWATCH_STATUS_PAGE_URL="):
        target_url({"SITEWATCH_STATUS_PAGE_URL": url})
