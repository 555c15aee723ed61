"""Language detection for rows that arrive without a language: accuracy on a held-out multilingual
sample written for this test (short, social-media-like sentences, not the identifier's training data),
and a language the data gave is never overridden."""

from __future__ import annotations

import pandas as pd

from smo_labelstudio.core.spec import Columns
from smo_labelstudio.ingest import language as langdetect
from smo_labelstudio.ingest.items import prepare
from smo_labelstudio.ingest.sources import Row

HELD_OUT = {
    "en": [
        "I can't believe the bus was late again this morning",
        "Does anyone know a good place to fix a bike near the station?",
        "Thanks everyone for the birthday wishes, you made my day",
        "This new update keeps crashing my phone every time I open it",
        "We are selling homemade cakes at the school fair on Saturday",
        "Please stop sending me these messages, I am not interested",
        "The referee clearly missed that penalty in the second half",
        "My grandmother taught me how to bake bread when I was ten",
    ],
    "es": [
        "No puedo creer que el autobús llegó tarde otra vez esta mañana",
        "¿Alguien sabe dónde arreglar una bicicleta cerca de la estación?",
        "Gracias a todos por las felicitaciones, me alegraron el día",
        "Esta actualización hace que mi teléfono se cierre cada vez",
        "Vendemos pasteles caseros en la feria del colegio el sábado",
        "Por favor deja de enviarme estos mensajes, no me interesa",
        "El árbitro no vio ese penalti en la segunda parte",
        "Mi abuela me enseñó a hacer pan cuando tenía diez años",
    ],
    "fr": [
        "Je n'arrive pas à croire que le bus était encore en retard ce matin",
        "Quelqu'un connaît un bon endroit pour réparer un vélo près de la gare ?",
        "Merci à tous pour les messages d'anniversaire, vous avez illuminé ma journée",
        "Cette mise à jour fait planter mon téléphone à chaque fois",
        "Nous vendons des gâteaux faits maison à la fête de l'école samedi",
        "Arrête de m'envoyer ces messages s'il te plaît, ça ne m'intéresse pas",
        "L'arbitre a clairement raté ce penalty en deuxième mi-temps",
        "Ma grand-mère m'a appris à faire du pain quand j'avais dix ans",
    ],
    "de": [
        "Ich kann nicht glauben, dass der Bus heute Morgen schon wieder zu spät war",
        "Weiß jemand, wo man in der Nähe vom Bahnhof ein Fahrrad reparieren kann?",
        "Danke euch allen für die Geburtstagswünsche, ihr habt meinen Tag gerettet",
        "Dieses neue Update bringt mein Handy jedes Mal zum Absturz",
        "Wir verkaufen am Samstag selbstgebackenen Kuchen auf dem Schulfest",
        "Bitte hör auf, mir diese Nachrichten zu schicken, ich habe kein Interesse",
        "Der Schiedsrichter hat den Elfmeter in der zweiten Halbzeit übersehen",
        "Meine Oma hat mir das Brotbacken beigebracht, als ich zehn war",
    ],
    "pt": [
        "Não acredito que o ônibus atrasou de novo hoje de manhã",
        "Alguém conhece um bom lugar para consertar bicicleta perto da estação?",
        "Obrigado a todos pelas mensagens de aniversário, vocês fizeram meu dia",
        "Essa atualização nova faz meu celular travar toda vez que abro",
        "Vamos vender bolos caseiros na festa da escola no sábado",
        "Por favor pare de me mandar essas mensagens, não tenho interesse",
        "O árbitro não viu aquele pênalti no segundo tempo",
        "Minha avó me ensinou a fazer pão quando eu tinha dez anos",
    ],
    "it": [
        "Non posso credere che l'autobus fosse di nuovo in ritardo stamattina",
        "Qualcuno conosce un buon posto per riparare una bici vicino alla stazione?",
        "Grazie a tutti per gli auguri di compleanno, mi avete reso felice",
        "Questo nuovo aggiornamento fa bloccare il mio telefono ogni volta",
        "Sabato vendiamo torte fatte in casa alla festa della scuola",
        "Per favore smettila di mandarmi questi messaggi, non mi interessa",
        "L'arbitro non ha visto quel rigore nel secondo tempo",
        "Mia nonna mi ha insegnato a fare il pane quando avevo dieci anni",
    ],
    "ar": [
        "لا أصدق أن الحافلة تأخرت مرة أخرى هذا الصباح",
        "هل يعرف أحد مكانا جيدا لإصلاح الدراجات قرب المحطة؟",
        "شكرا لكم جميعا على التهاني بعيد ميلادي",
        "هذا التحديث الجديد يجعل هاتفي يتوقف في كل مرة",
        "نبيع الكعك المنزلي في معرض المدرسة يوم السبت",
        "من فضلك توقف عن إرسال هذه الرسائل لي",
        "الحكم لم ير ركلة الجزاء في الشوط الثاني",
        "علمتني جدتي كيف أخبز الخبز عندما كنت صغيرا",
    ],
    "ru": [
        "Не могу поверить, что автобус сегодня утром снова опоздал",
        "Кто-нибудь знает, где починить велосипед рядом с вокзалом?",
        "Спасибо всем за поздравления с днём рождения",
        "Это новое обновление постоянно ломает мой телефон",
        "В субботу мы продаём домашнюю выпечку на школьной ярмарке",
        "Пожалуйста, перестань присылать мне эти сообщения",
        "Судья явно не заметил пенальти во втором тайме",
        "Бабушка научила меня печь хлеб, когда мне было десять лет",
    ],
    "tr": [
        "Otobüsün bu sabah yine geç kaldığına inanamıyorum",
        "İstasyonun yakınında bisiklet tamir eden bir yer bilen var mı?",
        "Doğum günü mesajlarınız için hepinize teşekkürler",
        "Bu yeni güncelleme telefonumu her seferinde çökertiyor",
        "Cumartesi okul şenliğinde ev yapımı kek satıyoruz",
        "Lütfen bana bu mesajları göndermeyi bırak, ilgilenmiyorum",
        "Hakem ikinci yarıdaki o penaltıyı açıkça kaçırdı",
        "Büyükannem bana on yaşındayken ekmek yapmayı öğretti",
    ],
}
THRESHOLD = 0.9


