-- 0002: what the EHR holds for a row beyond its primary resource, and a
-- small key-value table for the engine's own state.
--
-- sent_hash is the hash of the FHIR content last delivered (store.Record.
-- SentHash); derived is the list of keys of the derived resources the EHR
-- holds as current data for the row (store.Record.Derived), as a JSON array
-- of strings, '' meaning none. Both default to '' so existing rows need no
-- backfill.
--
-- ALTER TABLE ADD COLUMN appends, so these two columns come after payload
-- (0001 keeps payload last so that reading the small columns never touches
-- a large payload's overflow pages). Every query that reads them reads the
-- payload too (recordCols), and an UPDATE rewrites the whole row anyway, so
-- the order costs nothing today; a query that would read them without the
-- payload should rebuild the table first.
ALTER TABLE outbox ADD COLUMN sent_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN derived   TEXT NOT NULL DEFAULT '';

-- meta: the engine's durable settings (a mapping fingerprint, say), one
-- value per key. Never record data: keys and values are not PHI.
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
