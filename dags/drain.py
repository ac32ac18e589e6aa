"""The sitewatch_drain DAG for Airflow: stores every observation from Kafka in PostgreSQL once."""

from sitewatch.airflow.drain_dag import drain_dag

dag = drain_dag()