def test_detection_accuracy_on_a_held_out_multilingual_sample(record_property, capsys):
    rows = [(lang, text) for lang, texts in HELD_OUT.items() for text in texts]
    guesses = [langdetect.detect(text) for _, text in rows]
    correct = sum(code == lang for (lang, _), (code, _) in zip(rows, guesses))
    accuracy = correct / len(rows)
    wrong = [(lang, code, text[:40]) for (lang, text), (code, _) in zip(rows, guesses) if code != lang]
    message = (
        f"language detection accuracy {correct}/{len(rows)} = {accuracy:.3f} "
        f"({len(HELD_OUT)} languages); wrong: {wrong}"
    )
    record_property("language_detection_accuracy", round(accuracy, 4))
    with capsys.disabled():
        print(f"\n{message}")
    assert accuracy >= THRESHOLD, message
    assert all(0 < conf <= 1 for _, conf in guesses)


def test_fill_never_overrides_a_given_language_and_marks_what_it_detected():
    frame = pd.DataFrame(
        {
            "text": [
                "Gracias a todos por venir a la fiesta de anoche",
                "Thanks everyone for coming",
                "Danke an alle, die gestern gekommen sind",
                "1234 !!!",
                None,
            ],
            "language": ["en", None, "", None, None],
        }
    )  # row 0: wrong on purpose, but given
    out = langdetect.fill(frame)
    assert out["language"].tolist() == ["en", "en", "de", None, None]
    assert out["language_detected"].tolist() == [False, True, True, False, False]
    assert pd.isna(out.loc[0, "language_confidence"]) and 0 < out.loc[1, "language_confidence"] <= 1


def test_launch_items_without_a_language_get_a_detected_one_and_given_ones_stay():
    rows = [
        Row(1, {"id": "a", "text": "Merci beaucoup pour votre aide hier soir", "language": None}, raw="a"),
        Row(2, {"id": "b", "text": "Merci beaucoup pour votre aide hier soir !", "language": "es"}, raw="b"),
        Row(3, {"id": "c", "text": "Wir sehen uns morgen beim Training", "language": "xx!"}, raw="c"),
    ]
    p = prepare(
        rows, Columns(id="id", text="text", language="language"), needs_text=True, needs_image=False, file="f.csv"
    )
    items = p.items.set_index("external_id")
    assert items.loc["a", "language"] == "fr" and items.loc["a", "language_detected"]
    assert 0 < items.loc["a", "language_confidence"] <= 1
    assert items.loc["b", "language"] == "es" and not items.loc["b", "language_detected"]
    assert pd.isna(items.loc["b", "language_confidence"])
    assert p.quarantine["external_id"].tolist() == ["c"]  # a given but unknown code is still refused, not replaced
