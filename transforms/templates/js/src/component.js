// {{name}}: a sluice transform plugin in JavaScript (componentize-js).
//
// The component's entry point: its exports `init` and `transform` are the
// world's (wit/transform.wit). componentize-js maps WIT to JS as: records ->
// objects with camelCase fields, list<u8> -> Uint8Array, variants ->
// { tag, val }, enums -> strings, tuples -> arrays. The world's `log` import is
// the default export of the module 'log'. Throwing a string from `init`
// returns result::err with it. The logic is in logic.js, tested with node.
import log from 'log';
import { parseOptions, apply } from './logic.js';

// One instance serves many batches; init sets this once.
let options;

export function init(config) {
  options = parseOptions(config);
}

export function transform(ctx, records) {
  let failed = 0;
  const out = records.map((r) => {
    try {
      if (options === undefined) throw 'transform called before a successful init';
      const data = apply(options, r.data);
      if (data === null) {
        return { recordId: r.recordId, outcome: { tag: 'dropped' }, data: new Uint8Array(), partitionKeys: [] };
      }
      return { recordId: r.recordId, outcome: { tag: 'ok' }, data, partitionKeys: [] };
    } catch (reason) {
      // Fail this record only; an uncaught exception would trap the batch.
      failed += 1;
      return {
        recordId: r.recordId,
        outcome: { tag: 'processing-failed', val: String(reason) },
        data: new Uint8Array(),
        partitionKeys: [],
      };
    }
  });
  // One line per batch (sluice rate-limits the log).
  if (failed > 0) log('warn', `${ctx.invocationId}: ${failed} record(s) failed`);
  return out;
}
