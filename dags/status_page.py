"""The sitewatch_status_page DAG for Airflow: public status pages published as static files."""

from sitewatch.airflow.status_page_dag import status_page_dag

dag = status_page_dag()
