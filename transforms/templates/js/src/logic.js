// The plugin's logic, free of component imports, so node runs it directly
// (`node --test test/logic.test.js`); component.js wires it to the world.
//
// Per record: a JSON object gets one more field, `field` (option, default
// "transformed_by") set to `value` (option, default "{{name}}"); an empty or
// blank record is dropped (null); anything else throws a string, the reason,
// which fails that record to the stream's processing-failed error output.

export function parseOptions(config) {
  const options = { field: 'transformed_by', value: '{{name}}' };
  for (const [key, val] of config) {
    if ((key === 'field' && val !== '') || key === 'value') options[key] = val;
    else throw `unknown or empty option ${JSON.stringify(key)}; known options: field, value`;
  }
  return options;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

// New bytes for one record, null to drop it, or throws the reason to fail it.
export function apply({ field, value }, data) {
  let text;
  try {
    text = decoder.decode(data);
  } catch (e) {
    throw `record is not JSON: not UTF-8 (${e.message})`;
  }
  if (text.trim() === '') return null;
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw `record is not JSON: ${e.message}`;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw 'record is JSON but not an object';
  }
  doc[field] = value;
  // Records often end with a newline (the stream's delimiter): keep it.
  const newline = text.endsWith('\n') ? '\n' : '';
  return encoder.encode(JSON.stringify(doc) + newline);
}
