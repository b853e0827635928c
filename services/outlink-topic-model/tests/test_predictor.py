"""The predictor's unit tests, in the isvc's own venv:
`MODEL_PATH=... PYTHONPATH=predictor:transformer python -m unittest discover -s tests`.
Without MODEL_PATH the tests that need the model skip."""

import os
import unittest

import model
from kserve.errors import InvalidInput

REQUEST = {"features_str": "Q1 Q2", "lang": "en", "page_title": None, "page_id": 7}


class Request(unittest.TestCase):
    def rejected(self, change: dict) -> str:
        with self.assertRaises(InvalidInput) as caught:
            model.request_of({**REQUEST, **change})
        return str(caught.exception.reason)

    def test_defaults(self):
        got = model.request_of(REQUEST)
        self.assertEqual((got["threshold"], got["debug"]), (0.5, False))

    def test_threshold_must_be_a_float(self):
        for value in (1, "0.5", True, None):
            self.assertEqual(
                self.rejected({"threshold": value}), 'Expected "threshold" to be a float'
            )

    def test_features_are_one_line(self):
        self.assertIn("features_str", self.rejected({"features_str": "Q1\nQ2"}))
        self.assertIn("features_str", self.rejected({"features_str": ["Q1"]}))

    def test_not_an_object(self):
        with self.assertRaises(InvalidInput):
            model.request_of(["features_str"])


class ArticleUrl(unittest.TestCase):
    def test_title_as_given(self):
        self.assertEqual(
            model.article_url("en", "Toni Morrison", 43165),
            "https://en.wikipedia.org/wiki/Toni Morrison",
        )

    def test_page_id(self):
        self.assertEqual(
            model.article_url("fr", None, 42), "https://fr.wikipedia.org/wiki?curid=42"
        )


@unittest.skipUnless(os.environ.get("MODEL_PATH"), "MODEL_PATH names no model")
class WithModel(unittest.TestCase):
    # Wikidata items of the training vocabulary's biography and literature rows.
    QIDS = "Q5 Q36180 Q482980 Q6581072 Q7725634 Q1860 Q30"

    @classmethod
    def setUpClass(cls):
        cls.isvc = model.OutlinkTopicModel("outlink-topic-model")

    def predict(self, **request) -> dict:
        return self.isvc.predict(model.request_of({**REQUEST, **request}))["prediction"]

    def test_results_at_or_above_threshold_best_first(self):
        got = self.predict(features_str=self.QIDS, threshold=0.1)
        scores = [r["score"] for r in got["results"]]
        self.assertTrue(scores)
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertTrue(all(s >= 0.1 for s in scores))
        self.assertEqual(got["article"], "https://en.wikipedia.org/wiki?curid=7")

    def test_threshold_zero_gives_every_topic(self):
        got = self.predict(features_str=self.QIDS, threshold=0.0)
        self.assertEqual(len(got["results"]), len(self.isvc.model.get_labels()))
        self.assertEqual(len(got["results"]), 64)

    def test_scores_at_full_precision(self):
        scores = [
            r["score"] for r in self.predict(features_str=self.QIDS, threshold=0.0)["results"]
        ]
        self.assertTrue(any(s != round(s, 4) for s in scores))


if __name__ == "__main__":
    unittest.main()
