-- v_preannotation_acceptance: see docs/data_dictionary.md
select project, day, coalesce(language, '(all)') as language, prediction_model_version as model_version,
       count(*) as answers,
       count(*) filter (where not was_cancelled and changed_prediction = false) as accepted,
       count(*) filter (where not was_cancelled and changed_prediction = true) as changed,
       count(*) filter (where was_cancelled) as skipped,
       round(cast(cast(count(*) filter (where not was_cancelled and changed_prediction = false) as float8) / nullif(count(*), 0) as numeric(18,6)), 4) as acceptance_rate
from annotations where prediction_model_version is not null
group by grouping sets ((project, day, language, prediction_model_version),
                        (project, day, prediction_model_version))
