"""The sitewatch_mute and sitewatch_unmute DAGs for Airflow: mute sites from the trigger form."""

from sitewatch.airflow.mute_dag import mute_dag, unmute_dag

mute = mute_dag()
unmute = unmute_dag()
