"""sitewatch's PostgreSQL schema: numbered migrations and ``migrate``.

A migration is frozen once released: fix a mistake with a new migration, never by editing an old
one, because databases in the field already ran it. Table names are unqualified, so the tables land
in the connection's current schema (the first existing one on ``search_path``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from sitewatch.errors import SchemaError, StorageError
from sitewatch.names import (
    ALERTING_ROLE,
    DRAIN_DAG_ID,
    DRAIN_ROLE,
    MAINTENANCE_DAG_ID,
    READER_ROLE,
)

log = logging.getLogger(__name__)

# Migration N is MIGRATIONS[N - 1].
MIGRATIONS: tuple[str, ...] = (
    # 1: the observation table and the rejected-message table.
    # site_checks has no surrogate id: its natural key is the primary key, which is also the index
    # for per-site time-range queries (site, scheduled_at) and for "latest check of a site"
    # (backward scan; WHERE final filters the rare retries). Each extra index costs ~30% of the
    # drain's insert rate, so add one only for a query that needs it. stored_at minus checked_at
    # shows how far the drain lags. Site names are ASCII identifiers, so byte order ("C") is the
    # right collation and keeps key comparisons cheap.
    """
    CREATE TABLE site_checks (
        site             text COLLATE "C" NOT NULL,
        url              text             NOT NULL,
        scheduled_at     timestamptz      NOT NULL,
        attempt          integer          NOT NULL,
        final            boolean          NOT NULL,
        checked_at       timestamptz      NOT NULL,
        up               boolean          NOT NULL,
        status_code      integer,
        response_time_ms double precision,
        dns_ms           double precision,
        connect_ms       double precision,
        tls_ms           double precision,
        ttfb_ms          double precision,
        regex            text,
        regex_matched    boolean,
        error            text,
        error_detail     text,
        final_url        text,
        body_bytes       bigint,
        tls_expires_at   timestamptz,
        stored_at        timestamptz      NOT NULL DEFAULT now(),
        CONSTRAINT site_checks_pkey PRIMARY KEY (site, scheduled_at, attempt)
    );
    CREATE TABLE site_checks_rejected (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic       text        NOT NULL,
        partition   integer     NOT NULL,
        "offset"    bigint      NOT NULL,
        key         bytea,
        raw         bytea,
        reason      text        NOT NULL,
        rejected_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT site_checks_rejected_message UNIQUE (topic, partition, "offset")
    );
    """,
    # 2: per-site alert state (alerting.store): one row per site that has alert targets,
    # locked while a run's verdict is applied so two workers never send the same alert twice.
    """
    CREATE TABLE site_alert_state (
        site             text COLLATE "C" PRIMARY KEY,
        state            text CHECK (state IN ('up', 'down')),
        since            timestamptz,
        error            text,
        detail           text,
        last_notified_at timestamptz,
        pipeline_since   timestamptz,
        last_run_id      text,
        last_run_after   timestamptz,
        updated_at       timestamptz NOT NULL DEFAULT now()
    );
    """,
    # 3: daily uptime rollup for the dashboard's 7 and 30 day figures (the Sites page).
    # Counting 30 days of final attempts of 1,000 sites from site_checks reads ~8.6M rows (3-5 s,
    # even index-only); the rollup makes it 30 rows a site. A statement-level trigger with a
    # transition table keeps it exact: one grouped upsert per drain batch (COPY or INSERT), not
    # one per row. The table lock keeps the drain from inserting between backfill and trigger.
    # Rows are never deleted from site_checks; a future retention job must subtract here too.
    """
    LOCK TABLE site_checks IN SHARE ROW EXCLUSIVE MODE;
    CREATE TABLE site_checks_daily (
        site   text COLLATE "C" NOT NULL,
        day    date             NOT NULL,
        checks integer          NOT NULL,
        ups    integer          NOT NULL,
        CONSTRAINT site_checks_daily_pkey PRIMARY KEY (site, day)
    );
    CREATE FUNCTION site_checks_daily_add() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        INSERT INTO site_checks_daily AS d (site, day, checks, ups)
        SELECT site, (scheduled_at AT TIME ZONE 'UTC')::date, count(*), count(*) FILTER (WHERE up)
        FROM new_rows WHERE final GROUP BY 1, 2
        ON CONFLICT (site, day) DO UPDATE
        SET checks = d.checks + excluded.checks, ups = d.ups + excluded.ups;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER site_checks_daily AFTER INSERT ON site_checks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION site_checks_daily_add();
    INSERT INTO site_checks_daily (site, day, checks, ups)
    SELECT site, (scheduled_at AT TIME ZONE 'UTC')::date, count(*), count(*) FILTER (WHERE up)
    FROM site_checks WHERE final GROUP BY 1, 2;
    """,
    # 4: site_checks partitioned by UTC day (retention.py drops whole days), and the hourly
    # rollup that outlives them. The old table is renamed, its rows copied into daily partitions
    # named site_checks_pYYYYMMDD (one per day that has rows, plus today and the next 7), then
    # dropped, all in this one transaction under the rename's exclusive lock, so no drain batch
    # lands in between. site_checks_daily already counts those rows, so the trigger is re-created
    # only after the copy. A statement-level trigger with a transition table works on a
    # partitioned table in PostgreSQL 15 (it sees rows routed to every partition, for COPY and
    # INSERT ... ON CONFLICT alike), but it makes COPY insert row by row instead of in multi-row
    # groups. site_checks_create_partitions is the one definition of a partition's name and
    # bounds, for store_batch and the maintenance DAG; the exception block absorbs a concurrent
    # creator of the same day. site_checks_daily and site_checks_hourly are rollups: they keep
    # the figures of dropped days (retention.py prunes them on a retention of their own).
    """
    LOCK TABLE site_checks IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE site_checks RENAME TO site_checks_unpartitioned;
    ALTER TABLE site_checks_unpartitioned
        RENAME CONSTRAINT site_checks_pkey TO site_checks_unpartitioned_pkey;
    CREATE TABLE site_checks (
        site             text COLLATE "C" NOT NULL,
        url              text             NOT NULL,
        scheduled_at     timestamptz      NOT NULL,
        attempt          integer          NOT NULL,
        final            boolean          NOT NULL,
        checked_at       timestamptz      NOT NULL,
        up               boolean          NOT NULL,
        status_code      integer,
        response_time_ms double precision,
        dns_ms           double precision,
        connect_ms       double precision,
        tls_ms           double precision,
        ttfb_ms          double precision,
        regex            text,
        regex_matched    boolean,
        error            text,
        error_detail     text,
        final_url        text,
        body_bytes       bigint,
        tls_expires_at   timestamptz,
        stored_at        timestamptz      NOT NULL DEFAULT now(),
        CONSTRAINT site_checks_pkey PRIMARY KEY (site, scheduled_at, attempt)
    ) PARTITION BY RANGE (scheduled_at);
    CREATE FUNCTION site_checks_create_partitions(days date[]) RETURNS integer LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    DECLARE
        d       date;
        created integer := 0;
    BEGIN
        FOREACH d IN ARRAY days LOOP
            CONTINUE WHEN to_regclass('site_checks_p' || to_char(d, 'YYYYMMDD')) IS NOT NULL;
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF site_checks FOR VALUES FROM (%L) TO (%L)',
                    'site_checks_p' || to_char(d, 'YYYYMMDD'),
                    to_char(d, 'YYYY-MM-DD') || ' 00:00:00+00',
                    to_char(d + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
                created := created + 1;
            EXCEPTION WHEN duplicate_table OR unique_violation THEN
                NULL;  -- another session created it first
            END;
        END LOOP;
        RETURN created;
    END
    $$;
    SELECT site_checks_create_partitions(array_agg(day ORDER BY day)) FROM (
        SELECT DISTINCT (scheduled_at AT TIME ZONE 'UTC')::date AS day
        FROM site_checks_unpartitioned
        UNION
        SELECT (now() AT TIME ZONE 'UTC')::date + i FROM generate_series(0, 7) i
    ) days;
    INSERT INTO site_checks (
        site, url, scheduled_at, attempt, final, checked_at, up, status_code, response_time_ms,
        dns_ms, connect_ms, tls_ms, ttfb_ms, regex, regex_matched, error, error_detail,
        final_url, body_bytes, tls_expires_at, stored_at)
    SELECT site, url, scheduled_at, attempt, final, checked_at, up, status_code, response_time_ms,
        dns_ms, connect_ms, tls_ms, ttfb_ms, regex, regex_matched, error, error_detail,
        final_url, body_bytes, tls_expires_at, stored_at
    FROM site_checks_unpartitioned;
    DROP TABLE site_checks_unpartitioned;
    CREATE TRIGGER site_checks_daily AFTER INSERT ON site_checks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION site_checks_daily_add();
    CREATE TABLE site_checks_hourly (
        site   text COLLATE "C" NOT NULL,
        hour   timestamptz      NOT NULL,
        checks integer          NOT NULL,
        ups    integer          NOT NULL,
        p50_ms double precision,
        p95_ms double precision,
        max_ms double precision,
        CONSTRAINT site_checks_hourly_pkey PRIMARY KEY (site, hour)
    );
    """,
    # 5: partitions made on behalf of roles that do not own site_checks. Creating a partition
    # takes ownership of the parent table, which the drain's role (DRAIN_ROLE) must not have (it
    # could drop the table), so the function runs as its owner; its search_path is already fixed
    # (SET search_path FROM CURRENT), as a SECURITY DEFINER function needs. Only roles granted
    # EXECUTE (see PRIVILEGES) may call it, not PUBLIC.
    """
    ALTER FUNCTION site_checks_create_partitions(date[]) SECURITY DEFINER;
    REVOKE EXECUTE ON FUNCTION site_checks_create_partitions(date[]) FROM PUBLIC;
    """,
    # 6: checks from several locations (issue 16). Every row gets the location it was checked
    # from; rows stored before are 'local', the location of a site that names none, and so are
    # rows from drains or producers that predate this (the column default). The key becomes
    # (site, scheduled_at, location, attempt): two locations' attempt 1 of one run are two rows,
    # and a run's rows of all locations stay adjacent for the verdict across them
    # (storage/verdicts.py); attempt stays last, so a location's latest attempt is a backward
    # scan. The rollups count per location too (site-level figures sum over them); their
    # location has no default, since every writer copies site_checks'. site_verdicts holds the
    # drain's verdict of each run of a site with several locations, once (its key), so its alert
    # goes out once.
    # Cost and locks: the new columns are catalog-only changes (a constant default, no rewrite).
    # The new primary key is built on every partition: one pass over the raw rows kept (1.5 s for
    # 2 million rows on a development machine, so about a minute and a half for 90 days of 1,000
    # sites checked every minute), under an ACCESS EXCLUSIVE lock on site_checks that holds back
    # the drain (its messages wait in Kafka) and the Sites page meanwhile. site_checks is locked
    # first, as a drain batch locks it before the daily rollup (by trigger), so the two queue
    # rather than deadlock; a Sites page read that already holds the rollup can deadlock with it,
    # and then PostgreSQL cancels one of them (a failed migration is retried whole by the next
    # create_tables). A drain of the previous version fails on this schema once a batch takes
    # its deduplicating path (its ON CONFLICT names the old key): the drain's create_tables,
    # the new code, is what runs this migration.
    """
    LOCK TABLE site_checks IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE site_checks
        ADD COLUMN location text COLLATE "C" NOT NULL DEFAULT 'local',
        DROP CONSTRAINT site_checks_pkey,
        ADD CONSTRAINT site_checks_pkey PRIMARY KEY (site, scheduled_at, location, attempt);
    ALTER TABLE site_checks_daily
        ADD COLUMN location text COLLATE "C" NOT NULL DEFAULT 'local',
        DROP CONSTRAINT site_checks_daily_pkey,
        ADD CONSTRAINT site_checks_daily_pkey PRIMARY KEY (site, day, location);
    ALTER TABLE site_checks_daily ALTER COLUMN location DROP DEFAULT;
    ALTER TABLE site_checks_hourly
        ADD COLUMN location text COLLATE "C" NOT NULL DEFAULT 'local',
        DROP CONSTRAINT site_checks_hourly_pkey,
        ADD CONSTRAINT site_checks_hourly_pkey PRIMARY KEY (site, hour, location);
    ALTER TABLE site_checks_hourly ALTER COLUMN location DROP DEFAULT;
    CREATE OR REPLACE FUNCTION site_checks_daily_add() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        INSERT INTO site_checks_daily AS d (site, day, location, checks, ups)
        SELECT site, (scheduled_at AT TIME ZONE 'UTC')::date, location,
               count(*), count(*) FILTER (WHERE up)
        FROM new_rows WHERE final GROUP BY 1, 2, 3
        ON CONFLICT (site, day, location) DO UPDATE
        SET checks = d.checks + excluded.checks, ups = d.ups + excluded.ups;
        RETURN NULL;
    END
    $$;
    CREATE TABLE site_verdicts (
        site         text COLLATE "C" NOT NULL,
        scheduled_at timestamptz      NOT NULL,
        verdict      text             NOT NULL CHECK (verdict IN ('up', 'down', 'partial')),
        quorum       integer          NOT NULL,
        -- each location's outcome: {"east": "up", "west": "down", "north": "missing"}
        locations    jsonb            NOT NULL,
        decided_at   timestamptz      NOT NULL DEFAULT now(),
        CONSTRAINT site_verdicts_pkey PRIMARY KEY (site, scheduled_at)
    );
    """,
    # 7: an up attempt is final. `final` marks a run's last attempt, which an up attempt always
    # is, but until this version an up attempt was stored final only when it was the last try
    # allowed: a healthy check of a site with retries (the default is 2) was stored not final,
    # and uptime, response-time percentiles and both rollups, which count final attempts, left
    # it out. This marks those rows final and recounts what the rollups hold of the raw rows
    # still kept: every day of them (the trigger rolled each one up), and the hours up to the
    # newest one maintenance rolled up (later ones are its to add). Marking rows final only adds
    # to a group, so an upsert of each group's new figures covers every row that changes; days
    # and hours whose raw rows were dropped keep their figures, with nothing to recount them from.
    # Cost: one pass that rewrites every up row not yet final, under a lock that holds back the
    # drain (its messages wait in Kafka) but not readers.
    """
    LOCK TABLE site_checks IN SHARE ROW EXCLUSIVE MODE;
    UPDATE site_checks SET final = true WHERE up AND NOT final;
    INSERT INTO site_checks_daily AS d (site, day, location, checks, ups)
    SELECT site, (scheduled_at AT TIME ZONE 'UTC')::date, location,
           count(*), count(*) FILTER (WHERE up)
    FROM site_checks WHERE final GROUP BY 1, 2, 3
    ON CONFLICT (site, day, location) DO UPDATE SET checks = excluded.checks, ups = excluded.ups;
    INSERT INTO site_checks_hourly AS h
        (site, hour, location, checks, ups, p50_ms, p95_ms, max_ms)
    SELECT site, date_trunc('hour', scheduled_at, 'UTC'), location,
           count(*), count(*) FILTER (WHERE up),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms),
           max(response_time_ms)
    FROM site_checks
    WHERE final
      AND scheduled_at < (SELECT max(hour) + interval '1 hour' FROM site_checks_hourly)
    GROUP BY 1, 2, 3
    ON CONFLICT (site, hour, location) DO UPDATE
    SET checks = excluded.checks, ups = excluded.ups, p50_ms = excluded.p50_ms,
        p95_ms = excluded.p95_ms, max_ms = excluded.max_ms;
    """,
    # 8: fewer false alarms and SLOs (issue 17). A check stored during a maintenance window
    # (the sites file's, or an ad-hoc mute in site_mutes) says so (`maintenance`, set by the
    # drain before it inserts); uptime and SLO figures leave it out, so from here on the
    # rollups' checks and ups count final checks outside maintenance, and `maint_checks` counts
    # the final checks inside one (earlier rows had no window: nothing to recount). The alert
    # state learns why a down state's message was held (`held`: a window or a parent that is
    # down), the recent state changes for flapping, and whether the site is degraded.
    # site_alert_log records every alert decided, sent or held. site_slo_alerts holds each
    # site's burn-rate alerts (one row per severity while it fires).
    # Cost: catalog-only column additions (constant defaults, no rewrite) and new small tables;
    # the daily trigger function is replaced in place.
    """
    LOCK TABLE site_checks IN SHARE ROW EXCLUSIVE MODE;
    ALTER TABLE site_checks ADD COLUMN maintenance boolean NOT NULL DEFAULT false;
    ALTER TABLE site_checks_daily ADD COLUMN maint_checks integer NOT NULL DEFAULT 0;
    ALTER TABLE site_checks_hourly ADD COLUMN maint_checks integer NOT NULL DEFAULT 0;
    CREATE OR REPLACE FUNCTION site_checks_daily_add() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        INSERT INTO site_checks_daily AS d (site, day, location, checks, ups, maint_checks)
        SELECT site, (scheduled_at AT TIME ZONE 'UTC')::date, location,
               count(*) FILTER (WHERE NOT maintenance),
               count(*) FILTER (WHERE up AND NOT maintenance),
               count(*) FILTER (WHERE maintenance)
        FROM new_rows WHERE final GROUP BY 1, 2, 3
        ON CONFLICT (site, day, location) DO UPDATE
        SET checks = d.checks + excluded.checks, ups = d.ups + excluded.ups,
            maint_checks = d.maint_checks + excluded.maint_checks;
        RETURN NULL;
    END
    $$;
    CREATE TABLE site_mutes (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        site       text COLLATE "C" NOT NULL,
        starts_at  timestamptz      NOT NULL,
        ends_at    timestamptz      NOT NULL CHECK (ends_at > starts_at),
        reason     text             NOT NULL,
        created_by text,
        created_at timestamptz      NOT NULL DEFAULT now()
    );
    CREATE INDEX site_mutes_site_ends_at ON site_mutes (site, ends_at);
    ALTER TABLE site_alert_state
        ADD COLUMN held           text,
        ADD COLUMN changes        timestamptz[] NOT NULL DEFAULT '{}',
        ADD COLUMN flapping_since timestamptz,
        ADD COLUMN degraded       boolean NOT NULL DEFAULT false;
    CREATE TABLE site_alert_log (
        site   text COLLATE "C" NOT NULL,
        at     timestamptz      NOT NULL,
        kind   text             NOT NULL,
        -- why it was not sent (a window, a parent down, flapping); NULL: it was sent
        held   text,
        error  text,
        detail text,
        run_id text
    );
    CREATE INDEX site_alert_log_site_at ON site_alert_log (site, at);
    CREATE TABLE site_slo_alerts (
        site             text COLLATE "C" NOT NULL,
        severity         text             NOT NULL CHECK (severity IN ('page', 'warn')),
        firing_since     timestamptz      NOT NULL,
        burn_long        double precision NOT NULL,
        burn_short       double precision NOT NULL,
        last_notified_at timestamptz,
        CONSTRAINT site_slo_alerts_pkey PRIMARY KEY (site, severity)
    );
    """,
    # 9: figures for Prometheus (issue 18), cheap at any history length. site_latest holds each
    # site and location's latest final attempt, and counters from this migration on: attempts
    # stored, and final ones outside maintenance and how many were up (Prometheus's rate() of
    # them is any window's availability). A scrape reads one small row per location instead of
    # searching site_checks; sitewatch_counters counts rejected messages. The insert trigger
    # now keeps the hourly rollup's counts current too, so 24 h uptime and SLO availability no
    # longer wait up to an hour for maintenance, which from here on computes only the hourly
    # percentiles (retention.refresh_hourly): the trigger owns every count, maintenance the
    # figures that cannot be added to. One trigger function does the three upserts of a drain
    # batch (daily, hourly, latest), each one grouped statement whatever the batch size.
    # Backfill, under a lock that holds back the drain (its messages wait in Kafka) but not
    # readers: the hours maintenance may not have rolled up yet (from 48 hours before the
    # newest rolled-up hour) are recounted from the raw rows; site_latest gets each site and
    # location with a final attempt in the last 30 days by one backward probe of the primary
    # key each (the pairs come from the daily rollup); the rejected count from its table.
    # Each upsert takes its rows in key order, as maintenance's refresh does, so a drain batch
    # and a refresh that share rows wait for each other instead of deadlocking; the UPDATE only
    # touches rows its batch's upsert just locked.
    """
    LOCK TABLE site_checks IN SHARE ROW EXCLUSIVE MODE;
    CREATE TABLE site_latest (
        site             text COLLATE "C" NOT NULL,
        location         text COLLATE "C" NOT NULL,
        stored           bigint           NOT NULL,
        stored_at        timestamptz      NOT NULL,
        -- final attempts outside maintenance and how many were up, as uptime and SLOs count
        -- them: counters for Prometheus's rate() over any window
        checks           bigint           NOT NULL DEFAULT 0,
        ups              bigint           NOT NULL DEFAULT 0,
        scheduled_at     timestamptz,
        attempt          integer,
        checked_at       timestamptz,
        up               boolean,
        status_code      integer,
        response_time_ms double precision,
        dns_ms           double precision,
        connect_ms       double precision,
        tls_ms           double precision,
        ttfb_ms          double precision,
        error            text,
        maintenance      boolean,
        -- the newest certificate expiry a final attempt saw, and that attempt's scheduled_at
        tls_expires_at   timestamptz,
        tls_seen_at      timestamptz,
        CONSTRAINT site_latest_pkey PRIMARY KEY (site, location)
    );
    CREATE TABLE sitewatch_counters (
        name  text   PRIMARY KEY,
        value bigint NOT NULL
    );
    CREATE FUNCTION site_checks_added() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        INSERT INTO site_checks_daily AS d (site, day, location, checks, ups, maint_checks)
        SELECT site, (scheduled_at AT TIME ZONE 'UTC')::date, location,
               count(*) FILTER (WHERE NOT maintenance),
               count(*) FILTER (WHERE up AND NOT maintenance),
               count(*) FILTER (WHERE maintenance)
        FROM new_rows WHERE final GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (site, day, location) DO UPDATE
        SET checks = d.checks + excluded.checks, ups = d.ups + excluded.ups,
            maint_checks = d.maint_checks + excluded.maint_checks;
        INSERT INTO site_checks_hourly AS h (site, hour, location, checks, ups, maint_checks)
        SELECT site, date_trunc('hour', scheduled_at, 'UTC'), location,
               count(*) FILTER (WHERE NOT maintenance),
               count(*) FILTER (WHERE up AND NOT maintenance),
               count(*) FILTER (WHERE maintenance)
        FROM new_rows WHERE final GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (site, hour, location) DO UPDATE
        SET checks = h.checks + excluded.checks, ups = h.ups + excluded.ups,
            maint_checks = h.maint_checks + excluded.maint_checks;
        INSERT INTO site_latest AS l (site, location, stored, stored_at, checks, ups)
        SELECT site, location, count(*), max(stored_at),
               count(*) FILTER (WHERE final AND NOT maintenance),
               count(*) FILTER (WHERE final AND up AND NOT maintenance)
        FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (site, location) DO UPDATE
        SET stored = l.stored + excluded.stored,
            stored_at = greatest(l.stored_at, excluded.stored_at),
            checks = l.checks + excluded.checks, ups = l.ups + excluded.ups;
        -- the batch's newest final attempt of each pair, unless a newer one is already there
        -- (a late row, or a redelivered run's)
        UPDATE site_latest l
        SET scheduled_at = n.scheduled_at, attempt = n.attempt, checked_at = n.checked_at,
            up = n.up, status_code = n.status_code, response_time_ms = n.response_time_ms,
            dns_ms = n.dns_ms, connect_ms = n.connect_ms, tls_ms = n.tls_ms,
            ttfb_ms = n.ttfb_ms, error = n.error, maintenance = n.maintenance,
            tls_expires_at = coalesce(n.tls_expires_at, l.tls_expires_at),
            tls_seen_at = CASE WHEN n.tls_expires_at IS NULL THEN l.tls_seen_at
                               ELSE n.scheduled_at END
        FROM (
            SELECT DISTINCT ON (site, location) * FROM new_rows WHERE final
            ORDER BY site, location, scheduled_at DESC, attempt DESC
        ) n
        WHERE l.site = n.site AND l.location = n.location
          AND (l.scheduled_at IS NULL
               OR (n.scheduled_at, n.attempt) > (l.scheduled_at, l.attempt));
        RETURN NULL;
    END
    $$;
    -- the trigger keeps its name (migration 3's) and gets the new function: replacing it takes
    -- the lock already held, where dropping it would lock readers out too
    CREATE OR REPLACE TRIGGER site_checks_daily AFTER INSERT ON site_checks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION site_checks_added();
    DROP FUNCTION site_checks_daily_add();
    CREATE FUNCTION site_checks_rejected_added() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
    BEGIN
        INSERT INTO sitewatch_counters AS c (name, value)
        SELECT 'rejected', count(*) FROM new_rows HAVING count(*) > 0
        ON CONFLICT (name) DO UPDATE SET value = c.value + excluded.value;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER site_checks_rejected_added AFTER INSERT ON site_checks_rejected
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION site_checks_rejected_added();
    INSERT INTO sitewatch_counters (name, value)
    SELECT 'rejected', count(*) FROM site_checks_rejected;
    INSERT INTO site_checks_hourly AS h (site, hour, location, checks, ups, maint_checks)
    SELECT site, date_trunc('hour', scheduled_at, 'UTC'), location,
           count(*) FILTER (WHERE NOT maintenance),
           count(*) FILTER (WHERE up AND NOT maintenance),
           count(*) FILTER (WHERE maintenance)
    FROM site_checks
    WHERE final AND scheduled_at >= coalesce(
        (SELECT max(hour) FROM site_checks_hourly) - interval '48 hours', '-infinity')
    GROUP BY 1, 2, 3
    ON CONFLICT (site, hour, location) DO UPDATE
    SET checks = excluded.checks, ups = excluded.ups, maint_checks = excluded.maint_checks;
    INSERT INTO site_latest (
        site, location, stored, stored_at, scheduled_at, attempt, checked_at, up, status_code,
        response_time_ms, dns_ms, connect_ms, tls_ms, ttfb_ms, error, maintenance,
        tls_expires_at, tls_seen_at)
    SELECT p.site, p.location, 0, c.stored_at, c.scheduled_at, c.attempt, c.checked_at, c.up,
           c.status_code, c.response_time_ms, c.dns_ms, c.connect_ms, c.tls_ms, c.ttfb_ms,
           c.error, c.maintenance, c.tls_expires_at,
           CASE WHEN c.tls_expires_at IS NOT NULL THEN c.scheduled_at END
    FROM (
        SELECT DISTINCT site, location FROM site_checks_daily
        WHERE day >= (now() AT TIME ZONE 'UTC')::date - 30
    ) p
    CROSS JOIN LATERAL (
        SELECT * FROM site_checks c
        WHERE c.site = p.site AND c.location = p.location AND c.final
          AND c.scheduled_at > now() - interval '30 days'
        ORDER BY c.scheduled_at DESC, c.attempt DESC LIMIT 1
    ) c;
    """,
    # 10: each check names the Airflow run that made it (issue 25). The drain judges a site's
    # final down check (DOWN, STILL DOWN) as it stores it, and the message links to that run's
    # log, as the task's failure callback did when it sent DOWN. Null for rows of producers
    # before this. Cost: a catalog-only column addition (no default, no rewrite).
    """
    ALTER TABLE site_checks ADD COLUMN run_id text;
    """,
    # 11: status page incidents (issue 27). An incident belongs to one page and names the
    # components it affects by their display names (what the page shows; the sites file may
    # rename them later, and the record keeps what readers saw). opened_by_site is the site whose
    # DOWN opened it automatically (null: an operator opened it); taken_over is set once an
    # operator writes an update, after which RECOVERED leaves it alone. Updates are only ever
    # added, so the record of who said what, when, stays. The partial index finds a page's open
    # incidents, which are few, whatever the history.
    """
    CREATE TABLE status_incidents (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        page           text COLLATE "C" NOT NULL,
        components     text[]      NOT NULL DEFAULT '{}',
        title          text        NOT NULL,
        state          text        NOT NULL
            CHECK (state IN ('investigating', 'identified', 'monitoring', 'resolved')),
        opened_at      timestamptz NOT NULL,
        resolved_at    timestamptz,
        opened_by_site text COLLATE "C",
        taken_over     boolean     NOT NULL DEFAULT false,
        CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))
    );
    CREATE INDEX status_incidents_open ON status_incidents (page) WHERE resolved_at IS NULL;
    CREATE INDEX status_incidents_page_opened ON status_incidents (page, opened_at);
    CREATE TABLE status_incident_updates (
        id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        incident bigint      NOT NULL REFERENCES status_incidents (id),
        at       timestamptz NOT NULL,
        state    text        NOT NULL
            CHECK (state IN ('investigating', 'identified', 'monitoring', 'resolved')),
        body     text        NOT NULL,
        author   text        NOT NULL
    );
    CREATE INDEX status_incident_updates_incident ON status_incident_updates (incident, at);
    """,
    # 12: a flow's steps (issue 26), stored with its check as one jsonb array (name, method, url,
    # status, timings, bytes, the failure of each step; sitewatch.observation.STEP_FIELDS): a flow
    # is still one attempt and one row, and nothing reads the steps apart from their check. Null
    # for single checks and for rows from before this. Cost: a catalog-only column addition.
    """
    ALTER TABLE site_checks ADD COLUMN steps jsonb;
    """,
    # 13: the TLS version each check's first TLS connection agreed on (issue 26; TLSv1.3 as
    # OpenSSL names it), beside the chain's expiry, so a site's move to an older version shows.
    # Null without TLS and for rows from before this. Cost: a catalog-only column addition.
    """
    ALTER TABLE site_checks ADD COLUMN tls_version text;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)

