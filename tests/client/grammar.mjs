// grammar.mjs - constrained decoding (response_format, tool_choice) through
// the official openai npm package. Run by tests/scripts/server.sh against a
// server on a random-weight Qwen3-architecture model (it babbles: only the
// grammar makes its output JSON):
//   node grammar.mjs BASE_URL SCHEMAS_JSON OUT_JSON
// Prints "ok"/"FAIL" lines for the protocol checks (finish_reason, stream
// deltas, error statuses) and "grammar-client: N passed, M failed"; writes
// every generated answer with its schema to OUT_JSON, which
// tests/server/validate_grammar.py checks with an independent JSON Schema
// validator (Python's jsonschema).
import OpenAI from 'openai';
import fs from 'node:fs';

const [baseURL, schemasPath, outPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
let pass = 0, fail = 0;
const ok = (name) => { console.log(`ok   ${name}`); pass++; };
const bad = (name, why) => { console.log(`FAIL ${name}: ${why}`); fail++; };
const check = (cond, name, why) => (cond ? ok(name) : bad(name, why));
const out = [];
const model = 'q';
const messages = [{ role: 'user', content: 'Answer in JSON.' }];

// Streams a chat completion; returns the message and finish_reason as the non-streamed answer has them.
async function streamed(body) {
  const stream = await client.chat.completions.create({ ...body, stream: true });
  let content = '', finish = null, role = null;
  const calls = [];
  for await (const ch of stream) {
    for (const c of ch.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) content += c.delta.content;
      for (const t of c.delta.tool_calls ?? []) {
        if (t.id) calls[t.index] = { id: t.id, type: 'function', function: { name: t.function.name, arguments: '' }, index: t.index };
        if (t.function?.arguments) calls[t.index].function.arguments += t.function.arguments;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  return { message: { role, content, tool_calls: calls.length ? calls : undefined }, finish_reason: finish };
}

async function answer(body, stream) {
  if (stream) return streamed(body);
  const r = await client.chat.completions.create(body);
  return r.choices[0];
}

async function expectError(name, fn, status, param) {
  try {
    await fn();
    bad(name, 'no error');
  } catch (e) {
    const p = e?.error?.param ?? e?.param;
    check(e.status === status && (param === undefined || p === param) && typeof e.message === 'string', name,
          `status ${e.status} param ${p} ${e.message}`);
  }
}

const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: {
    type: 'object', properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['celsius', 'fahrenheit'] } },
    required: ['city', 'unit'], additionalProperties: false } } },
  { type: 'function', function: { name: 'add', parameters: {
    type: 'object', properties: { a: { type: 'integer' }, b: { $ref: '#/$defs/num' } }, required: ['a', 'b'],
    $defs: { num: { type: 'number' } } } } },
];

