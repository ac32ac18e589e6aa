"""Public status pages (issue 27): what a page says (``model``), read from storage (``read``),
written as static files (``html``, ``feeds``, ``files``). Above the dashboard, whose
``site_state`` decides every site's state; publishing the files is the Airflow layer's."""
