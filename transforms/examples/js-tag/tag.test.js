// node --test: the logic of tag.js on plain node, no component needed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, tag } from './tag.js';

const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder().decode(b);

test('adds the field and keeps a trailing newline', () => {
  const opts = parseConfig([['value', 'eu-1']]);
  assert.equal(dec(tag(opts, enc('{"a":1}\n'))), '{"a":1,"sluice_tag":"eu-1"}\n');
  assert.equal(dec(tag(parseConfig([['field', 'dc'], ['value', 'x']]), enc('{"a":1}'))), '{"a":1,"dc":"x"}');
});

test('bad records throw the reason', () => {
  const opts = parseConfig([['value', 'v']]);
  assert.throws(() => tag(opts, enc('nope')), /^record is not JSON/);
  assert.throws(() => tag(opts, new Uint8Array([0xff])), /^record is not JSON/);
  assert.throws(() => tag(opts, enc('[1]')), /not an object/);
});

test('config errors name the option', () => {
  assert.throws(() => parseConfig([]), /^value: required/);
  assert.throws(() => parseConfig([['valeu', 'x']]), /"valeu"/);
});
