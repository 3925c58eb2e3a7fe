"""The plugin's logic, free of the generated bindings, so ``python3 -m unittest``
runs it directly.

Per record: a JSON object gets one more field, ``field`` (option, default
``transformed_by``) set to ``value`` (option, default ``{{name}}``); an empty or
blank record is dropped; anything else raises ValueError with the reason, which
fails that record to the stream's processing-failed error output.
"""

import json


def parse_options(config):
    """The options from the ``(key, value)`` pairs, or ValueError naming the problem."""
    options = {"field": "transformed_by", "value": "{{name}}"}
    for key, value in config:
        if (key == "field" and value) or key == "value":
            options[key] = value
        else:
            raise ValueError(f"unknown or empty option {key!r}; known options: field, value")
    return options


def apply(options, data):
    """New data for one record, None to drop it, or ValueError to fail it."""
    if not data.strip():
        return None
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"record is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ValueError("record is JSON but not an object")
    doc[options["field"]] = options["value"]
    out = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    # Records often end with a newline (the stream's delimiter): keep it.
    return out + b"\n" if data.endswith(b"\n") else out
