"""The transformer's unit tests, in the isvc's own venv, without MediaWiki: the request's checks,
the wiki table, the MediaWiki error classes, the retries and the title batches."""

import asyncio
import os
import unittest
from unittest import mock

import aiohttp
import mwapi.errors
import transformer
from kserve.errors import InvalidInput


def make() -> transformer.OutlinkTransformer:
    with mock.patch.dict(os.environ, {"MW_API_MAX_RETRIES": "2", "MW_API_RETRY_BASE_DELAY": "0"}):
        return transformer.OutlinkTransformer("outlink-topic-model", "127.0.0.1:1")


class Request(unittest.TestCase):
    def setUp(self):
        self.isvc = make()

    def rejected(self, payload) -> str:
        with self.assertRaises(InvalidInput) as caught:
            asyncio.run(self.isvc.preprocess(payload))
        return str(caught.exception.reason)

    def test_lang_checks(self):
        self.assertEqual(self.rejected({"page_id": 1}), 'Missing "lang" in input data.')
        self.assertEqual(
            self.rejected({"lang": 5, "page_id": 1}), 'Expected "lang" to be a string.'
        )
        # A trailing newline is no language code: a 400, never a 500.
        for lang in ("en\n", "xx-not-a-wiki", "", "enwiki"):
            self.assertIn("Unsupported lang", self.rejected({"lang": lang, "page_id": 1}))

    def test_wiki_id_maps_to_lang(self):
        self.assertEqual(self.isvc.lang_of({"wiki_id": "enwiki"}), "en")
        self.assertEqual(self.isvc.lang_of({"wiki_id": "be_x_oldwiki"}), "be-tarask")
        self.assertEqual(self.isvc.lang_of({"wiki_id": "dewiki", "lang": "fr"}), "fr")
        self.assertEqual(self.rejected({"wiki_id": "nope", "page_id": 1}), "Unknown wiki_id: nope")
        self.assertIn("Unknown wiki_id", self.rejected({"wiki_id": ["enwiki"], "page_id": 1}))

    def test_title_or_id(self):
        self.assertIn("either", self.rejected({"lang": "en"}))
        self.assertIn("either", self.rejected({"lang": "en", "revision_id": 5}))
        self.assertIn("both", self.rejected({"lang": "en", "page_title": "A", "page_id": 1}))
        self.assertIn("page_title", self.rejected({"lang": "en", "page_title": ["A"]}))
        for page_id in ({"a": 1}, -3, "12a", True, 1.5):
            self.assertIn("page_id", self.rejected({"lang": "en", "page_id": page_id}))
        self.assertIn(
            "revision_id", self.rejected({"lang": "en", "page_id": 1, "revision_id": "x"})
        )

    def test_threshold_is_a_float(self):
        for value in (1, "high", None):
            got = self.rejected({"lang": "en", "page_id": 1, "threshold": value})
            self.assertEqual(got, 'Expected "threshold" to be a float')

    def test_body_must_be_a_json_object(self):
        for payload in ([1], "x", b"{not json", b"[]"):
            self.assertEqual(
                self.rejected(payload), "Please verify that request input is a json dict"
            )

    def test_given_features_skip_mediawiki(self):
        got = asyncio.run(
            self.isvc.preprocess({"lang": "en", "page_id": 3, "features_str": "Q1", "debug": True})
        )
        self.assertEqual(
            got,
            {"features_str": "Q1", "page_id": 3, "page_title": None, "lang": "en",
             "threshold": 0.0, "debug": True},
        )  # fmt: skip


class Errors(unittest.TestCase):
    def test_error_code_from_mwapi_message(self):
        err = mwapi.errors.RequestError("nosuchrevid: There is no revision with ID 5. -- {}")
        self.assertEqual(transformer.api_error_code(err), "nosuchrevid")
        self.assertIsNone(
            transformer.api_error_code(mwapi.errors.RequestError("Cannot connect: x"))
        )

    def test_transient_or_not(self):
        def http(status):
            info = mock.Mock(real_url="http://wiki")
            return aiohttp.ClientResponseError(info, (), status=status)

        wrapped_503 = mwapi.errors.RequestError("503")
        wrapped_503.__cause__ = http(503)
        wrapped_501 = mwapi.errors.RequestError("501")
        wrapped_501.__cause__ = http(501)
        self.assertTrue(transformer.is_transient(TimeoutError()))
        self.assertTrue(transformer.is_transient(aiohttp.ServerDisconnectedError()))
        self.assertTrue(transformer.is_transient(wrapped_503))
        self.assertTrue(transformer.is_transient(mwapi.errors.RequestError("maxlag: lagged -- x")))
        self.assertFalse(transformer.is_transient(wrapped_501))
        self.assertFalse(transformer.is_transient(mwapi.errors.RequestError("nosuchrevid: x -- y")))
        self.assertFalse(transformer.is_transient(ValueError("bad")))


class Retries(unittest.TestCase):
    def test_transient_failures_are_retried_up_to_the_limit(self):
        isvc = make()
        calls = []

        async def flaky():
            calls.append(1)
            if len(calls) <= 2:
                raise aiohttp.ServerDisconnectedError()
            return "ok"

        self.assertEqual(asyncio.run(isvc.with_retries(flaky, "test")), "ok")
        self.assertEqual(len(calls), 3)

        calls.clear()

        async def down():
            calls.append(1)
            raise aiohttp.ServerDisconnectedError()

        with self.assertRaises(aiohttp.ServerDisconnectedError):
            asyncio.run(isvc.with_retries(down, "test"))
        self.assertEqual(len(calls), 3)  # MW_API_MAX_RETRIES=2: three attempts

    def test_permanent_failures_are_not_retried(self):
        isvc = make()
        calls = []

        async def gone():
            calls.append(1)
            raise mwapi.errors.RequestError("missingtitle: gone -- {}")

        with self.assertRaises(mwapi.errors.RequestError):
            asyncio.run(isvc.with_retries(gone, "test"))
        self.assertEqual(len(calls), 1)


class Batches(unittest.TestCase):
    def test_at_most_50_titles(self):
        batches = transformer.title_batches([f"T{i}" for i in range(120)])
        self.assertEqual([len(b) for b in batches], [50, 50, 20])

    def test_at_most_6000_bytes(self):
        titles = ["é" * 997] * 10  # 1994 bytes + 3 each
        batches = transformer.title_batches(titles)
        self.assertTrue(all(sum(len(t.encode()) + 3 for t in b) <= 6000 for b in batches))
        self.assertEqual(sum(len(b) for b in batches), 10)


if __name__ == "__main__":
    unittest.main()
