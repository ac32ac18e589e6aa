"""The sitewatch_incident_update DAG for Airflow: update an open incident picked from a list."""

from sitewatch.airflow.incident_update_dag import incident_update_dag

incident_update = incident_update_dag()
