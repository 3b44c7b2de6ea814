// client.mjs - drives `mica serve` with the official openai npm package, as
// an application would. Run by tests/scripts/server.sh:
//   node client.mjs BASE_URL API_KEY
// BASE_URL is http://127.0.0.1:PORT/v1 of a server started with --api-key API_KEY.
// Prints "ok"/"FAIL" lines and "client: N passed, M failed".
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
let pass = 0, fail = 0;
const ok = (name) => { console.log(`ok   ${name}`); pass++; };
const bad = (name, why) => { console.log(`FAIL ${name}: ${why}`); fail++; };
const check = (cond, name, why) => (cond ? ok(name) : bad(name, why));

async function expectError(name, fn, status, param) {
  try {
    await fn();
    bad(name, 'no error');
  } catch (e) {
    const p = e?.error?.param ?? e?.param;
    check(e.status === status && (param === undefined || p === param), name,
          `status ${e.status} param ${p} ${e.message}`);
  }
}

const messages = [{ role: 'system', content: 'You tell stories.' },
                  { role: 'user', content: 'Once upon a time' }];

try {
  const models = await client.models.list();
  const ids = [];
  for await (const m of models) ids.push(m.id);
  check(ids.length === 1 && ids[0].length > 0, 'models.list', JSON.stringify(ids));
  const model = ids[0];

  const plain = await client.chat.completions.create({ model, messages, temperature: 0, max_completion_tokens: 12 });
  const c0 = plain.choices[0];
  check(typeof c0.message.content === 'string' && c0.message.role === 'assistant', 'chat: content',
        JSON.stringify(c0));
  check(plain.usage.completion_tokens <= 12 && plain.usage.completion_tokens > 0 &&
        plain.usage.total_tokens === plain.usage.prompt_tokens + plain.usage.completion_tokens,
        'chat: max_completion_tokens honoured, usage adds up', JSON.stringify(plain.usage));

  const stream = await client.chat.completions.create({ model, messages, temperature: 0, max_completion_tokens: 12,
                                                        stream: true, stream_options: { include_usage: true } });
  let text = '', role = null, finish = null, usage = null, chunks = 0;
  for await (const ch of stream) {
    chunks++;
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(text === (c0.message.content ?? ''), 'stream: deltas concatenate to the non-streamed answer',
        `${JSON.stringify(text)} vs ${JSON.stringify(c0.message.content)}`);
  check(role === 'assistant' && finish === c0.finish_reason, 'stream: role and finish_reason', `${role} ${finish}`);
  check(usage && usage.completion_tokens === plain.usage.completion_tokens, 'stream: usage chunk',
        JSON.stringify(usage));

  const s1 = await client.chat.completions.create({ model, messages, temperature: 1, seed: 7, max_tokens: 16 });
  const s2 = await client.chat.completions.create({ model, messages, temperature: 1, seed: 7, max_tokens: 16 });
  check(s1.choices[0].message.content === s2.choices[0].message.content, 'seed: same seed, same answer',
        `${s1.choices[0].message.content} | ${s2.choices[0].message.content}`);

  const lp = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 6, logprobs: true,
                                                    top_logprobs: 3 });
  const lpc = lp.choices[0].logprobs?.content ?? [];
  check(lpc.length === lp.usage.completion_tokens && lpc.every((e) => e.logprob <= 0 && e.top_logprobs.length === 3 &&
        e.top_logprobs[0].logprob === e.logprob), 'logprobs: one greedy entry per token, top 3',
        JSON.stringify(lp.choices[0].logprobs).slice(0, 300));

  const words = (c0.message.content ?? '').split(' ').filter((w) => w.length > 2);
  if (words.length > 1) {
    const st = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 12,
                                                      stop: [words[1]] });
    const want = c0.message.content.slice(0, c0.message.content.indexOf(words[1]));
    check(st.choices[0].message.content === want && st.choices[0].finish_reason === 'stop', 'stop string',
          `${JSON.stringify(st.choices[0].message.content)} vs ${JSON.stringify(want)}`);
  } else {
    bad('stop string', `answer too short to pick a stop word: ${c0.message.content}`);
  }

  const cmpl = await client.completions.create({ model, prompt: 'Once upon a time', temperature: 0, max_tokens: 8 });
  check(typeof cmpl.choices[0].text === 'string' && cmpl.usage.completion_tokens <= 8, 'completions.create',
        JSON.stringify(cmpl));

  await expectError('unsupported field is a 400 naming it',
                    () => client.chat.completions.create({ model, messages, reasoning_effort: 'high' }), 400,
                    'reasoning_effort');
  const kid = { type: 'object', properties: { who: { enum: ['Lily', 'Tom'] }, big: { type: 'boolean' } },
                required: ['who', 'big'], additionalProperties: false };
  const js = await client.chat.completions.create({ model, messages, seed: 3, max_tokens: 100, response_format: {
    type: 'json_schema', json_schema: { name: 'kid', schema: kid, strict: true } } });
  let parsed = null;
  try { parsed = JSON.parse(js.choices[0].message.content); } catch { parsed = null; }
  check(js.choices[0].finish_reason === 'stop' && parsed && ['Lily', 'Tom'].includes(parsed.who) &&
        typeof parsed.big === 'boolean' && Object.keys(parsed).length === 2,
        'response_format json_schema: the answer is JSON of the schema', JSON.stringify(js.choices[0]));
  await expectError('response_format with an unsupported keyword is a 400',
                    () => client.chat.completions.create({ model, messages, response_format: {
                      type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '^a+$' } } } }),
                    400, 'response_format');
  await expectError('missing model is a 400', () => client.chat.completions.create({ messages }), 400, 'model');
  const wrong = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0, timeout: 30000 });
  await expectError('wrong API key is a 401', () => wrong.chat.completions.create({ model, messages }), 401);
} catch (e) {
  bad('client run', e.stack || String(e));
}
console.log(`client: ${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
