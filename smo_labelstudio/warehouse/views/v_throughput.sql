-- v_throughput: see docs/data_dictionary.md
select project, annotator, day, coalesce(language, '(all)') as language,
       count(*) filter (where not was_cancelled) as answers,
       count(*) filter (where was_cancelled) as skipped,
       round(cast(sum(case when was_cancelled then 0 else coalesce(lead_time, 0) end) / 3600.0 as numeric(18,6)), 4)
           as labeling_hours,
       round(cast(count(*) filter (where not was_cancelled) * 3600.0 / nullif(sum(case when was_cancelled then 0 else coalesce(lead_time, 0) end), 0) as numeric(18,6)), 2) as answers_per_labeling_hour,
       round(cast(percentile_cont(0.5) within group (order by case when was_cancelled then null else lead_time end) as numeric(18,6)), 2) as median_lead_time_s,
       round(cast(percentile_cont(0.9) within group (order by case when was_cancelled then null else lead_time end) as numeric(18,6)), 2) as p90_lead_time_s
from annotations
group by grouping sets ((project, annotator, day, language), (project, annotator, day))
