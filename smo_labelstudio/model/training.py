"""Training the pre-annotation model: from a file, from generated starter data, or from consensus
labels of completed work in Label Studio (its export, read by labelstudio.rest). A new version is
promoted only when its macro F1 on the store's fixed validation set is not worse than the current
model's on the same set. That set is frozen once (the operator's file, else a stratified fifth of the
first training data), kept outside every training set, and never read from Label Studio, so a poisoned
project cannot move it. No Prefect, no SDK, no HTTP: the ML backend's environment runs this too."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from smo_labelstudio.core.errors import InputError
from smo_labelstudio.core.files import atomic_write
from smo_labelstudio.model.card import model_card, training_summary
from smo_labelstudio.model.modelstore import ModelStore, ModelStoreError
from smo_labelstudio.model.textmodel import NO_VIOLATION, PolicyModel

COLUMNS = ["text", "labels", "severity", "language"]


class TrainingDataError(InputError):
    """The training data is unusable; the message names the file, row or column."""


def read_training_file(path: Path, known_labels: list[str]) -> pd.DataFrame:
    """CSV or JSONL with `text`, `labels` (policy ids, `|`-separated or a list), optional `severity`
    (1..4) and `language`. Rows with unknown labels or no text are errors, not silently dropped."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False)
        elif path.suffix.lower() == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise TrainingDataError(f"{path}: expected a .csv or .jsonl file")
    except (OSError, ValueError) as exc:
        if isinstance(exc, TrainingDataError):
            raise
        raise TrainingDataError(f"{path}: cannot read ({exc})") from None
    missing = {"text", "labels"} - set(df.columns)
    if missing:
        raise TrainingDataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    rows = []
    for i, rec in enumerate(df.to_dict("records"), start=2 if path.suffix == ".csv" else 1):
        text = str(rec.get("text") or "").strip()
        labels = rec["labels"]
        labels = [x.strip() for x in str(labels).split("|") if x.strip()] if not isinstance(labels, list) else labels
        sev = rec.get("severity")
        sev = int(sev) if sev not in (None, "", float("nan")) and not pd.isna(sev) else None
        if not text:
            raise TrainingDataError(f"{path}: row {i}: empty text")
        unknown = set(labels) - set(known_labels)
        if not labels or unknown:
            raise TrainingDataError(f"{path}: row {i}: labels {labels} must be policy ids from {known_labels}")
        rows.append({"text": text, "labels": labels, "severity": sev, "language": rec.get("language") or None})
    if len(rows) < 10:
        raise TrainingDataError(f"{path}: {len(rows)} rows; at least 10 are needed to train and hold some out")
    return pd.DataFrame(rows, columns=COLUMNS)


