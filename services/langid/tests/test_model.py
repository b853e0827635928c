"""langid's unit tests, run in its own venv (production's pins):
`MODEL_PATH=... PYTHONPATH=predictor python -m unittest discover -s tests`.
Without MODEL_PATH the tests that need the model skip."""

import os
import unittest

import model
from kserve.errors import InvalidInput


def message(payload) -> str:
    with unittest.TestCase().assertRaises(InvalidInput) as caught:
        model.text_of(payload)
    return str(caught.exception.reason)


class Normalize(unittest.TestCase):
    def test_folds_blanks_and_strips(self):
        self.assertEqual(model.normalize(" a\n\r\v\tb  \n c ", 100), "a b c")

    def test_truncates_after_folding(self):
        self.assertEqual(model.normalize("ab   cd\nef", 5), "ab cd")

    def test_keeps_other_whitespace(self):
        # Production folds only \n \r \v \t and space; a no-break space stays.
        self.assertEqual(model.normalize("a\u00a0b", 100), "a\u00a0b")


class Validation(unittest.TestCase):
    def test_missing_or_empty_text(self):
        for payload in ({}, {"txt": "x"}, {"text": ""}, {"text": None}, {"text": 0}, {"text": []}):
            self.assertEqual(message(payload), "The parameter text is required.", payload)

    def test_text_not_a_string(self):
        for payload in ({"text": 42}, {"text": ["a"]}, {"text": {"a": 1}}, {"text": True}):
            self.assertEqual(message(payload), "The input 'text' should be a string.", payload)

    def test_body_not_an_object(self):
        for payload in ([1, 2], "text", 3, b"not json", b"[1]"):
            self.assertEqual(message(payload), "Please verify that request input is a json dict")

    def test_bytes_body_is_read_as_json(self):
        self.assertEqual(model.text_of(b'{"text": "hello"}'), "hello")


class Languages(unittest.TestCase):
    def test_every_label_of_production_lid201(self):
        table = model.read_languages()
        self.assertEqual(len(table), 201)
        self.assertEqual(table["eng_Latn"], ("en", "English"))
        self.assertEqual(table["zul_Latn"], ("zu", "Zulu"))
        # The first row of production's table: no Wikipedia code, a name.
        self.assertEqual(table["ace_Arab"], ("", "Acehnese"))


@unittest.skipUnless(os.environ.get("MODEL_PATH"), "MODEL_PATH names no model")
class WithModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.isvc = model.LangId("langid")

    def identify(self, text: str) -> dict:
        return self.isvc.predict(self.isvc.preprocess({"text": text}))

    def test_identifies_and_maps_the_label(self):
        got = self.identify("The children are playing in the garden while the cat sleeps.")
        self.assertEqual(
            (got["language"], got["wikicode"], got["languagename"]),
            ("eng_Latn", "en", "English"),
        )
        self.assertIsInstance(got["score"], float)
        self.assertTrue(0.0 < got["score"] <= 1.0001)

    def test_only_the_first_max_text_length_characters_count(self):
        english = "The children are playing in the garden while the cat sleeps on the sofa. "
        german = "Die Kinder spielen im Garten, während die Katze auf dem Sofa schläft. " * 20
        self.assertEqual(len(model.normalize(english + german, 100)), 100)
        self.assertEqual(self.identify(english + german)["language"], "eng_Latn")
        self.assertEqual(self.identify(german + english)["language"], "deu_Latn")

    def test_line_breaks_do_not_reach_fasttext(self):
        got = self.identify(
            "Le petit chat\ndort sur le canapé\r\n\tpendant que les enfants jouent."
        )
        self.assertEqual(got["language"], "fra_Latn")

    def test_score_is_not_rounded(self):
        scores = {
            self.identify(t)["score"]
            for t in ("Mein Bruder sucht Arbeit.", "Mon frère cherche un travail.", "hello there")
        }
        self.assertTrue(any(s != round(s, 4) for s in scores), scores)


if __name__ == "__main__":
    unittest.main()
