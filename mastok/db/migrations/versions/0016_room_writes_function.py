"""mastok_room_writes(): a batch of the rooms' writes in one call (PostgreSQL)

The rooms' writes of a batch, every room's, in order, went to PostgreSQL one statement a round
trip, between a BEGIN and a COMMIT of their own, and the leader's term read first: five to seven
round trips a batch, each a wait for mastok's busy loop. This function takes them all, as a
JSON array, and runs them one after the other as the statements did (each sees those before
it), in the one statement's transaction, the term read first with a share lock on its row
(mastok/live/postgres_writes.py says what each write carries).

The columns are listed here, not read from the keys each write sends: the statements' plans are
then kept (a statement built at each call is planned at each call), and a key the function does
not know is refused rather than dropped. A migration that adds a column the rooms write
replaces the function with one that knows it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 06:00:00.000000
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_CREATE = """
CREATE FUNCTION mastok_room_writes(expected_term bigint, writes jsonb) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    write jsonb;
    held bigint;
    moment timestamptz;
    added integer;
    recorded integer[] := '{}';
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
            WHERE p.token IN (SELECT jsonb_array_elements_text(write->'tokens'));
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
            UPDATE participants AS p SET
                step = write->>'step', session_id = added, otree_code = a.otree_code,
                start_url = a.start_url, outcome = write->>'outcome', ended_at = moment,
                updated_at = moment
            FROM jsonb_to_recordset(write->'assignments') AS a(token text, otree_code text,
                                                                start_url text)
            WHERE p.token = a.token;
            UPDATE campaigns SET
                started_sessions = started_sessions + 1, session_asked = NULL,
                state = COALESCE(write->>'state', state), updated_at = moment
            WHERE id = (write->>'campaign_id')::integer;
            recorded := recorded || added;
        WHEN 'ended' THEN
            UPDATE sessions SET finished_at = moment
            WHERE campaign_id = (write->>'campaign_id')::integer
              AND number IN (SELECT jsonb_array_elements_text(write->'numbers')::integer);
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
