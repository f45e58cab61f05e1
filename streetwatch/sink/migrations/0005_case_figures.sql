-- The field's figures over the shipped case events (`streetwatch cases stats` in SQL), as plain
-- views in both modes: the percentiles need each case's row, which a continuous aggregate
-- cannot keep, and the case events are few next to the readings.
--
-- case_disposal: one row per box and case: when it opened, when the box saw the situation end
-- (`cleared`), when the case system reported it put right (`rectified`), the disposal time (to
-- the earlier of the two), its escalations, and whether it was a repeat or rejected. A case
-- disposed of without an escalation was disposed of within its deadline (an escalation is
-- the deadline passing with the case still open).
CREATE OR REPLACE VIEW case_disposal AS
SELECT origin,
       case_id,
       max(rule_id) AS rule_id,
       max(zone_id) AS zone_id,
       min(ts) FILTER (WHERE event = 'opened') AS opened_at,
       min(ts) FILTER (WHERE event = 'cleared') AS cleared_at,
       min(ts) FILTER (WHERE event = 'rectified') AS rectified_at,
       least(min(ts) FILTER (WHERE event = 'cleared'),
             min(ts) FILTER (WHERE event = 'rectified')) AS disposed_at,
       extract(epoch FROM least(min(ts) FILTER (WHERE event = 'cleared'),
                                min(ts) FILTER (WHERE event = 'rectified'))
                          - min(ts) FILTER (WHERE event = 'opened'))::double precision
           AS disposal_s,
       count(*) FILTER (WHERE event = 'escalated') AS escalations,
       bool_or(event = 'repeat') AS repeat,
       bool_or(event = 'rejected') AS rejected
FROM case_events
WHERE event <> 'audit'
GROUP BY origin, case_id;

-- case_figures_daily: per box, rule and day (UTC) of opening: cases opened, cleared by the box,
-- rectified by the case system, disposal p50/p90 in seconds, disposed within the deadline,
-- escalations, repeats and reviewer rejections. Sum over days for a month.
CREATE OR REPLACE VIEW case_figures_daily AS
SELECT origin,
       rule_id,
       date_trunc('day', opened_at, 'UTC') AS day,
       count(*) AS opened,
       count(cleared_at) AS cleared_by_box,
       count(rectified_at) AS rectified,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY disposal_s)
           FILTER (WHERE NOT rejected) AS disposal_p50_s,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY disposal_s)
           FILTER (WHERE NOT rejected) AS disposal_p90_s,
       count(*) FILTER (WHERE disposed_at IS NOT NULL AND escalations = 0 AND NOT rejected)
           AS within_deadline,
       sum(escalations)::bigint AS escalations,
       count(*) FILTER (WHERE repeat) AS repeats,
       count(*) FILTER (WHERE rejected) AS rejected
FROM case_disposal
WHERE opened_at IS NOT NULL
GROUP BY origin, rule_id, date_trunc('day', opened_at, 'UTC');
