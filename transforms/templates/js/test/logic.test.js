// node --test test/logic.test.js: the logic on plain node, no component needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseOptions, apply } from '../src/logic.js';

const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder().decode(b);

test('adds the field and keeps a trailing newline', () => {
  assert.equal(dec(apply(parseOptions([]), enc('{"a":1}'))), '{"a":1,"transformed_by":"{{name}}"}');
  const options = parseOptions([['field', 'dc'], ['value', 'eu-1']]);
  assert.equal(dec(apply(options, enc('{"a":1}\n'))), '{"a":1,"dc":"eu-1"}\n');
});

test('drops blank records and fails the others', () => {
  const options = parseOptions([]);
  assert.equal(apply(options, enc('')), null);
  assert.equal(apply(options, enc(' \n')), null);
  assert.throws(() => apply(options, enc('nope')), /^record is not JSON/);
  assert.throws(() => apply(options, new Uint8Array([0xff])), /^record is not JSON/);
  assert.throws(() => apply(options, enc('[1]')), /not an object/);
});

test('refuses unknown options', () => {
  assert.throws(() => parseOptions([['feild', 'x']]), /"feild"/);
});
