-- 0003: each row's recent delivery attempts, for an operator's history of
-- a record (store.Store.History). One row per outcome that Finish,
-- FinishMany or Rescue recorded; the driver keeps the newest
-- store.HistoryLimit per outbox row. No payload and no local id: an
-- attempt names its row by outbox id only. error_detail may echo
-- submitted values, as outbox.error_detail may.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    record_id   INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    error_class TEXT    NOT NULL DEFAULT '',
    error_detail TEXT   NOT NULL DEFAULT '',
    wait_kind   TEXT    NOT NULL DEFAULT '',
    wait_id     TEXT    NOT NULL DEFAULT '',
    ehr_id      TEXT    NOT NULL DEFAULT '',
    ehr_version TEXT    NOT NULL DEFAULT '',
    request_id  TEXT    NOT NULL DEFAULT ''
);

-- History and pruning: a row's attempts by id.
CREATE INDEX attempts_record ON attempts (record_id, id);
