// The plugin's logic, free of component imports so node runs it directly:
// `node --test` in this directory. component.js wires it to the world.
//
// Adds a field to every JSON object record: option `field` (default
// "sluice_tag") set to option `value` (required). Records that are not JSON
// objects fail with a message.

export function parseConfig(config) {
  let field = 'sluice_tag';
  let value;
  for (const [key, val] of config) {
    if (key === 'field' && val !== '') field = val;
    else if (key === 'value') value = val;
    else throw `unknown or empty option ${JSON.stringify(key)}; known options: field, value`;
  }
  if (value === undefined) throw 'value: required, the text to put in the tag field';
  return { field, value };
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

// New bytes for one record, or throws a string: the reason to fail it.
export function tag({ field, value }, data) {
  let doc;
  try {
    doc = JSON.parse(decoder.decode(data));
  } catch (e) {
    throw `record is not JSON: ${e.message}`;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw 'record is JSON but not an object';
  }
  doc[field] = value;
  const newline = data.length > 0 && data[data.length - 1] === 0x0a ? '\n' : '';
  return encoder.encode(JSON.stringify(doc) + newline);
}