# What each least-privilege role may do, granted by ``migrate`` (see ``grant_privileges``). Objects
# are named as in the migrations; a table's partitions need no grant of their own, since PostgreSQL
# checks the partitioned table's privileges for rows that go through it.
PRIVILEGES: dict[str, dict[str, tuple[str, ...]]] = {
    DRAIN_ROLE: {
        "site_checks": ("SELECT", "INSERT"),
        "site_checks_rejected": ("SELECT", "INSERT"),
        # the insert trigger (migrations 3 and 9) runs as the role that inserts the checks
        "site_checks_daily": ("SELECT", "INSERT", "UPDATE"),
        "site_checks_hourly": ("SELECT", "INSERT", "UPDATE"),
        "site_latest": ("SELECT", "INSERT", "UPDATE"),
        "sitewatch_counters": ("SELECT", "INSERT", "UPDATE"),
        # the drain marks checks that fall in an ad-hoc maintenance window (migration 8)
        "site_mutes": ("SELECT",),
        "sitewatch_schema_version": ("SELECT",),
        "site_checks_create_partitions(date[])": ("EXECUTE",),
    },
    ALERTING_ROLE: {
        "site_alert_state": ("SELECT", "INSERT", "UPDATE"),
        # the verdict across locations (migration 6): read the run's checks, record the verdict
        "site_checks": ("SELECT",),
        "site_verdicts": ("SELECT", "INSERT"),
        # maintenance and noise (migration 8): ad-hoc mutes, the alert log, burn-rate alerts
        "site_mutes": ("SELECT", "INSERT", "UPDATE"),
        "site_alert_log": ("SELECT", "INSERT"),
        "site_slo_alerts": ("SELECT", "INSERT", "UPDATE", "DELETE"),
        "site_checks_hourly": ("SELECT",),
        # status page incidents (migration 11): the judge opens and resolves them, the
        # sitewatch_incident DAG writes operators' updates; updates are never changed
        "status_incidents": ("SELECT", "INSERT", "UPDATE"),
        "status_incident_updates": ("SELECT", "INSERT"),
        "sitewatch_schema_version": ("SELECT",),
    },
    READER_ROLE: {
        "site_checks": ("SELECT",),
        "site_checks_daily": ("SELECT",),
        "site_checks_hourly": ("SELECT",),
        "site_alert_state": ("SELECT",),
        "site_verdicts": ("SELECT",),
        "site_mutes": ("SELECT",),
        "site_alert_log": ("SELECT",),
        "site_slo_alerts": ("SELECT",),
        "site_latest": ("SELECT",),
        "sitewatch_counters": ("SELECT",),
        "status_incidents": ("SELECT",),
        "status_incident_updates": ("SELECT",),
        "sitewatch_schema_version": ("SELECT",),
    },
}

