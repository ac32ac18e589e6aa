"""Every verdict and alert is decided here, whichever process it runs in.

``alerts.judge`` is the one path from a verdict to the alert state and the message it calls for.
The drain's hooks (``session.Judge``) feed it the stored checks: DOWN and STILL DOWN (``downs``),
UP and DEGRADED (``recoveries``), the runs of sites checked from several locations (``runs``)
and the error budgets' burn rates (``burn``), all on one alerting session. The Airflow callbacks
adapt to it only what Airflow alone knows: a run that failed with no check to judge, a PIPELINE
PROBLEM.
Neither Airflow nor a web framework is imported here: what sends a message and what opens the
alerting connection are handed in by the caller.
"""
