"""Agreement coefficients against independent implementations (to 1e-9) and published worked examples."""

from __future__ import annotations

import itertools
import json
import subprocess
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from smo_labelstudio.quality import (
    agreement_summary,
    bootstrap_ci,
    cohen_kappa_mean,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha,
    krippendorff_alpha_ci,
    masi_alpha,
    masi_distance,
    multilabel_agreement,
    pairwise_cohen_kappa,
    per_label_agreement,
    percent_agreement,
    span_agreement,
    span_f1,
)
from smo_labelstudio.stack.envs import BENCH_ENV

NAN = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12 units.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]

# Fleiss (1971): 30 patients, 6 psychiatrists each, 5 diagnoses (R irr's `diagnoses`, also in
# statsmodels' tests). Published kappa 0.430 (0.4302445 to 7 places).
FLEISS_1971 = [
    [4, 4, 4, 4, 4, 4],
    [2, 2, 2, 5, 5, 5],
    [2, 3, 3, 3, 3, 5],
    [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3],
    [3, 3, 3, 3, 5, 5],
    [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4],
    [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4],
    [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3],
    [1, 4, 4, 4, 4, 4],
    [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5],
    [1, 1, 1, 1, 1, 2],
    [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5],
    [2, 4, 4, 4, 4, 4],
    [2, 2, 4, 5, 5, 5],
    [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4],
    [1, 1, 1, 1, 5, 5],
    [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3],
    [5, 5, 5, 5, 5, 5],
]


def matrix_to_frame(matrix: list[list[float]], coders_in_rows: bool = True) -> pd.DataFrame:
    """A coders x units (or units x raters) matrix as a tidy frame; NaN cells become missing labels."""
    m = np.asarray(matrix, dtype=float)
    if not coders_in_rows:
        m = m.T
    coder, unit = np.indices(m.shape)
    return pd.DataFrame({"task": unit.ravel(), "annotator": [f"c{c}" for c in coder.ravel()], "label": m.ravel()})


def random_frame(
    seed: int, n_tasks: int = 80, n_annotators: int = 7, n_labels: int = 4, missing: float = 0.3, skew: bool = True
) -> pd.DataFrame:
    """Correlated random ratings with missing cells; every task keeps at least one label."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(
        n_labels, size=n_tasks, p=np.linspace(3, 1, n_labels) / np.linspace(3, 1, n_labels).sum() if skew else None
    )
    labels = np.where(
        rng.random((n_tasks, n_annotators)) < 0.6, truth[:, None], rng.integers(0, n_labels, (n_tasks, n_annotators))
    ).astype(float)
    labels[rng.random(labels.shape) < missing] = NAN
    labels[:, 0] = np.where(np.isnan(labels[:, 0]), truth, labels[:, 0])
    frame = matrix_to_frame(labels, coders_in_rows=False)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # order must not matter


# --- reference implementations written from the definitions, with plain loops ----------------


def alpha_reference(frame: pd.DataFrame, level: str) -> float:
    """Krippendorff's alpha by the pairwise definition: every ordered pair of values within a unit."""
    units = [g["label"].dropna().to_numpy(dtype=float) for _, g in frame.groupby("task")]
    units = [u for u in units if len(u) >= 2]
    values = np.concatenate(units)
    n = len(values)
    distinct, freq = np.unique(values, return_counts=True)
    nc = dict(zip(distinct, freq, strict=True))

    def delta(c: float, k: float) -> float:
        if level == "nominal":
            return float(c != k)
        if level == "interval":
            return (c - k) ** 2
        if level == "ratio":
            return 0.0 if c + k == 0 else ((c - k) / (c + k)) ** 2
        lo, hi = min(c, k), max(c, k)
        return (sum(nc[g] for g in distinct if lo <= g <= hi) - (nc[c] + nc[k]) / 2) ** 2

    observed = 0.0
    for u in units:
        for i, j in itertools.permutations(range(len(u)), 2):
            observed += delta(u[i], u[j]) / (len(u) - 1)
    expected = sum(delta(values[i], values[j]) for i in range(n) for j in range(n) if i != j)
    return 1 - (n - 1) * observed / expected


