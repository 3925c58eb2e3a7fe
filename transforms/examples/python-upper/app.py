"""python-upper: a sluice transform written in Python (componentize-py).

The component's entry point: componentize-py looks for the ``WitWorld``
class in this module and exports its methods as the world's ``init`` and
``transform``. The logic lives in ``upper.py`` so it is testable without the
bindings, which exist only inside the component build.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

import upper

# One component instance serves many batches; init sets this once.
_field = None


class WitWorld(wit_world.WitWorld):
    def init(self, config):
        global _field
        try:
            _field = upper.parse_config(config)
        except ValueError as e:
            # Raising Err(...) is how componentize-py returns result::err.
            raise Err(str(e))

    def transform(self, ctx, records):
        out = []
        for r in records:
            try:
                if _field is None:
                    raise ValueError("transform called before a successful init")
                data = upper.upper(_field, r.data)
                out.append(types.OutputRecord(r.record_id, types.Outcome_Ok(), data, []))
            except ValueError as e:
                # Fail this record only; an uncaught exception would trap and
                # fail the whole batch after retries.
                out.append(types.OutputRecord(r.record_id, types.Outcome_ProcessingFailed(str(e)), b"", []))
        failed = sum(isinstance(o.outcome, types.Outcome_ProcessingFailed) for o in out)
        if failed:
            # One line per batch; each record's message goes with it to processing-failed.
            wit_world.log(types.Level.WARN, f"{ctx.invocation_id}: {failed} record(s) failed")
        return out