# Our own short, harmless-to-ship phrases per policy and language, recombined into varied examples.
_SEEDS = {
    "hate": {
        "en": [
            "people of that religion are vermin",
            "that ethnic group should be thrown out of the country",
            "they are subhuman and do not belong here",
        ],
        "es": ["esa gente de otra religión son alimañas", "hay que echar a ese grupo étnico del país"],
        "fr": ["ces gens sont des sous-hommes", "il faut expulser cette communauté du pays"],
        "ar": ["هؤلاء الناس حشرات ويجب طردهم", "هذه الجماعة لا تستحق العيش بيننا"],
    },
    "harassment": {
        "en": [
            "you are worthless, everyone should message you until you quit",
            "I know where you live and I will post your address",
        ],
        "es": ["eres un inútil, todos deberían acosarte hasta que te vayas"],
        "fr": ["tu es nul, tout le monde devrait te harceler jusqu'à ce que tu partes"],
        "ar": ["أنت عديم القيمة والجميع يجب أن يزعجك حتى تستقيل"],
    },
    "violent_extremism": {
        "en": [
            "join the fighters, the attack was only the beginning",
            "glory to the group that carried out the bombing",
        ],
        "es": ["únete a los combatientes, el ataque fue solo el principio"],
        "fr": ["rejoignez les combattants, l'attaque n'était qu'un début"],
        "ar": ["انضموا إلى المقاتلين فالهجوم كان البداية فقط"],
    },
    "sexual_content": {
        "en": ["explicit adult content, send me private pictures", "offering sexual services tonight"],
        "es": ["contenido sexual explícito, envíame fotos privadas"],
        "fr": ["contenu sexuel explicite, envoie-moi des photos privées"],
        "ar": ["محتوى جنسي صريح أرسل لي صورا خاصة"],
    },
    "self_harm": {
        "en": ["the easiest way to hurt yourself without anyone noticing", "stop eating, starving is the goal"],
        "es": ["la forma más fácil de hacerte daño sin que nadie lo note"],
        "fr": ["le moyen le plus simple de te faire du mal sans que personne ne le remarque"],
        "ar": ["أسهل طريقة لإيذاء نفسك دون أن يلاحظ أحد"],
    },
    "dangerous_acts": {
        "en": ["step by step how to make a weapon at home", "try the choking challenge, it is fun"],
        "es": ["paso a paso cómo fabricar un arma en casa"],
        "fr": ["étape par étape comment fabriquer une arme à la maison"],
        "ar": ["خطوة بخطوة كيف تصنع سلاحا في المنزل"],
    },
    "misinformation": {
        "en": [
            "this vaccine contains tracking chips, share before they delete it",
            "the election has been moved to next month, do not vote tomorrow",
        ],
        "es": ["esta vacuna contiene chips de rastreo, compártelo antes de que lo borren"],
        "fr": ["ce vaccin contient des puces, partagez vite avant la suppression"],
        "ar": ["هذا اللقاح يحتوي على شرائح تتبع انشروه قبل حذفه"],
    },
    "spam_scams": {
        "en": ["click here to claim your free prize now", "your bank account is locked, send your password"],
        "es": ["haz clic aquí para reclamar tu premio gratis ahora"],
        "fr": ["cliquez ici pour réclamer votre prix gratuit maintenant"],
        "ar": ["اضغط هنا لتحصل على جائزتك المجانية الآن"],
    },
    NO_VIOLATION: {
        "en": ["have a great day everyone", "the match last night was exciting", "thanks for the recipe"],
        "es": ["que tengan un buen día", "gracias por compartir esta receta"],
        "fr": ["bonne journée à tous", "merci pour la recette"],
        "ar": ["شكرا لكم على هذا المقال الرائع", "أتمنى لكم يوما سعيدا"],
    },
}
_SEVERITY = {
    "hate": 3,
    "harassment": 2,
    "violent_extremism": 4,
    "sexual_content": 2,
    "self_harm": 4,
    "dangerous_acts": 3,
    "misinformation": 2,
    "spam_scams": 1,
}
_DECOR = ["", "!!!", " lol", " #news", " @friend", " ...", " 🙂", " (repost)", " — seriously"]


def starter_data(n_per_label: int = 40, seed: int = 0) -> pd.DataFrame:
    """A small generated multilingual training set for a starting model (nothing downloaded)."""
    rng = random.Random(seed)
    rows = []
    for label, by_lang in _SEEDS.items():
        phrases = [(lang, p) for lang, ps in by_lang.items() for p in ps]
        for i in range(n_per_label):
            lang, phrase = phrases[i % len(phrases)]
            text = f"{rng.choice(_DECOR[:4])}{phrase}{rng.choice(_DECOR)}".strip()
            if rng.random() < 0.3:
                text = text.upper() if lang != "ar" else text + " " + rng.choice(phrases)[1]
            rows.append({"text": text, "labels": [label], "severity": _SEVERITY.get(label), "language": lang})
    return pd.DataFrame(rows, columns=COLUMNS)