_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS sitewatch_schema_version (
        version    integer     PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""
# One lock per schema, so migrating one schema never waits for another (tests use many).
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('sitewatch.migrate:' || current_schema()))"


def migrate(conn) -> int:
    """Apply the pending migrations in order and return the schema version now in force.

    conn: a psycopg 3 connection with no transaction open; its current schema receives the tables.
    Each migration runs in its own transaction together with its ``sitewatch_schema_version`` row,
    so a failed migration leaves the previous version intact and is retried by the next call. Every
    transaction first takes a per-schema advisory lock, so concurrent callers (two drains starting
    at once) serialize: one applies, the others find nothing left to do. A database newer than this
    code is left alone (its version is returned, with a warning). Once the schema is current, the
    least-privilege roles that exist get their ``PRIVILEGES`` (``grant_privileges``).

    Raises StorageError naming PostgreSQL when a statement or the connection fails.
    """
    while True:
        with transaction(conn, "could not migrate the sitewatch schema") as cur:
            cur.execute(_LOCK)
            cur.execute("SET LOCAL client_min_messages = warning")  # no "already exists" notice
            cur.execute(_VERSION_TABLE)
            cur.execute("SELECT coalesce(max(version), 0) FROM sitewatch_schema_version")
            current = cur.fetchone()[0]
            if current >= SCHEMA_VERSION:
                if current > SCHEMA_VERSION:
                    log.warning(
                        "migrate: database schema version=%s is newer than code version=%s",
                        current,
                        SCHEMA_VERSION,
                    )
                grant_privileges(cur)
                return current
            version = current + 1
            cur.execute(MIGRATIONS[version - 1])
            cur.execute("INSERT INTO sitewatch_schema_version (version) VALUES (%s)", (version,))
        log.info("migrate: applied schema version=%s", version)