try {
  // response_format json_schema: every schema, alternately streamed
  const schemas = JSON.parse(fs.readFileSync(schemasPath, 'utf8'));
  for (const [i, s] of schemas.entries()) {
    const stream = i % 2 === 1;
    const c = await answer({ model, messages, seed: i + 1, max_tokens: 600,
                             response_format: { type: 'json_schema', json_schema: { name: s.name, schema: s.schema, strict: true } } },
                           stream);
    out.push({ kind: 'schema', name: s.name, schema: s.schema, content: c.message.content, finish: c.finish_reason, stream });
  }
  ok(`response_format json_schema: ${schemas.length} schemas answered`);

  // json_object: the bias on '"' (1) and '}' (92) only shortens the babble; the grammar makes it an object
  for (const stream of [false, true]) {
    const c = await answer({ model, messages, seed: 11, max_tokens: 400, logit_bias: { 1: 10, 92: 10 },
                             response_format: { type: 'json_object' } }, stream);
    out.push({ kind: 'object', name: `json_object${stream ? ' (stream)' : ''}`, content: c.message.content,
               finish: c.finish_reason, stream });
  }

  // tool_choice required / named, one call (parallel_tool_calls false), streamed and not
  const plain = [];
  for (let seed = 1; seed <= 4; seed++) {
    const stream = seed > 2;
    const c = await answer({ model, messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools: TOOLS,
                             tool_choice: 'required', parallel_tool_calls: false, seed, max_tokens: 300 }, stream);
    out.push({ kind: 'tools', name: `required seed ${seed}${stream ? ' (stream)' : ''}`, tools: TOOLS, calls: c.message.tool_calls ?? [],
               content: c.message.content, finish: c.finish_reason, single: true });
    if (!stream) plain.push(c);
    if (stream) {
      const idx = (c.message.tool_calls ?? []).map((t) => t.index);
      check(idx.length === 1 && idx[0] === 0 && c.message.tool_calls[0].id.length > 0, `stream tool call seed ${seed}: index 0, id, name`,
            JSON.stringify(c.message.tool_calls));
    }
  }
  for (const stream of [false, true]) {
    const c = await answer({ model, messages, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'add' } },
                             parallel_tool_calls: false, seed: 7, max_tokens: 300 }, stream);
    out.push({ kind: 'tools', name: `named add${stream ? ' (stream)' : ''}`, tools: TOOLS, calls: c.message.tool_calls ?? [],
               content: c.message.content, finish: c.finish_reason, named: 'add', single: true });
  }
  // parallel calls allowed: every call the answer holds is valid (it may run out of tokens while calling more)
  const par = await answer({ model, messages, tools: TOOLS, tool_choice: 'required', seed: 9, max_tokens: 200 }, false);
  out.push({ kind: 'tools', name: 'required, parallel', tools: TOOLS, calls: par.message.tool_calls ?? [],
             content: par.message.content, finish: par.finish_reason, single: false });
  // the same request streamed and not: identical calls
  const body = { model, messages, tools: TOOLS, tool_choice: 'required', parallel_tool_calls: false, seed: 5, max_tokens: 300 };
  const a = await answer(body, false), b = await answer(body, true);
  const strip = (calls) => JSON.stringify((calls ?? []).map((t) => [t.function.name, t.function.arguments]));
  check(strip(a.message.tool_calls) === strip(b.message.tool_calls) && a.finish_reason === b.finish_reason,
        'tool call: stream equals non-stream for one seed', `${strip(a.message.tool_calls)} vs ${strip(b.message.tool_calls)}`);

  // round trip: the call, its result, the next answer
  const call = plain[0]?.message.tool_calls?.[0];
  if (call) {
    const next = await client.chat.completions.create({ model, tools: TOOLS, seed: 1, max_tokens: 16, messages: [
      { role: 'user', content: 'What is the weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: call.id, type: 'function', function: call.function }] },
      { role: 'tool', tool_call_id: call.id, content: '18 C, sunny' }] });
    check(next.choices.length === 1 && ['stop', 'length', 'tool_calls'].includes(next.choices[0].finish_reason),
          'tool round trip: call, result, next answer', JSON.stringify(next.choices[0]).slice(0, 200));
  } else {
    bad('tool round trip', 'no call to start from');
  }

  // errors
  await expectError('unsupported schema keyword -> 400 response_format', () => client.chat.completions.create({
    model, messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {
      type: 'object', properties: { zip: { type: 'string', pattern: '^[0-9]{5}$' } } } } } }), 400, 'response_format');
  await expectError('malformed schema -> 400 response_format', () => client.chat.completions.create({
    model, messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 5 } } } }),
  400, 'response_format');
  await expectError('unsatisfiable schema -> 400 response_format', () => client.chat.completions.create({
    model, messages, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', enum: [1] } } } }),
  400, 'response_format');
  await expectError('tool parameters with an unsupported keyword, tool_choice required -> 400 tools', () =>
    client.chat.completions.create({ model, messages, tool_choice: 'required', tools: [{ type: 'function', function: {
      name: 'f', parameters: { type: 'object', properties: { d: { type: 'string', format: 'uri' } } } } }] }), 400, 'tools');
  await expectError('response_format with tool_choice required -> 400', () => client.chat.completions.create({
    model, messages, tools: TOOLS, tool_choice: 'required', response_format: { type: 'json_object' } }), 400, 'response_format');
} catch (e) {
  bad('grammar client run', e.stack || String(e));
}
fs.writeFileSync(outPath, JSON.stringify(out, null, 1));
console.log(`grammar-client: ${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
