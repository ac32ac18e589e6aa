"""The sitewatch_maintenance DAG for Airflow: partitions ahead, rollups, expired data dropped."""

from sitewatch.airflow.retention_dag import retention_dag

dag = retention_dag()
