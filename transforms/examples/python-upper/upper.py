"""The plugin's logic, kept free of the generated bindings (wit_world) so it
runs and is tested with a plain Python: ``python3 -m unittest`` here.

``field`` (option ``field=NAME``, default ``message``) of each JSON object
record is upper-cased. A record that is not a JSON object, or whose field is
not a string, is failed with a message; a record without the field is kept as
it is.
"""

import json


def parse_config(config):
    """The field name from the ``(key, value)`` pairs, or ValueError naming the problem."""
    field = "message"
    for key, value in config:
        if key == "field" and value:
            field = value
        else:
            raise ValueError(f"unknown or empty option {key!r}; known option: field")
    return field


def upper(field, data):
    """New data for one record; ValueError with the reason to fail it."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"record is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError("record is JSON but not an object")
    if field not in doc:
        return data
    if not isinstance(doc[field], str):
        raise ValueError(f"field {field!r} is not a string")
    doc[field] = doc[field].upper()
    out = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return out + b"\n" if data.endswith(b"\n") else out
