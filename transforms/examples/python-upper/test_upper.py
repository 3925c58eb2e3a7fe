"""Unit tests of upper.py (plain unittest, also collected by pytest)."""

import unittest

import upper


class UpperTest(unittest.TestCase):
    def test_upper_cases_the_field_and_keeps_newline(self):
        self.assertEqual(upper.upper("message", b'{"message":"hi","n":1}\n'), b'{"message":"HI","n":1}\n')

    def test_record_without_the_field_is_unchanged(self):
        self.assertEqual(upper.upper("message", b'{ "other": 1 }'), b'{ "other": 1 }')

    def test_bad_records_raise_with_the_reason(self):
        for data, reason in [
            (b"nope", "not JSON"),
            (b"\xff", "not JSON"),
            (b"[1]", "not an object"),
            (b'{"message":3}', "not a string"),
        ]:
            with self.assertRaisesRegex(ValueError, reason):
                upper.upper("message", data)

    def test_config(self):
        self.assertEqual(upper.parse_config([]), "message")
        self.assertEqual(upper.parse_config([("field", "name")]), "name")
        with self.assertRaisesRegex(ValueError, "unknown or empty option 'feild'"):
            upper.parse_config([("feild", "x")])


if __name__ == "__main__":
    unittest.main()
