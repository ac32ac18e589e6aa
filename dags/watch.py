"""The sitewatch_watch DAG for Airflow: one PIPELINE PROBLEM when sitewatch itself cannot judge."""

from sitewatch.airflow.watch_dag import watch_dag

dag = watch_dag()
