"""mastok_room_writes() finds the rows it writes by their unique indexes (PostgreSQL)

Each write of the function touches a few rows by a unique key (participants by token, a
campaign by id, sessions by campaign and number), yet PostgreSQL's plans for migration 0016's
function read whole tables, for two reasons. It matched a write's participants against a set
read from its JSON (`token IN (SELECT jsonb_array_elements_text(...))`, a join with
`jsonb_to_recordset(...)`), which the planner takes for 100 rows whatever the JSON holds:
against 100 tokens it chose to read the whole participants table and hash it (EXPLAIN at
1,000, 5,000 and 25,000 participants stored). The tokens are now an array matched with
`= ANY`, which it takes for about 10, and sessions ended likewise by their numbers. And a
connection keeps the plans of a function's statements from its first calls: made while a
fresh database held a few participants, a plan reading the table kept reading it, every
participant of every campaign, until an ANALYZE replaced it (a minute or more later, and
only when autovacuum got to it). The function now runs with `enable_seqscan` off, so that
no plan of it reads a table through: every statement in it has an index to use, which costs
a page or two more than reading a table of one page. In a benchmark's run (scenario 1, 26,000
participants stored by its end) the session's participants cost PostgreSQL 3.2 ms at each
session recorded, on average.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 14:00:00.000000
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_CREATE = """
CREATE OR REPLACE FUNCTION mastok_room_writes(expected_term bigint, writes jsonb) RETURNS integer[]
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    write jsonb;
    held bigint;
    moment timestamptz;
    added integer;
    recorded integer[] := '{}';
    tokens text[];
BEGIN
    IF expected_term IS NOT NULL THEN
        SELECT term INTO held FROM leader_term WHERE id = 1 FOR SHARE;
        IF held IS DISTINCT FROM expected_term THEN
            RAISE EXCEPTION 'another process leads: the leader''s term is %, this one''s %',
                held, expected_term USING ERRCODE = 'MKTRM';
        END IF;
    END IF;
    FOR write IN SELECT value FROM jsonb_array_elements(writes) LOOP
        moment := (write->>'at')::timestamptz;
        CASE write->>'write'
        WHEN 'add' THEN
            IF EXISTS (
                SELECT FROM jsonb_object_keys(write->'row') AS key
                WHERE key NOT IN ('campaign_id', 'token', 'browser_id', 'identity', 'step',
                                  'outcome', 'ended_at')
            ) THEN
                RAISE EXCEPTION 'a participant''s row with a column not known: %', write->'row';
            END IF;
            INSERT INTO participants (campaign_id, token, browser_id, identity, params, step,
                                      outcome, ended_at, created_at, updated_at)
            SELECT r.campaign_id, r.token, r.browser_id, r.identity, (write->>'params')::json,
                   r.step, r.outcome, r.ended_at, moment, moment
            FROM jsonb_populate_record(NULL::participants, write->'row') AS r;
        WHEN 'move' THEN
            tokens := ARRAY(SELECT jsonb_array_elements_text(write->'tokens'));
            IF EXISTS (
                SELECT FROM jsonb_object_keys(write->'values') AS key
                WHERE key NOT IN ('step', 'outcome', 'ended_at', 'consented_at', 'consent_hash',
                                  'group_label', 'queued_at', 'ready_at', 'waiting_limit_seconds')
            ) THEN
                RAISE EXCEPTION 'a move of a column not known: %', write->'values';
            END IF;
            UPDATE participants AS p SET
                step = CASE WHEN write->'values' ? 'step' THEN r.step ELSE p.step END,
                outcome = CASE WHEN write->'values' ? 'outcome' THEN r.outcome ELSE p.outcome END,
                ended_at = CASE WHEN write->'values' ? 'ended_at'
                    THEN r.ended_at ELSE p.ended_at END,
                consented_at = CASE WHEN write->'values' ? 'consented_at'
                    THEN r.consented_at ELSE p.consented_at END,
                consent_hash = CASE WHEN write->'values' ? 'consent_hash'
                    THEN r.consent_hash ELSE p.consent_hash END,
                group_label = CASE WHEN write->'values' ? 'group_label'
                    THEN r.group_label ELSE p.group_label END,
                queued_at = CASE WHEN write->'values' ? 'queued_at'
                    THEN r.queued_at ELSE p.queued_at END,
                ready_at = CASE WHEN write->'values' ? 'ready_at'
                    THEN r.ready_at ELSE p.ready_at END,
                waiting_limit_seconds = CASE WHEN write->'values' ? 'waiting_limit_seconds'
                    THEN r.waiting_limit_seconds ELSE p.waiting_limit_seconds END,
                updated_at = moment
            FROM jsonb_populate_record(NULL::participants, write->'values') AS r
            WHERE p.token = ANY (tokens);
        WHEN 'ask' THEN
            UPDATE campaigns SET session_asked = (write->>'number')::integer, updated_at = moment
            WHERE id = (write->>'campaign_id')::integer;
        WHEN 'record' THEN
            INSERT INTO sessions (campaign_id, created_at, number, mastok_id, otree_code,
                                  admin_url, size)
            VALUES ((write->>'campaign_id')::integer, moment, (write->>'number')::integer,
                    write->>'mastok_id', write->>'otree_code', write->>'admin_url',
                    jsonb_array_length(write->'assignments'))
            RETURNING id INTO added;
            tokens := ARRAY(SELECT jsonb_array_elements(write->'assignments')->>'token');
            UPDATE participants AS p SET
                step = write->>'step', session_id = added, otree_code = a.otree_code,
                start_url = a.start_url, outcome = write->>'outcome', ended_at = moment,
                updated_at = moment
            FROM jsonb_to_recordset(write->'assignments') AS a(token text, otree_code text,
                                                                start_url text)
            WHERE p.token = ANY (tokens) AND p.token = a.token;
            UPDATE campaigns SET
                started_sessions = started_sessions + 1, session_asked = NULL,
                state = COALESCE(write->>'state', state), updated_at = moment
            WHERE id = (write->>'campaign_id')::integer;
            recorded := recorded || added;
        WHEN 'ended' THEN
            UPDATE sessions SET finished_at = moment
            WHERE campaign_id = (write->>'campaign_id')::integer
              AND number = ANY (
                  ARRAY(SELECT jsonb_array_elements_text(write->'numbers')::integer));
        END CASE;
    END LOOP;
    RETURN recorded;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION mastok_room_writes(bigint, jsonb)")
        op.execute(_migration_0016()._CREATE)


def _migration_0016() -> ModuleType:
    """Migration 0016's module: its function is the one this one replaced."""
    path = Path(__file__).with_name("0016_room_writes_function.py")
    spec = importlib.util.spec_from_file_location("mastok_migration_0016", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
