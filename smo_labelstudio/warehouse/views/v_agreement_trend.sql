-- v_agreement_trend: see docs/data_dictionary.md
with per_policy as (
    select project, day, language, policy, n_pairs, agreeing_pairs from agreement_task_label
    where n_annotators >= 2
    union all
    select project, day, language, '(policy set)' as policy, n_pairs, agreeing_pairs from agreement_task
    where n_annotators >= 2
)
select project, day, coalesce(language, '(all)') as language, policy, count(*) as tasks,
       cast(sum(n_pairs) as bigint) as pairs, cast(sum(agreeing_pairs) as bigint) as agreeing_pairs,
       round(cast(cast(sum(agreeing_pairs) as float8) / nullif(sum(n_pairs), 0) as numeric(18,6)), 4) as pair_agreement
from per_policy
group by grouping sets ((project, day, language, policy), (project, day, policy))
