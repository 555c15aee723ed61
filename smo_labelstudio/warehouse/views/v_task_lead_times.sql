-- v_task_lead_times: see docs/data_dictionary.md
select project, external_id, language, is_gold, state, answers, target_answers,
       cast(first_answer_at as date) as first_day,
       round(cast(extract(epoch from (last_answer_at - first_answer_at)) / 3600.0 as numeric(18,6)), 3) as hours_first_to_last
from tasks where first_answer_at is not null
