-- Schema version 1 exactly as migration 1 created it, frozen: the upgrade test builds an old
-- database from it (`migrations::tests` checks it still equals migration 1).
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL UNIQUE,
    default_branch TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    branch TEXT NOT NULL,
    base TEXT NOT NULL,
    state TEXT NOT NULL,
    state_name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    technical INTEGER NOT NULL,
    worktree TEXT,
    doc_path TEXT NOT NULL,
    port INTEGER NOT NULL,
    review_rounds INTEGER NOT NULL DEFAULT 0,
    runs_started INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX tasks_state ON tasks(state_name);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    session TEXT,
    token_hash TEXT UNIQUE,
    mark TEXT NOT NULL,
    pending_input TEXT,
    signal TEXT,
    reason TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    ended_at INTEGER,
    spawned_us INTEGER,
    exited_us INTEGER,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX runs_task ON runs(task_id, id);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE events (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX events_task ON events(task_id, run_id, seq);
CREATE TABLE signals (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    task_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id),
    kind TEXT NOT NULL,
    idem_key TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at INTEGER,
    outcome TEXT
);
CREATE TABLE pull_requests (
    task_id INTEGER PRIMARY KEY REFERENCES tasks(id),
    url TEXT NOT NULL,
    branch TEXT NOT NULL,
    base TEXT NOT NULL,
    remote TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    merged INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
