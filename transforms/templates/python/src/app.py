"""{{name}}: a sluice transform plugin in Python (componentize-py).

The component's entry point: componentize-py looks for the ``WitWorld`` class
in this module and exports its methods as the world's ``init`` and
``transform`` (wit/transform.wit). The logic lives in ``logic.py`` so it is
tested with a plain Python, without these bindings (they exist only inside the
component build).
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import logic

# One instance serves many batches; init sets this once.
_options = None


class WitWorld(wit_world.WitWorld):
    def init(self, config):
        global _options
        try:
            _options = logic.parse_options(config)
        except ValueError as e:
            # Raising Err(...) is how componentize-py returns result::err.
            raise Err(str(e))

    def transform(self, ctx, records):
        out = []
        failed = 0
        for r in records:
            try:
                if _options is None:
                    raise ValueError("transform called before a successful init")
                data = logic.apply(_options, r.data)
                if data is None:
                    out.append(types.OutputRecord(r.record_id, types.Outcome_Dropped(), b"", []))
                else:
                    out.append(types.OutputRecord(r.record_id, types.Outcome_Ok(), data, []))
            except ValueError as e:
                # Fail this record only; an uncaught exception would trap and fail
                # the whole batch.
                failed += 1
                out.append(types.OutputRecord(r.record_id, types.Outcome_ProcessingFailed(str(e)), b"", []))
        if failed:
            # One line per batch (sluice rate-limits the log).
            wit_world.log(types.Level.WARN, f"{ctx.invocation_id}: {failed} record(s) failed")
        return out
