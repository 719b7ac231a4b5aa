-- 0001: the outbox table and the indexes its queries need.
--
-- Times are integer Unix nanoseconds (UTC); 0 means "not set". Text columns
-- are never NULL ('' means "not set"), so rows scan without NULL handling.
-- payload is the last column: SQLite stores columns in order, so reading the
-- small columns never touches a large payload's overflow pages.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    local_id        TEXT    NOT NULL,
    -- Claim order: dependencies first (Patient before MedicationRequest
    -- before MedicationAdministration before Observation); unknown kinds
    -- last. Set by the driver from kind (see kindRank); a plain column, not a
    -- generated one, because SQLite does not treat an index on a generated
    -- column as covering.
    kind_rank       INTEGER NOT NULL,
    hash            TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN
                        ('pending', 'waiting', 'in_flight', 'retrying', 'synced', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT    NOT NULL DEFAULT '',
    lease_expires   INTEGER NOT NULL DEFAULT 0,
    wait_kind       TEXT    NOT NULL DEFAULT '',
    wait_id         TEXT    NOT NULL DEFAULT '',
    error_class     TEXT    NOT NULL DEFAULT '',
    error_detail    TEXT    NOT NULL DEFAULT '',
    ehr_id          TEXT    NOT NULL DEFAULT '',
    ehr_version     TEXT    NOT NULL DEFAULT '',
    synced_hash     TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    synced_at       INTEGER NOT NULL DEFAULT 0,
    payload         BLOB    NOT NULL,
    UNIQUE (kind, local_id)
);

-- Claim: deliverable rows in kind rank, then id order. Partial, so synced and
-- dead rows (most of a mature outbox) cost nothing; covering, so the scan
-- reads no table rows.
CREATE INDEX outbox_claim ON outbox (kind_rank, id, state, next_attempt_at)
    WHERE state IN ('pending', 'retrying');

-- Finish(synced): wake the rows waiting on (kind, local_id).
CREATE INDEX outbox_waiters ON outbox (wait_kind, wait_id)
    WHERE state = 'waiting';

-- Rescue: expired leases.
CREATE INDEX outbox_leases ON outbox (lease_expires)
    WHERE state = 'in_flight';

-- List: rows of a state by id. OldestPending too: ids grow with creation
-- time, so the first row of a state by id is its oldest. (An index on
-- (state, created_at) would be exact under a clock stepped backwards, at the
-- price of one more index written by every state change.)
CREATE INDEX outbox_state_id ON outbox (state, id);

-- Counts: GROUP BY kind, state from the index alone.
CREATE INDEX outbox_kind_state ON outbox (kind, state);
