"""Quality engine: gold checks, agreement and consensus as pure functions on tidy frames.

Input everywhere: one row per answer with columns `task, annotator, label` (an empty label is a
missing answer); gold is `task, label`. No Label Studio needed.

    gold.py          accuracy on gold, Wilson intervals, binomial test and SPRT, flags with confusions
    agreement.py     percent agreement, Cohen, Fleiss, Gwet's AC1, Krippendorff's alpha, bootstrap CIs
    krippendorff.py  alpha from the coincidence matrix at any level (used by agreement.py)
    multilabel.py    per-policy binary agreement and MASI alpha for set-valued answers
    spans.py         pairwise span F1, exact or overlap matching
    consensus.py     MajorityVote and DawidSkene, plain or smoothed (fit / fit_predict / fit_predict_proba)
    calibration.py   consensus confidence calibrated on held-out gold (shrunk Platt scaling), reliability/ECE
    compute.py       run_quality: the whole pass, JSON-ready
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {  # name -> submodule: loaded on first use, so importing one submodule does not load scipy and all
    "DawidSkene": "consensus",
    "MajorityVote": "consensus",
    "QualityResult": "compute",
    "agreement_summary": "agreement",
    "bootstrap_ci": "agreement",
    "cohen_kappa_mean": "agreement",
    "consensus_frame": "consensus",
    "fit_consensus": "consensus",
    "flags": "gold",
    "fleiss_kappa": "agreement",
    "gold_accuracy": "gold",
    "gold_confusion": "gold",
    "gwet_ac1": "agreement",
    "krippendorff_alpha": "agreement",
    "krippendorff_alpha_ci": "agreement",
    "masi_alpha": "multilabel",
    "masi_distance": "multilabel",
    "multilabel_agreement": "multilabel",
    "pairwise_cohen_kappa": "agreement",
    "per_label_agreement": "agreement",
    "percent_agreement": "agreement",
    "run_quality": "compute",
    "sequential_check": "gold",
    "span_agreement": "spans",
    "span_f1": "spans",
    "wilson_interval": "gold",
}

if TYPE_CHECKING:
    from .agreement import (
        agreement_summary,
        bootstrap_ci,
        cohen_kappa_mean,
        fleiss_kappa,
        gwet_ac1,
        krippendorff_alpha,
        krippendorff_alpha_ci,
        pairwise_cohen_kappa,
        per_label_agreement,
        percent_agreement,
    )
    from .compute import QualityResult, run_quality
    from .consensus import DawidSkene, MajorityVote, consensus_frame, fit_consensus
    from .gold import flags, gold_accuracy, gold_confusion, sequential_check, wilson_interval
    from .multilabel import masi_alpha, masi_distance, multilabel_agreement
    from .spans import span_agreement, span_f1


def __getattr__(name: str) -> Any:
    """The re-exported names of the submodules, imported when first asked for (PEP 562)."""
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DawidSkene",
    "MajorityVote",
    "QualityResult",
    "agreement_summary",
    "bootstrap_ci",
    "cohen_kappa_mean",
    "consensus_frame",
    "fit_consensus",
    "flags",
    "fleiss_kappa",
    "gold_accuracy",
    "gold_confusion",
    "gwet_ac1",
    "krippendorff_alpha",
    "krippendorff_alpha_ci",
    "masi_alpha",
    "masi_distance",
    "multilabel_agreement",
    "pairwise_cohen_kappa",
    "per_label_agreement",
    "percent_agreement",
    "run_quality",
    "sequential_check",
    "span_agreement",
    "span_f1",
    "wilson_interval",
]
