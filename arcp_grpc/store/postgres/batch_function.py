"""The group commit's server-side function, `arcp_write_batch_v1`: a batch's data in one
statement (`batch_statements` sends it; issue 21).

Most of what a node writes is data, not logic: a job's creation (with its idempotency
claim and its cap), its events and end, a session's frames and the jobs it follows.
Sent as statements, each was a round trip of its own (and an explicit transaction
around them two more, and the transaction id a third); each round trip costs the node
and the server more CPU than the statement itself (~60 µs each side, against 10–40 µs
of execution). This function takes a batch's data as arrays and applies it in order
(jobs, events, ends, follows, frames, the wake-up notification), each with the fence it
had as a statement (issue 20), and answers what it wrote, one row per thing: a batch
made only of data is one round trip and one commit, with no explicit transaction.

Such a batch has no transaction id to look up if its answer is lost, so the function is
safe to apply again instead: with `again` (the writer's retry after a reconnect), a row
already stored with the same bytes counts as written by this call (a job by its id), so
the retry answers what the lost attempt did, and nothing is written twice (the unique
keys). An end recorded with the same outcome already counts as this end. A frame or
event refused by its fence is never counted, so what is not stored is never sent.

Every statement reaches rows by their primary key alone (a test of a partial index's
column, such as owner_node or completed_at, is made on the row found, never in the
lookup), and the plans are generic: a generic plan of a set-wise join once walked the
index of every running job for each end (100 µs in the database, now 35).

The name carries a version: a node of a later release that needs another shape creates
`…_v2` beside it, and nodes of both releases run side by side.
"""

from __future__ import annotations

__all__ = ["BATCH_FUNCTION", "EVENTS_CHANNEL", "SLOT_LOCKS"]

EVENTS_CHANNEL = "arcp_events"
SLOT_LOCKS = 0x41524351  # the advisory-lock class of the per-principal slot locks

