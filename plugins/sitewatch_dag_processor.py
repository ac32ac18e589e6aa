"""Airflow plugin glue: in the ``airflow dag-processor`` process only, sitewatch is imported and
the sites file read once, before the processor forks its parse children
(``sitewatch.airflow.processor_preload``). It registers nothing.

Every Airflow process loads this file; elsewhere the call only looks at the command line.
"""

from sitewatch.airflow.processor_preload import preload_dag_processor

preload_dag_processor()