def _split(df: pd.DataFrame, seed: int, test_share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    first = df["labels"].map(lambda labs: labs[0])
    test_idx = []
    for _, idx in df.groupby(first).groups.items():  # stratified by the first label
        idx = list(idx)
        rng.shuffle(idx)
        test_idx += idx[: max(1, int(round(len(idx) * test_share)))] if len(idx) >= 3 else []
    test = df.loc[sorted(test_idx)]
    return df.drop(index=test.index), test


def _read_rows(path: Path) -> pd.DataFrame:
    df = pd.read_json(path, lines=True, dtype=False)
    if "severity" in df:
        df["severity"] = df["severity"].astype(object).where(df["severity"].notna(), None)
    return df


def validation_set(store: ModelStore) -> pd.DataFrame | None:
    """The store's fixed validation set (None before the first training)."""
    return _read_rows(store.validation_path) if store.validation_path.exists() else None


def set_validation(store: ModelStore, rows: pd.DataFrame) -> None:
    """Freeze `rows` as the validation set every later promotion is judged on (an operator's choice)."""
    if len(rows) < 10:
        raise TrainingDataError(f"a validation set needs at least 10 rows, not {len(rows)}")
    frozen = rows[COLUMNS].reset_index(drop=True)
    atomic_write(
        store.validation_path,
        lambda tmp: frozen.to_json(tmp, orient="records", lines=True, force_ascii=False),
    )


def train_version(
    store: ModelStore,
    data: pd.DataFrame,
    labels: list[str],
    seed: int = 0,
    source: str = "file",
    validation: pd.DataFrame | None = None,
    **extra,
) -> dict:
    """Train a new version on `data` minus any row of the fixed validation set, keep it with its metrics
    and its training rows, and promote it if its validation macro F1 is not worse than the current
    model's. `validation` replaces the fixed set; without one, the first training freezes a stratified
    fifth of its data. Returns the metrics (`extra` keys are recorded with them)."""
    data = data.reset_index(drop=True)
    if "origin" not in data:
        data["origin"] = "base"
    if validation is not None:
        set_validation(store, validation)
    fixed = validation_set(store)
    if fixed is None:
        data, fixed = _split(data, seed)
        set_validation(store, fixed)
        fixed = validation_set(store)
    assert fixed is not None  # frozen just above
    train = data[~data["text"].isin(set(fixed["text"]))].reset_index(drop=True)
    if len(train) < 10:
        raise TrainingDataError(f"{len(train)} training rows outside the validation set; at least 10 are needed")
    model = PolicyModel(labels=labels, random_state=seed).fit(
        train["text"].tolist(), train["labels"].tolist(), train["severity"].tolist()
    )
    held_texts, held_labels = fixed["text"].tolist(), fixed["labels"].tolist()
    metrics = model.score(held_texts, held_labels)
    current = store.current_version()
    current_model = store.load(current) if current else None
    baseline = current_model.score(held_texts, held_labels)["macro_f1"] if current_model is not None else None
    promoted = baseline is None or metrics["macro_f1"] >= baseline
    version = store.new_version_name()
    metrics.update(
        {
            "version": version,
            "n_train": len(train),
            "n_test": len(fixed),
            "validation": "fixed",
            "source": source,
            "labels": labels,
            "previous_version": current,
            "previous_macro_f1_same_rows": baseline,
            "promoted": promoted,
            "seed": seed,
            **extra,
        }
    )
    folder = store.save(version, model, metrics)
    train[COLUMNS + ["origin"]].to_json(folder / "training_data.jsonl", orient="records", lines=True, force_ascii=False)
    store.save_card(
        version, _card(store, version, model, fixed, training_summary(train, source), current, current_model)
    )
    if promoted:
        store.promote(version)
    return metrics


def _card(
    store: ModelStore,
    version: str,
    model: PolicyModel,
    fixed: pd.DataFrame,
    training: dict,
    previous_version: str | None,
    previous_model: PolicyModel | None,
) -> dict:
    """A built-in version's model card; the previous version's card (made now on the same rows when it has none)
    says what changed."""
    sha = hashlib.sha256(store.validation_path.read_bytes()).hexdigest()

    def card(v: str, m: PolicyModel, train: dict, previous: dict | None) -> dict:
        proba = m.predict_proba(fixed["text"].tolist())
        return model_card(
            version=v,
            kind="builtin",
            source=str(train.get("source")),
            labels=m.labels,
            validation=fixed,
            proba=proba,
            predicted=m.predict_labels(proba),
            training=train,
            previous=previous,
            validation_sha256=sha,
        )

    previous = store.card(previous_version) if previous_version else None
    if previous is None and previous_version and previous_model is not None:
        old = store.metrics(previous_version)
        previous = card(previous_version, previous_model, {"n": old.get("n_train"), "source": old.get("source")}, None)
        store.save_card(previous_version, previous)  # a version from before model cards gets one now
    return card(version, model, training, previous)


def ensure_starter_model(store: ModelStore, labels: list[str]) -> str:
    """Train and promote a starting model from generated data unless a model is already promoted."""
    current = store.current_version()
    if current:
        return current
    train_version(store, starter_data(), labels, source="starter")
    promoted = store.current_version()
    if promoted is None:  # train_version promotes a first model: there is no baseline to beat
        raise ModelStoreError(f"the starter model was not promoted in {store.root}")
    return promoted


def _annotator(ann: dict, position: int) -> object:
    """Who made an annotation: its `completed_by` user id (an int, or a dict with `id`)."""
    who = ann.get("completed_by")
    if isinstance(who, dict):
        who = who.get("id")
    return who if who is not None else ("anonymous", position)


def consensus_from_export(tasks: list[dict]) -> pd.DataFrame:
    """Consensus training rows from a Label Studio JSON export: per task, the policies chosen by more
    than half of its distinct annotators (each account's latest annotation counts once, however many it
    posted; cancelled ones not at all), and the (lower) median severity of those who gave one."""
    rows = []
    for task in tasks:
        text = (task.get("data") or {}).get("text")
        latest: dict[object, dict] = {}
        for i, ann in enumerate(task.get("annotations") or []):
            if not isinstance(ann, dict):
                continue
            who = _annotator(ann, i)
            if who not in latest or (ann.get("id") or 0) >= (latest[who].get("id") or 0):
                latest[who] = ann
        votes: Counter[str] = Counter()
        severities: list[int] = []
        n = 0
        for ann in latest.values():
            if ann.get("was_cancelled"):
                continue
            n += 1
            for item in ann.get("result") or []:
                if item.get("from_name") == "policy":
                    votes.update(set(item.get("value", {}).get("choices", [])))
                elif item.get("from_name") == "severity":
                    severities += [int(c) for c in item.get("value", {}).get("choices", []) if str(c).isdigit()]
        if not isinstance(text, str) or not text.strip() or n == 0:
            continue
        labels = sorted(lab for lab, v in votes.items() if v * 2 > n)
        if not labels:
            continue
        if len(labels) > 1 and NO_VIOLATION in labels:
            labels.remove(NO_VIOLATION)
        sev = sorted(severities)[(len(severities) - 1) // 2] if severities and labels != [NO_VIOLATION] else None
        rows.append(
            {"text": text, "labels": labels, "severity": sev, "language": (task.get("data") or {}).get("language")}
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def retrain_from_export(store_dir: str, tasks: list[dict], project_id: int) -> dict:
    """The background retrain job for a connected project, `tasks` being its Label Studio JSON export
    (labelstudio.rest reads it with the backend's own token): the current model's training rows, with
    this project's earlier rows replaced by its consensus now (so rows of a rejected version never
    carry over, and corrected annotations replace poisoned ones), judged on the fixed validation set."""
    store = ModelStore(Path(store_dir))
    if int(project_id) not in store.connected_projects():
        raise ModelStoreError(f"project {project_id} is not connected to this backend; `smo backend connect` it")
    current = store.current_version()
    if not current:
        raise ModelStoreError(f"no promoted model in {store_dir} to retrain from")
    labels = store.metrics(current)["labels"]
    base = _read_rows(store.versions_dir / current / "training_data.jsonl")
    if "origin" not in base:
        base["origin"] = "base"
    origin = f"project:{int(project_id)}"
    fresh = consensus_from_export(tasks)
    fresh = fresh[fresh["labels"].map(lambda labs: set(labs) <= set(labels))].assign(origin=origin)
    digest = hashlib.sha256(fresh[COLUMNS].to_json(orient="records", force_ascii=False).encode()).hexdigest()
    last = _last_run(store, int(project_id))
    if last is not None and last.get("consensus_sha256") == digest:  # a repeated hint: nothing new to learn
        return {"skipped": "the project's consensus is unchanged since version " + last["version"], **last}
    kept = base[(base["origin"] != origin) & ~base["text"].isin(fresh["text"])]
    data = pd.concat([kept, fresh], ignore_index=True)
    data["severity"] = data["severity"].astype(object).where(data["severity"].notna(), None)
    return train_version(
        store,
        data,
        labels,
        source=f"label-studio project {project_id}",
        project=project_id,
        consensus_rows=len(fresh),
        consensus_sha256=digest,
    )


def _last_run(store: ModelStore, project_id: int) -> dict | None:
    """Metrics of the newest version trained from a project, if any."""
    for version in reversed(store.versions()):
        metrics = store.metrics(version)
        if metrics.get("project") == project_id:
            return metrics
    return None
