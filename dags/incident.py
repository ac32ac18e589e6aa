"""The sitewatch_incident DAG for Airflow: status page incidents from the trigger form."""

from sitewatch.airflow.incident_dag import incident_dag

incident = incident_dag()
