-- v_eta: see docs/data_dictionary.md
select project, language, day as as_of, cumulative_answers, target_answers, remaining_answers,
       answers_per_day_7d, eta_days, eta_date
from (select *, row_number() over (partition by project, language order by day desc) as latest
      from v_progress_daily) p
where latest = 1