# One row per (role, object, privilege) that is missing, for roles that exist and objects the
# current role owns (directly or through membership), so that granting can succeed.
_MISSING_PRIVILEGES = """
    SELECT g.role, g.object, g.privilege, p.oid IS NOT NULL
    FROM unnest(%s::text[], %s::text[], %s::text[]) AS g(role, object, privilege)
    JOIN pg_roles r ON r.rolname = g.role
    LEFT JOIN pg_class c
        ON c.oid = CASE WHEN g.privilege <> 'EXECUTE' THEN to_regclass(g.object) END
    LEFT JOIN pg_proc p
        ON p.oid = CASE WHEN g.privilege = 'EXECUTE' THEN to_regprocedure(g.object) END
    WHERE CASE WHEN p.oid IS NOT NULL
            THEN pg_has_role(p.proowner, 'USAGE')
                 AND NOT has_function_privilege(g.role, p.oid, g.privilege)
          WHEN c.oid IS NOT NULL
            THEN pg_has_role(c.relowner, 'USAGE')
                 AND NOT has_table_privilege(g.role, c.oid, g.privilege)
          ELSE false END
"""
_MISSING_USAGE = """
    SELECT r.rolname, n.nspname FROM pg_roles r, pg_namespace n
    WHERE r.rolname = ANY(%s) AND n.nspname = current_schema()
      AND pg_has_role(n.nspowner, 'USAGE') AND NOT has_schema_privilege(r.rolname, n.oid, 'USAGE')
"""


