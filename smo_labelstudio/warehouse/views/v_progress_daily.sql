-- v_progress_daily: see docs/data_dictionary.md
with daily as (
    select project, coalesce(language, '(all)') as language, day, count(*) as answers
    from annotations where not was_cancelled
    group by grouping sets ((project, language, day), (project, day))
), targets as (
    select project, coalesce(language, '(all)') as language,
           cast(sum(target_answers) as bigint) as target_answers
    from tasks group by grouping sets ((project, language), (project))
), running as (
    select project, language, day, answers,
           cast(sum(answers) over (partition by project, language order by day
                                   rows between unbounded preceding and current row) as bigint)
               as cumulative_answers,
           avg(cast(answers as float8)) over (partition by project, language order by day
                                              rows between 6 preceding and current row) as rate
    from daily
)
select r.project, r.language, r.day, r.answers, r.cumulative_answers, t.target_answers,
       greatest(t.target_answers - r.cumulative_answers, 0) as remaining_answers,
       round(cast(r.rate as numeric(18,6)), 2) as answers_per_day_7d,
       cast(ceil(greatest(t.target_answers - r.cumulative_answers, 0) / nullif(r.rate, 0)) as integer)
           as eta_days,
       r.day + cast(ceil(greatest(t.target_answers - r.cumulative_answers, 0) / nullif(r.rate, 0))
                    as integer) as eta_date
from running r join targets t on t.project = r.project and t.language = r.language
