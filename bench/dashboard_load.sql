-- Scratch data for measuring the dashboard's queries: 1,000 sites x 10,000 checks (every 5 min,
-- ending now), inserted in time order so one site's rows are spread over the heap as the drain
-- leaves them. ~1% of checks are down: attempt 1 (not final) then attempt 2 (final).
-- Usage: psql -v schema=dashbench -f bench/dashboard_load.sql, then bench/dashboard.py.
DROP SCHEMA IF EXISTS :schema CASCADE;
CREATE SCHEMA :schema;
SET search_path = :schema;
CREATE TABLE site_checks (
    site text COLLATE "C" NOT NULL, url text NOT NULL, scheduled_at timestamptz NOT NULL,
    attempt integer NOT NULL, final boolean NOT NULL, checked_at timestamptz NOT NULL,
    up boolean NOT NULL, status_code integer, response_time_ms double precision,
    dns_ms double precision, connect_ms double precision, tls_ms double precision,
    ttfb_ms double precision, regex text, regex_matched boolean, error text, error_detail text,
    final_url text, body_bytes bigint, tls_expires_at timestamptz,
    stored_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO site_checks
SELECT s.name, 'https://' || s.name || '.example.com/', t.at, a.attempt, a.attempt = 2 OR NOT t.down,
       t.at + make_interval(secs => a.attempt * 30), NOT t.down OR a.attempt = 2 AND random() < 0.5,
       CASE WHEN t.down THEN 503 ELSE 200 END, 40 + 400 * random() ^ 3, 1, 2, 5, 30, NULL, NULL,
       CASE WHEN t.down THEN 'status' END, CASE WHEN t.down THEN 'status 503 not in 200-399' END,
       'https://' || s.name || '.example.com/', 5120, now() + interval '60 days',
       t.at + interval '40 seconds'
FROM generate_series(9999, 0, -1) AS i
CROSS JOIN LATERAL (SELECT date_trunc('minute', now()) - i * interval '5 minutes' AS at) AS slot
CROSS JOIN generate_series(1, 1000) AS n
CROSS JOIN LATERAL (SELECT format('site-%s', lpad(n::text, 4, '0')) AS name) AS s
CROSS JOIN LATERAL (SELECT slot.at, random() < 0.01 AS down) AS t
CROSS JOIN LATERAL generate_series(1, CASE WHEN t.down THEN 2 ELSE 1 END) AS a(attempt);
ALTER TABLE site_checks ADD CONSTRAINT site_checks_pkey PRIMARY KEY (site, scheduled_at, attempt);
VACUUM ANALYZE site_checks;
