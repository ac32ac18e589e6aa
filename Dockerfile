# The sitewatch Airflow image: the official Airflow image (same version as the apache-airflow pin in
# pyproject.toml) plus the sitewatch package and its pinned dependencies.
FROM apache/airflow:3.3.2-python3.11

# The project root is AIRFLOW_HOME, so the editable install puts /opt/airflow/include on sys.path:
# the very path docker-compose.yaml mounts ./include over. Package code and sites.yaml then come
# from the host checkout, and edits take effect without a rebuild; the copy below is only what an
# image run without that mount sees. Rebuild after changing pyproject.toml or constraints.txt.
COPY --chown=airflow:0 pyproject.toml README.md constraints.txt /opt/airflow/
COPY --chown=airflow:0 include/ /opt/airflow/include/
RUN pip install --no-cache-dir -c /opt/airflow/constraints.txt -e /opt/airflow \
 && mkdir -m 775 /opt/airflow/auth
