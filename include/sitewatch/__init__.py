"""sitewatch: website availability monitoring on Airflow, Kafka and PostgreSQL."""

__version__ = "0.1.0"
