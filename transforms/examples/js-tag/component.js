// js-tag: a sluice transform written in JavaScript (componentize-js).
//
// The component's entry point: its exports `init` and `transform` are the
// world's. componentize-js maps WIT to JS as: records -> objects with
// camelCase fields, list<u8> -> Uint8Array, variants -> { tag, val },
// enums -> strings, tuples -> arrays. A world-level import (`log`) is the
// default export of a module named after it. Throwing a non-Error value from
// `init` returns result::err with that value.
import log from 'log';
import { parseConfig, tag } from './tag.js';

let options;

export function init(config) {
  options = parseConfig(config);
}

export function transform(ctx, records) {
  let failed = 0;
  const out = records.map((r) => {
    try {
      if (options === undefined) throw 'transform called before a successful init';
      return { recordId: r.recordId, outcome: { tag: 'ok' }, data: tag(options, r.data), partitionKeys: [] };
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
  if (failed > 0) log('warn', `${ctx.invocationId}: ${failed} record(s) failed`);
  return out;
}