def table_by_task(frame: pd.DataFrame) -> list[list[float]]:
    return [g["label"].dropna().tolist() for _, g in frame.groupby("task")]


def ac1_reference(frame: pd.DataFrame) -> float:
    """Gwet (2014), multiple raters: p_a over tasks with >= 2 ratings, pi_k over all rated tasks."""
    tasks = [t for t in table_by_task(frame) if len(t) >= 1]
    categories = sorted({x for t in tasks for x in t})
    q = len(categories)
    pairable = [t for t in tasks if len(t) >= 2]
    p_a = np.mean([sum(t.count(k) * (t.count(k) - 1) for k in categories) / (len(t) * (len(t) - 1)) for t in pairable])
    pi = [np.mean([t.count(k) / len(t) for t in tasks]) for k in categories]
    p_e = sum(p * (1 - p) for p in pi) / (q - 1)
    return (p_a - p_e) / (1 - p_e)


def percent_reference(frame: pd.DataFrame) -> float:
    shares = []
    for t in table_by_task(frame):
        if len(t) >= 2:
            pairs = list(itertools.combinations(t, 2))
            shares.append(sum(a == b for a, b in pairs) / len(pairs))
    return float(np.mean(shares))


# --- published worked examples ----------------------------------------------------------------


@pytest.mark.parametrize(
    "level, published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_2011_reliability_data(level, published):
    frame = matrix_to_frame(KRIPPENDORFF_2011)
    assert round(krippendorff_alpha(frame, level), 3) == published
    assert krippendorff_alpha(frame, level) == pytest.approx(alpha_reference(frame, level), abs=1e-12)


def test_fleiss_1971_diagnoses():
    frame = matrix_to_frame(FLEISS_1971, coders_in_rows=False)
    ours = fleiss_kappa(frame)
    assert round(ours, 3) == 0.430
    assert ours == pytest.approx(0.4302445, abs=5e-8)
    assert ours == pytest.approx(sm_fleiss_kappa(aggregate_raters(np.array(FLEISS_1971))[0]), abs=1e-12)


# --- against independent implementations on random data ---------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_scikit_learn_for_every_pair(seed, weights):
    frame = random_frame(seed)
    labels = sorted(frame["label"].dropna().unique())
    ours = pairwise_cohen_kappa(frame, weights=weights, level="ordinal")
    wide = frame.pivot(index="task", columns="annotator", values="label")
    assert len(ours) == len(list(itertools.combinations(wide.columns, 2)))
    for row in ours.itertuples():
        both = wide[[row.annotator_a, row.annotator_b]].dropna()
        assert row.n == len(both)
        expected = cohen_kappa_score(both.iloc[:, 0], both.iloc[:, 1], labels=labels, weights=weights)
        assert row.kappa == pytest.approx(expected, abs=1e-9)
    assert cohen_kappa_mean(frame, weights=weights, level="ordinal") == pytest.approx(ours["kappa"].mean(), abs=1e-12)


def test_cohen_kappa_with_text_labels_and_undefined_pairs():
    frame = pd.DataFrame(
        {
            "task": [1, 1, 2, 2, 3, 3, 1],
            "annotator": ["a", "b", "a", "b", "a", "b", "c"],
            "label": ["spam", "spam", "ok", "spam", "ok", "ok", "spam"],
        }
    )
    pairs = pairwise_cohen_kappa(frame).set_index(["annotator_a", "annotator_b"])
    expected = cohen_kappa_score(["spam", "ok", "ok"], ["spam", "spam", "ok"])
    assert pairs.loc[("a", "b"), "kappa"] == pytest.approx(expected)
    assert np.isnan(pairs.loc[("a", "c"), "kappa"])  # one shared task, both "spam": no expected disagreement
    assert pairs.loc[("a", "c"), "n"] == 1


@pytest.mark.parametrize("seed", range(6))
def test_fleiss_kappa_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    n_raters = int(rng.integers(2, 9))
    frame = random_frame(seed, n_tasks=60, n_annotators=n_raters, n_labels=int(rng.integers(2, 6)), missing=0.0)
    counts = pd.crosstab(frame["task"], frame["label"]).to_numpy()
    assert fleiss_kappa(frame) == pytest.approx(sm_fleiss_kappa(counts, method="fleiss"), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_alpha_matches_pairwise_reference(seed, level):
    frame = random_frame(seed, n_tasks=30, n_annotators=5, n_labels=5, missing=0.35)
    frame["label"] = frame["label"] * 1.5 + 0.5  # unevenly spaced values exercise interval and ratio
    assert krippendorff_alpha(frame, level) == pytest.approx(alpha_reference(frame, level), abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_gwet_ac1_and_percent_agreement_match_direct_formulas(seed):
    frame = random_frame(seed, missing=0.5)
    assert gwet_ac1(frame) == pytest.approx(ac1_reference(frame), abs=1e-9)
    assert percent_agreement(frame) == pytest.approx(percent_reference(frame), abs=1e-9)


@pytest.mark.skipif(not BENCH_ENV.is_ready(), reason="the benchmark environment (krippendorff package) is not built")
def test_krippendorff_alpha_matches_the_krippendorff_package_in_the_bench_env(tmp_path):
    """GPL-3.0 oracle: run only in the separate benchmark environment, never imported here."""
    frames = {seed: random_frame(seed, n_tasks=120, n_annotators=6, n_labels=5, missing=0.3) for seed in range(3)}
    matrices = {
        seed: [
            [None if np.isnan(v) else v for v in row]
            for row in f.pivot(index="annotator", columns="task", values="label").to_numpy()
        ]
        for seed, f in frames.items()
    }
    script = textwrap.dedent("""
        import json, sys, numpy as np, krippendorff
        data = json.load(open(sys.argv[1]))
        out = {seed: {level: krippendorff.alpha(reliability_data=np.array(m, dtype=float), level_of_measurement=level)
                      for level in ("nominal", "ordinal", "interval", "ratio")} for seed, m in data.items()}
        print(json.dumps(out))
    """)
    (tmp_path / "data.json").write_text(json.dumps(matrices))  # null -> NaN in np.array(..., dtype=float)
    (tmp_path / "oracle.py").write_text(script)
    out = subprocess.run(
        [str(BENCH_ENV.bin("python")), str(tmp_path / "oracle.py"), str(tmp_path / "data.json")],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = json.loads(out.stdout)
    for seed, frame in frames.items():
        for level, value in theirs[str(seed)].items():
            assert krippendorff_alpha(frame, level) == pytest.approx(value, abs=1e-9)


# --- intervals, grouping, per-label -----------------------------------------------------------


def test_bootstrap_intervals_are_deterministic_and_bracket_the_estimate():
    frame = random_frame(3, n_tasks=200)
    first = agreement_summary(frame, "ordinal", n_boot=300, random_state=7)
    again = agreement_summary(frame, "ordinal", n_boot=300, random_state=7)
    other = agreement_summary(frame, "ordinal", n_boot=300, random_state=8)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    assert (first["ci_low"] <= first["estimate"]).all() and (first["estimate"] <= first["ci_high"]).all()
    low, high = krippendorff_alpha_ci(frame, "ordinal", n_boot=300, random_state=7)
    row = first.set_index("figure").loc["krippendorff_alpha"]
    assert (low, high) == (row["ci_low"], row["ci_high"])


def test_profile_bootstrap_agrees_with_resampling_tasks_one_by_one():
    frame = random_frame(11, n_tasks=300)
    fast = krippendorff_alpha_ci(frame, "nominal", n_boot=400, random_state=1)
    slow = bootstrap_ci(frame, lambda f: krippendorff_alpha(f, "nominal"), n_boot=400, random_state=2)
    assert fast == pytest.approx(slow, abs=0.03)  # same distribution, different draws


def test_by_splits_every_figure_by_a_column():
    frame = random_frame(4, n_tasks=120)
    frame["language"] = np.where(frame["task"] % 3 == 0, "ar", "en")
    alphas = krippendorff_alpha(frame, "nominal", by="language")
    assert list(alphas.index) == ["ar", "en"]
    for language in ("ar", "en"):
        part = frame[frame["language"] == language]
        assert alphas[language] == pytest.approx(krippendorff_alpha(part, "nominal"))
        assert fleiss_kappa(frame, by="language")[language] == pytest.approx(fleiss_kappa(part))
        assert gwet_ac1(frame, by="language")[language] == pytest.approx(gwet_ac1(part))
    summary = agreement_summary(frame, by="language", n_boot=50)
    assert set(summary["language"]) == {"ar", "en"} and len(summary) == 8
    assert set(pairwise_cohen_kappa(frame, by="language")["language"]) == {"ar", "en"}
    with pytest.raises(ValueError, match="by: no column 'policy'"):
        fleiss_kappa(frame, by="policy")


def test_per_label_figures_are_the_binary_coefficients():
    frame = random_frame(5, n_labels=3, missing=0.2)
    per_label = per_label_agreement(frame).set_index("label")
    for label in per_label.index:
        binary = frame.assign(label=np.where(frame["label"].isna(), NAN, (frame["label"] == label).astype(float)))
        assert per_label.loc[label, "krippendorff_alpha"] == pytest.approx(krippendorff_alpha(binary), abs=1e-12)
        assert per_label.loc[label, "percent_agreement"] == pytest.approx(percent_agreement(binary), abs=1e-12)
        assert per_label.loc[label, "fleiss_kappa"] == pytest.approx(fleiss_kappa(binary), abs=1e-12)


def test_prevalence_paradox_shows_up_side_by_side():
    """Rare violations: raw agreement and AC1 stay high while kappa and alpha drop."""
    rng = np.random.default_rng(0)
    rows = []
    for task in range(400):
        rare = task < 8
        for annotator in "abc":
            label = "violation" if (rare and rng.random() < 0.6) or (not rare and rng.random() < 0.01) else "ok"
            rows.append((task, annotator, label))
    frame = pd.DataFrame(rows, columns=["task", "annotator", "label"])
    assert percent_agreement(frame) > 0.95 and gwet_ac1(frame) > 0.95
    assert fleiss_kappa(frame) < 0.6 and krippendorff_alpha(frame) < 0.6


# --- multi-label and spans ---------------------------------------------------------------------


def test_masi_distance_cases():
    assert masi_distance(set(), set()) == 0.0
    assert masi_distance({"hate"}, {"hate"}) == 0.0
    assert masi_distance({"hate"}, {"hate", "spam"}) == pytest.approx(1 - 0.5 * 2 / 3)
    assert masi_distance({"hate", "spam"}, {"spam", "scam"}) == pytest.approx(1 - (1 / 3) * (1 / 3))
    assert masi_distance({"hate"}, {"spam"}) == 1.0
    assert masi_distance(set(), {"spam"}) == 1.0


def test_masi_alpha_matches_pairwise_reference():
    rng = np.random.default_rng(2)
    policies = ["hate", "spam", "harassment", "self_harm"]
    rows = []
    for task in range(40):
        base = set(rng.choice(policies, size=rng.integers(0, 3), replace=False))
        for annotator in "abcd":
            if rng.random() < 0.2:
                continue
            chosen = set(base)
            if rng.random() < 0.3:
                chosen ^= {rng.choice(policies)}
            rows.append((task, annotator, sorted(chosen)))
    frame = pd.DataFrame(rows, columns=["task", "annotator", "label"])
    units = [[frozenset(x) for x in g["label"]] for _, g in frame.groupby("task")]
    units = [u for u in units if len(u) >= 2]
    values = [v for u in units for v in u]
    n = len(values)
    observed = sum(
        masi_distance(u[i], u[j]) / (len(u) - 1) for u in units for i, j in itertools.permutations(range(len(u)), 2)
    )
    expected = sum(masi_distance(values[i], values[j]) for i in range(n) for j in range(n) if i != j)
    assert masi_alpha(frame) == pytest.approx(1 - (n - 1) * observed / expected, abs=1e-9)
    per_policy = multilabel_agreement(frame).set_index("label")
    for policy in policies:
        binary = frame.assign(label=frame["label"].map(lambda s, p=policy: float(p in s)))
        assert per_policy.loc[policy, "krippendorff_alpha"] == pytest.approx(krippendorff_alpha(binary), abs=1e-12)
        assert per_policy.loc[policy, "gwet_ac1"] == pytest.approx(gwet_ac1(binary, n_categories=2), abs=1e-12)


def test_span_f1_exact_and_overlap_by_hand():
    frame = pd.DataFrame(
        {
            "task": [1, 1, 1, 2, 2, 3],
            "annotator": ["a", "b", "c", "a", "b", "a"],
            "label": [
                [(0, 5, "hate"), (10, 12, "spam")],
                [(0, 5, "hate")],
                [(1, 4, "hate")],
                [],
                [(3, 9, "spam")],
                [(0, 1, "spam")],
            ],
        }
    )
    exact = span_agreement(frame).set_index(["annotator_a", "annotator_b"])
    assert exact.loc[("a", "b"), ["tasks", "spans_a", "spans_b", "matched_a", "matched_b"]].tolist() == [2, 2, 2, 1, 1]
    assert exact.loc[("a", "b"), "f1"] == pytest.approx(0.5)
    assert exact.loc[("a", "c"), "f1"] == 0.0
    overlap = span_agreement(frame, match="overlap").set_index(["annotator_a", "annotator_b"])
    assert overlap.loc[("a", "c"), "recall"] == 0.5 and overlap.loc[("a", "c"), "precision"] == 1.0
    assert overlap.loc[("b", "c"), "f1"] == 1.0
    # pooled: matched a 1+0+0, spans a 2+2+1; matched b 1+0+0, spans b 2+1+1
    assert span_f1(frame) == pytest.approx(2 * (1 / 5) * (1 / 4) / (1 / 5 + 1 / 4))
    assert np.isnan(span_f1(pd.DataFrame({"task": [1, 1], "annotator": ["a", "b"], "label": [[], []]})))


# --- input errors -------------------------------------------------------------------------------


def test_errors_name_what_was_passed_and_what_was_expected():
    with pytest.raises(ValueError, match=r"missing column\(s\) annotator.*'worker' is called 'annotator'"):
        krippendorff_alpha(pd.DataFrame({"task": [1], "worker": ["a"], "label": [1]}))
    with pytest.raises(ValueError, match="level must be one of nominal, ordinal, interval, ratio; got 'nominl'"):
        krippendorff_alpha(random_frame(0), "nominl")
    with pytest.raises(ValueError, match="level 'interval' needs numeric labels.*'spam'"):
        krippendorff_alpha(pd.DataFrame({"task": [1, 1], "annotator": ["a", "b"], "label": ["spam", "2"]}), "interval")
    with pytest.raises(ValueError, match="level 'ratio' needs values >= 0"):
        krippendorff_alpha(pd.DataFrame({"task": [1, 1], "annotator": ["a", "b"], "label": [-1, 2]}), "ratio")
    with pytest.raises(ValueError, match="weights must be one of None, 'linear', 'quadratic'; got 'cubic'"):
        pairwise_cohen_kappa(random_frame(0), weights="cubic")
    with pytest.raises(ValueError, match="expected a pandas DataFrame"):
        fleiss_kappa([[1, 2]])
    with pytest.raises(ValueError, match="multi-label or spans"):
        krippendorff_alpha(pd.DataFrame({"task": [1, 1], "annotator": ["a", "b"], "label": [["x"], ["y"]]}))
    with pytest.raises(ValueError, match="n_boot must be a positive integer; got 0"):
        krippendorff_alpha_ci(random_frame(0), n_boot=0)


def test_alpha_is_nan_without_variation_or_pairable_tasks():
    same = pd.DataFrame({"task": [1, 1, 2, 2], "annotator": list("abab"), "label": ["x"] * 4})
    assert np.isnan(krippendorff_alpha(same))
    single = pd.DataFrame({"task": [1, 2], "annotator": ["a", "b"], "label": ["x", "y"]})
    assert np.isnan(krippendorff_alpha(single)) and np.isnan(percent_agreement(single))
