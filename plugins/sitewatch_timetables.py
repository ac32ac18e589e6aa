"""Airflow plugin: registers the site DAGs' timetable, so Airflow can store and load those DAGs.

Airflow 3 serializes and deserializes a timetable that is not its own only if a plugin lists the
class; the timetable itself is ``sitewatch.airflow.timetables.SiteTimetable``.
"""

from airflow.plugins_manager import AirflowPlugin

from sitewatch.airflow.timetables import SiteTimetable


class SitewatchTimetablesPlugin(AirflowPlugin):
    name = "sitewatch_timetables"
    timetables = [SiteTimetable]
