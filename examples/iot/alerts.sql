-- The table the alerts-db sink (connectors.fn.hcl) writes: one row per
-- alert, its event id the primary key, so that a record delivered twice
-- is one row.
CREATE TABLE IF NOT EXISTS alerts (
  event_id text PRIMARY KEY,
  device   text NOT NULL,
  from_c   double precision,
  to_c     double precision
);
