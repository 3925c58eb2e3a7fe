"""Unit tests of logic.py: python3 -m unittest discover -s src"""

import unittest

import logic


class LogicTest(unittest.TestCase):
    def test_adds_the_field_and_keeps_a_newline(self):
        options = logic.parse_options([])
        self.assertEqual(logic.apply(options, b'{"a":1}'), b'{"a":1,"transformed_by":"{{name}}"}')
        options = logic.parse_options([("field", "dc"), ("value", "eu-1")])
        self.assertEqual(logic.apply(options, b'{"a":1}\n'), b'{"a":1,"dc":"eu-1"}\n')

    def test_drops_blank_records_and_fails_the_others(self):
        options = logic.parse_options([])
        self.assertIsNone(logic.apply(options, b""))
        self.assertIsNone(logic.apply(options, b" \n"))
        for data, reason in [(b"nope", "not JSON"), (b"\xff", "not JSON"), (b"[1]", "not an object")]:
            with self.assertRaisesRegex(ValueError, reason):
                logic.apply(options, data)

    def test_refuses_unknown_options(self):
        with self.assertRaisesRegex(ValueError, "'feild'"):
            logic.parse_options([("feild", "x")])


if __name__ == "__main__":
    unittest.main()
