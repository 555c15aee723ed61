"""A language for rows that arrive without one, from py3langid (its model ships inside the package:
nothing is downloaded at run time).

`detect(text)` gives `(code, confidence)`: the ISO 639-1 code py3langid's naive Bayes model picks
(about 97 languages) and its normalized probability (0-1, softmax over every language the model
knows, tempered by the text's length, so short texts get honest, lower confidences). `fill(frame)`
fills only rows with no language and records which ones it filled: `language_detected` (True only
for a detected language) and `language_confidence` (None for a language the data gave). A language
the data gave is never touched, whatever the model thinks.
"""

from __future__ import annotations

import functools

import pandas as pd
from py3langid.langid import MODEL_FILE, LanguageIdentifier

MIN_CHARS = 1  # a text with no letters at all gets no language (it has nothing to identify)


@functools.lru_cache(maxsize=1)
def _identifier():
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect(text: str | None) -> tuple[str | None, float | None]:
    """(ISO 639-1 code, probability) of a text, or (None, None) when it has no letters to go on."""
    if text is None or not any(ch.isalpha() for ch in str(text)):
        return None, None
    code, confidence = _identifier().classify(str(text))
    return str(code), round(float(confidence), 4)


def missing(value) -> bool:
    """No language given: None, NaN or an empty string."""
    return value is None or (isinstance(value, float) and value != value) or not str(value).strip()


def fill(frame: pd.DataFrame, text: str = "text", language: str = "language") -> pd.DataFrame:
    """A copy of `frame` where rows with no language get a detected one, with the two columns
    `language_detected` (bool) and `language_confidence` (float, None where the language was given)."""
    out = frame.copy()
    detected, confidence, languages = [], [], []
    for given, content in zip(out[language] if language in out else [None] * len(out), out[text]):
        if missing(given):
            code, conf = detect(None if missing(content) else content)
            languages.append(code)
            detected.append(code is not None)
            confidence.append(conf)
        else:
            languages.append(given)
            detected.append(False)
            confidence.append(None)
    out[language] = pd.Series(languages, index=out.index, dtype=object)
    out["language_detected"] = pd.Series(detected, index=out.index, dtype=bool)
    out["language_confidence"] = pd.Series(confidence, index=out.index, dtype="float64")
    return out