def grant_privileges(cur) -> int:
    """Grant ``PRIVILEGES`` to those of its roles that exist; return how many grants were made.

    cur: a cursor inside ``migrate``'s transaction. Runs on every ``migrate``, so roles created
    after the tables (an existing deployment splitting its connections) get their privileges
    from the next ``create_tables`` run. Only missing privileges are granted, so the usual run
    changes no catalog row. Objects the current role does not own, and roles that do not exist,
    are skipped: a deployment with one connection needs no role at all. Usage of the current
    schema is granted too when the current role owns it.
    """
    rows = [
        (role, name, privilege)
        for role, objects in PRIVILEGES.items()
        for name, privileges in objects.items()
        for privilege in privileges
    ]
    cur.execute(_MISSING_PRIVILEGES, [list(column) for column in zip(*rows, strict=True)])
    missing = cur.fetchall()
    for role, name, privilege, is_function in missing:
        kind = sql.SQL("FUNCTION") if is_function else sql.SQL("TABLE")
        # function signatures come from PRIVILEGES, not from anyone's input
        target = sql.SQL(name) if is_function else sql.Identifier(name)
        cur.execute(
            sql.SQL("GRANT {} ON {} {} TO {}").format(
                sql.SQL(privilege), kind, target, sql.Identifier(role)
            )
        )
    cur.execute(_MISSING_USAGE, (list(PRIVILEGES),))
    usage = cur.fetchall()
    for role, schema in usage:
        cur.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)
            )
        )
    granted = len(missing) + len(usage)
    if granted:
        roles = sorted({row[0] for row in missing} | {row[0] for row in usage})
        log.info("grant_privileges: granted=%s roles=%s", granted, ",".join(roles))
    return granted


