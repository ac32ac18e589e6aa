-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d), as
-- POSTGRES_USER against POSTGRES_DB ("airflow", Airflow's metadata). The drain DAG's first task
-- creates sitewatch's tables in this second database on the same server.
CREATE DATABASE sitewatch;
