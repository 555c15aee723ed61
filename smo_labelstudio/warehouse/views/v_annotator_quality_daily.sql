-- v_annotator_quality_daily: see docs/data_dictionary.md
with base as (
    select project, annotator, day, coalesce(language, '(all)') as language,
           cast(sum(answers) as bigint) as answers, cast(sum(gold_n) as bigint) as gold_n,
           cast(sum(gold_correct) as bigint) as gold_correct,
           cast(sum(consensus_n) as bigint) as consensus_n,
           cast(sum(consensus_agree) as bigint) as consensus_agree
    from annotator_daily
    group by grouping sets ((project, annotator, day, language), (project, annotator, day))
), n as (
    select *, cast(nullif(gold_n, 0) as float8) as g, cast(nullif(consensus_n, 0) as float8) as c from base
)
select project, annotator, day, language, answers, gold_n, gold_correct,
       round(cast(gold_correct / g as numeric(18,6)), 4) as gold_accuracy,
       round(cast(((cast(gold_correct as float8) / g) + 1.9208 / g - 1.96 * sqrt((cast(gold_correct as float8) / g) * (1 - (cast(gold_correct as float8) / g)) / g + 0.9604 / (g * g))) / (1 + 3.8416 / g) as numeric(18,6)), 4) as gold_ci_low,
       round(cast(((cast(gold_correct as float8) / g) + 1.9208 / g + 1.96 * sqrt((cast(gold_correct as float8) / g) * (1 - (cast(gold_correct as float8) / g)) / g + 0.9604 / (g * g))) / (1 + 3.8416 / g) as numeric(18,6)), 4) as gold_ci_high,
       consensus_n, round(cast(consensus_agree / c as numeric(18,6)), 4) as consensus_agreement
from n
