"""The sitewatch_maintenance DAG for Airflow: partitions ahead, rollups, expired data dropped."""

from sitewatch.airflow.maintenance_dag import maintenance_dag

dag = maintenance_dag()