def version(conn) -> int:
    """The schema version in force in ``conn``'s current schema; 0 when none was ever applied.

    Raises StorageError when PostgreSQL fails.
    """
    with transaction(conn, "could not read the sitewatch schema version") as cur:
        cur.execute("SELECT to_regclass('sitewatch_schema_version') IS NOT NULL")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT coalesce(max(version), 0) FROM sitewatch_schema_version")
        return cur.fetchone()[0]


def require_current(conn) -> int:
    """Check that the schema is at least at ``SCHEMA_VERSION``, without changing it.

    For readers that must not migrate. Returns the version; raises SchemaError saying which DAG
    creates or upgrades the tables, or StorageError when PostgreSQL fails.
    """
    current = version(conn)
    if current < SCHEMA_VERSION:
        state = "do not exist yet" if current == 0 else f"are at version {current}"
        raise SchemaError(
            f"the sitewatch tables {state}; this code needs version {SCHEMA_VERSION}. "
            f"Unpause DAG {DRAIN_DAG_ID} (task create_tables) or {MAINTENANCE_DAG_ID}, "
            "which create and upgrade them"
        )
    return current


@contextmanager
def transaction(conn, failure: str | Callable[[], str]) -> Iterator:
    """Yield a cursor inside one transaction; commit on success, roll back on any error.

    An autocommit connection is switched off for the duration (and restored), since every caller
    needs its statements to be all-or-nothing. The cursor returns tuples whatever row factory the
    connection has (a Connection extra can give PostgresHook's connections dict rows). A
    ``psycopg.Error`` becomes ``StorageError("PostgreSQL <failure>: <cause>")`` (``failure`` may
    be a function, called then); other exceptions pass through unchanged.
    """
    autocommit = conn.autocommit
    try:
        if autocommit:
            conn.autocommit = False
        with conn.cursor(row_factory=tuple_row) as cur:
            yield cur
        conn.commit()
    except psycopg.Error as exc:
        _rollback(conn)
        cause = " ".join(str(exc).split()) or type(exc).__name__
        what = failure() if callable(failure) else failure
        raise StorageError(f"PostgreSQL {what}: {cause}") from exc
    except BaseException:
        _rollback(conn)
        raise
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True


def _rollback(conn) -> None:
    # A broken connection cannot roll back, but the server already discarded the transaction;
    # the original error is the one worth reporting.
    if conn.closed:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        log.debug("rollback failed after an earlier error", exc_info=True)
    # The server gone in the middle of a COPY leaves psycopg's connection open but stuck in it
    # (libpq notices only at the next read): closed here, so that callers who reconnect when
    # ``conn.closed`` do, instead of failing on it batch after batch.
    if conn.info.transaction_status != TransactionStatus.IDLE:
        conn.close()