BATCH_FUNCTION = """
CREATE OR REPLACE FUNCTION arcp_write_batch_v1(
    node TEXT, again BOOLEAN,
    cr_job TEXT[], cr_principal TEXT[], cr_agent TEXT[], cr_status INTEGER[],
    cr_created_at DOUBLE PRECISION[], cr_trace_id TEXT[], cr_parent TEXT[], cr_summary BYTEA[],
    cr_accepted BYTEA[], cr_last_seq INTEGER[], cr_completed_at DOUBLE PRECISION[],
    cr_outcome BYTEA[], cr_owner TEXT[], cr_cap INTEGER[], cr_claimant TEXT[], cr_key TEXT[],
    cr_fingerprint BYTEA[], cr_expires DOUBLE PRECISION[], cr_now DOUBLE PRECISION[],
    ev_job TEXT[], ev_seq INTEGER[], ev_blob BYTEA[], ev_sealed BOOLEAN[],
    fin_job TEXT[], fin_status INTEGER[], fin_outcome BYTEA[], fin_summary BYTEA[],
    fin_at DOUBLE PRECISION[], fin_last INTEGER[],
    fol_session TEXT[], fol_job TEXT[], fol_submitted BOOLEAN[], fol_after INTEGER[],
    fr_session TEXT[], fr_seq INTEGER[], fr_job TEXT[], fr_job_seq INTEGER[],
    fr_terminal BOOLEAN[], fr_frame BYTEA[],
    payloads TEXT[]
) RETURNS TABLE (kind TEXT, key TEXT, seq INTEGER, other TEXT, blob BYTEA)
LANGUAGE plpgsql
-- Rows by their primary key (the module's docstring); sequential scans priced out.
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
    held TEXT[];
    k_session TEXT[];
    k_seq INTEGER[];
    t_session TEXT[];
    t_job TEXT[];
    owner TEXT;
    ended DOUBLE PRECISION;
    recorded BYTEA;
    i INTEGER;
    payload TEXT;
    won TEXT;
    holder TEXT;
    print BYTEA;
    made BOOLEAN;
    running BIGINT;
    alive BOOLEAN := FALSE;
BEGIN
    -- The slot locks of the capped principals first, in key order (`lock_slots`; in a
    -- transaction the writer took them already, and taking one again is free).
    IF cardinality(cr_job) > 0 THEN
        PERFORM pg_advisory_xact_lock(@SLOTS@, keys.k) FROM (SELECT DISTINCT hashtext(c.p) AS k
            FROM unnest(cr_principal, cr_cap) AS c(p, cap) WHERE c.cap IS NOT NULL) AS keys
        ORDER BY keys.k;
    END IF;
    -- Whether this node is alive, read once for the jobs and frames that need it. FOR
    -- SHARE holds its row until the commit: a survivor declaring it dead waits for this
    -- call, or goes first and the call writes none of them. Taken after the slot locks and
    -- before any job's row, in the order a takeover takes them (node, then jobs).
    IF cardinality(cr_job) > 0 OR cardinality(fr_session) > 0 THEN
        alive := EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = node AND n.state = 'alive'
                         FOR SHARE);
    END IF;
    -- Jobs, each with its idempotency claim (§7.2), only while this node is alive (a
    -- survivor declaring it dead waits for the job to exist, then takes it over), and
    -- under its principal's cap of running jobs on every node. A refusal writes nothing
    -- of the job and answers why: 'C' a conflicting claim (its job and
    -- fingerprint), 'o' the cap (the count), 'n' this node is not alive.
    FOR i IN 1 .. coalesce(cardinality(cr_job), 0) LOOP
        IF again AND EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = cr_job[i]) THEN
            RETURN QUERY SELECT 'c', cr_job[i], 0, NULL::TEXT, NULL::BYTEA;  -- the lost attempt's
            CONTINUE;
        END IF;
        IF cr_key[i] IS NOT NULL THEN
            DELETE FROM idempotency d WHERE d.principal = cr_claimant[i] AND d.key = cr_key[i]
            AND d.expires_at <= cr_now[i];
            won := NULL;
            -- The unique key decides between concurrent submits on any node: a second
            -- inserter waits for the first's commit, then finds its row.
            INSERT INTO idempotency (principal, key, fingerprint, job_id, expires_at)
            SELECT cr_claimant[i], cr_key[i], cr_fingerprint[i], cr_job[i], cr_expires[i]
            WHERE alive
            ON CONFLICT DO NOTHING RETURNING idempotency.job_id INTO won;
            IF won IS NULL THEN
                holder := NULL;
                SELECT d.job_id, d.fingerprint INTO holder, print FROM idempotency d
                WHERE d.principal = cr_claimant[i] AND d.key = cr_key[i];
                IF holder IS NULL THEN
                    RETURN QUERY SELECT 'n', cr_job[i], 0, NULL::TEXT, NULL::BYTEA;
                ELSE
                    RETURN QUERY SELECT 'C', cr_job[i], 0, holder, print;
                END IF;
                CONTINUE;
            END IF;
        END IF;
        made := NULL;
        INSERT INTO jobs (job_id, principal, agent, status, created_at, trace_id,
            parent_job_id, summary, accepted, last_seq, completed_at, outcome, owner_node)
        SELECT cr_job[i], cr_principal[i], cr_agent[i], cr_status[i], cr_created_at[i],
            cr_trace_id[i], cr_parent[i], cr_summary[i], cr_accepted[i], cr_last_seq[i],
            cr_completed_at[i], cr_outcome[i], cr_owner[i]
        WHERE alive
        AND (cr_cap[i] IS NULL OR (SELECT count(*) FROM jobs j
             WHERE j.principal = cr_principal[i] AND j.completed_at IS NULL) < cr_cap[i])
        RETURNING TRUE INTO made;
        IF made THEN
            RETURN QUERY SELECT 'c', cr_job[i], 0, NULL::TEXT, NULL::BYTEA;
            CONTINUE;
        END IF;
        IF cr_key[i] IS NOT NULL THEN  -- the claim taken above goes with the job
            DELETE FROM idempotency d WHERE d.principal = cr_claimant[i] AND d.key = cr_key[i]
            AND d.job_id = cr_job[i];
        END IF;
        SELECT count(*) INTO running FROM jobs j
        WHERE j.principal = cr_principal[i] AND j.completed_at IS NULL;
        IF cr_cap[i] IS NOT NULL AND running >= cr_cap[i] THEN
            RETURN QUERY SELECT 'o', cr_job[i], running::INTEGER, NULL::TEXT, NULL::BYTEA;
        ELSE
            RETURN QUERY SELECT 'n', cr_job[i], 0, NULL::TEXT, NULL::BYTEA;
        END IF;
    END LOOP;
    -- Events, only while their job is this node's and running (FOR SHARE: a takeover
    -- in flight waits for this insert, or this insert sees its result).
    IF cardinality(ev_job) > 0 THEN
        RETURN QUERY
        WITH v AS (SELECT * FROM unnest(ev_job, ev_seq, ev_blob, ev_sealed)
                   AS v(job_id, seq, blob, sealed)),
        ins AS (INSERT INTO events (job_id, seq, blob, sealed)
                SELECT v.job_id, v.seq, v.blob, v.sealed FROM v
                WHERE (SELECT j.owner_node = node AND j.completed_at IS NULL FROM jobs j
                       WHERE j.job_id = v.job_id FOR SHARE)
                ON CONFLICT DO NOTHING RETURNING events.job_id, events.seq)
        SELECT 'e', ins.job_id, ins.seq, NULL::TEXT, NULL::BYTEA FROM ins
        UNION ALL SELECT 'e', v.job_id, v.seq, NULL, NULL FROM v WHERE again
        AND (SELECT e.blob FROM events e WHERE e.job_id = v.job_id AND e.seq = v.seq) = v.blob;
    END IF;
    -- Ends: only the owner finishes a job; this very end recorded already counts.
    FOR i IN 1 .. coalesce(cardinality(fin_job), 0) LOOP
        SELECT j.owner_node, j.completed_at, j.outcome INTO owner, ended, recorded
        FROM jobs j WHERE j.job_id = fin_job[i] FOR UPDATE;
        IF owner = node AND ended IS NULL THEN
            UPDATE jobs SET status = fin_status[i], outcome = fin_outcome[i],
                summary = fin_summary[i], completed_at = fin_at[i], last_seq = fin_last[i]
            WHERE job_id = fin_job[i];
            RETURN QUERY SELECT 'f', fin_job[i], 0, NULL::TEXT, NULL::BYTEA;
        ELSIF owner = node AND recorded = fin_outcome[i] THEN
            RETURN QUERY SELECT 'f', fin_job[i], 0, NULL::TEXT, NULL::BYTEA;
        END IF;
    END LOOP;
    -- Follows, of sessions that still exist (KEY SHARE: a delete in flight goes first).
    IF cardinality(fol_session) > 0 THEN
        INSERT INTO session_jobs (session_id, job_id, submitted, after_seq)
        SELECT v.session_id, v.job_id, v.submitted, v.after_seq
        FROM unnest(fol_session, fol_job, fol_submitted, fol_after)
             AS v(session_id, job_id, submitted, after_seq)
        WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = v.session_id
                      FOR KEY SHARE)
        ON CONFLICT (session_id, job_id) DO UPDATE
        SET submitted = session_jobs.submitted OR EXCLUDED.submitted, done = FALSE;
    END IF;
    -- Frames, of sessions this node holds while alive, carrying what the store holds.
    IF cardinality(fr_session) > 0 THEN
        held := ARRAY(SELECT s.session_id FROM sessions s WHERE s.session_id = ANY(fr_session)
                      AND s.node_id = node AND alive FOR UPDATE);
        RETURN QUERY SELECT 'h', h, 0, NULL::TEXT, NULL::BYTEA FROM unnest(held) AS h;
        WITH v AS (SELECT * FROM unnest(fr_session, fr_seq, fr_job, fr_job_seq, fr_terminal,
                   fr_frame) AS v(session_id, seq, job_id, job_seq, terminal, frame)
                   WHERE v.session_id = ANY(held)),
        ins AS (INSERT INTO session_frames (session_id, seq, job_id, job_seq, frame)
                SELECT v.session_id, v.seq, v.job_id, v.job_seq, v.frame FROM v
                WHERE v.job_id = ''
                OR (v.terminal AND (SELECT j.completed_at FROM jobs j
                    WHERE j.job_id = v.job_id) IS NOT NULL)
                OR (NOT v.terminal AND (v.job_seq = 0 OR EXISTS (SELECT 1 FROM events e
                    WHERE e.job_id = v.job_id AND e.seq = v.job_seq)))
                ON CONFLICT DO NOTHING
                RETURNING session_frames.session_id, session_frames.seq),
        kept AS (SELECT ins.session_id, ins.seq FROM ins
                 UNION ALL SELECT v.session_id, v.seq FROM v WHERE again
                 AND (SELECT f.frame FROM session_frames f WHERE f.session_id = v.session_id
                      AND f.seq = v.seq) = v.frame)
        SELECT array_agg(kept.session_id), array_agg(kept.seq) INTO k_session, k_seq FROM kept;
        IF k_session IS NOT NULL THEN
            RETURN QUERY SELECT 'k', k.s, k.q, NULL::TEXT, NULL::BYTEA
            FROM unnest(k_session, k_seq) AS k(s, q);
            UPDATE sessions s SET last_seq = GREATEST(s.last_seq, (SELECT max(k.q)
                FROM unnest(k_session, k_seq) AS k(s, q) WHERE k.s = s.session_id))
            WHERE s.session_id = ANY(k_session);
            -- A recorded terminal frame ends its session's follow of the job.
            SELECT array_agg(v.session_id), array_agg(v.job_id) INTO t_session, t_job
            FROM unnest(fr_session, fr_seq, fr_job, fr_terminal)
                 AS v(session_id, seq, job_id, terminal)
            WHERE v.terminal AND (v.session_id, v.seq) IN
                  (SELECT * FROM unnest(k_session, k_seq));
            FOR i IN 1 .. coalesce(cardinality(t_session), 0) LOOP
                UPDATE session_jobs SET done = TRUE
                WHERE session_id = t_session[i] AND job_id = t_job[i];
            END LOOP;
        END IF;
    END IF;
    IF payloads IS NOT NULL THEN
        FOREACH payload IN ARRAY payloads LOOP
            PERFORM pg_notify('@CHANNEL@', payload);
        END LOOP;
    END IF;
    -- The transaction's id when the caller runs one (NULL if nothing was written).
    RETURN QUERY SELECT 'x', txid_current_if_assigned()::TEXT, 0, NULL::TEXT, NULL::BYTEA;
END
$fn$;
""".replace("@CHANNEL@", EVENTS_CHANNEL).replace("@SLOTS@", str(SLOT_LOCKS))
