// The forms' JavaScript, run as Business Forms runs it (see plugin.mjs), on
// the built dashboards in dashboards/dist.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  compile, optionsContext, panel, payloadContext, showIfContext, submit, updateContext, valueChangedContext,
} from './plugin.mjs';

const bench = panel('administration', 'Start benchmark');
const service = panel('administration', 'Start a service');
const getPayload = compile(bench.options.update.getPayload);

// The fields POST /api/v1/benchmarks accepts (bench-api CreateRun; unknown fields are a 400).
const API_FIELDS = new Set([
  'service_id', 'duration_seconds', 'concurrency', 'mode', 'requests_per_second', 'workload',
  'path', 'model', 'max_tokens', 'arrivals', 'burstiness', 'max_concurrency', 'warmup_seconds',
  'prompts', 'synthetic_prompt_words', 'temperature', 'goodput', 'load_nodes', 'dataset', 'sweep',
  'tokenizer_path',
]);

const base = { service_id: 'svc-1', duration_minutes: 5, mode: 'closed_loop', concurrency: 8, workload: 'http' };

test('Duration 5 minutes is sent as duration_seconds 300, closed loop', () => {
  const p = getPayload(payloadContext(bench, base));
  assert.deepEqual(p, { service_id: 'svc-1', duration_seconds: 300, mode: 'closed_loop', workload: 'http', concurrency: 8 });
  for (const k of Object.keys(p)) {
    assert.ok(API_FIELDS.has(k), `${k} is not a field the API accepts`);
  }
});

test('a duration typed as text "5" is still 300 seconds', () => {
  assert.equal(getPayload(payloadContext(bench, { ...base, duration_minutes: '5' })).duration_seconds, 300);
});

test('open loop sends requests_per_second and no concurrency', () => {
  const p = getPayload(payloadContext(bench, { ...base, mode: 'open_loop', requests_per_second: 20 }));
  assert.equal(p.requests_per_second, 20);
  assert.equal(p.mode, 'open_loop');
  assert.ok(!('concurrency' in p));
});

test('Load nodes 2 is sent as load_nodes; 1 (the default) is not sent', () => {
  const p = getPayload(payloadContext(bench, { ...base, load_nodes: 2 }));
  assert.equal(p.load_nodes, 2);
  assert.equal(p.concurrency, 8);
  assert.ok(!('load_nodes' in getPayload(payloadContext(bench, { ...base, load_nodes: 1 }))));
  const open = getPayload(payloadContext(bench, { ...base, mode: 'open_loop', requests_per_second: 20, load_nodes: 4 }));
  assert.equal(open.load_nodes, 4);
  assert.equal(open.requests_per_second, 20);
});

test('Load nodes above the concurrency, above 64 or not a number: refused naming the field', () => {
  assert.throws(() => getPayload(payloadContext(bench, { ...base, concurrency: 2, load_nodes: 3 })),
    /Concurrency 2 cannot be shared by Load nodes 3/);
  assert.throws(() => getPayload(payloadContext(bench, { ...base, load_nodes: 65 })), /Load nodes must be at most 64/);
  assert.throws(() => getPayload(payloadContext(bench, { ...base, load_nodes: 'two' })), /Load nodes must be a whole number/);
});

test('a random dataset sends its lengths; synthetic (the default) sends nothing', () => {
  const chat = { ...base, workload: 'openai_chat' };
  assert.ok(!('dataset' in getPayload(payloadContext(bench, { ...chat, dataset: 'synthetic' }))));
  const p = getPayload(payloadContext(bench, { ...chat, dataset: 'random', input_len: 256, output_len: 64 }));
  assert.deepEqual(p.dataset, { kind: 'random', input_len: 256, output_len: 64 });
  // An HTTP run takes no dataset, whatever the hidden field holds.
  assert.ok(!('dataset' in getPayload(payloadContext(bench, { ...base, dataset: 'random', input_len: 1, output_len: 1 }))));
  assert.throws(() => getPayload(payloadContext(bench, { ...chat, dataset: 'random', input_len: 0, output_len: 5 })),
    /Input length \(words\) must be a whole number/);
});

test('a ShareGPT or trace file is an absolute path; a trace is closed loop without concurrency', () => {
  const chat = { ...base, workload: 'openai_completions' };
  const sg = getPayload(payloadContext(bench, { ...chat, dataset: 'sharegpt', dataset_path: '/data/sg.json' }));
  assert.deepEqual(sg.dataset, { kind: 'sharegpt', path: '/data/sg.json' });
  assert.throws(() => getPayload(payloadContext(bench, { ...chat, dataset: 'sharegpt', dataset_path: 'sg.json' })),
    /Dataset file must be an absolute path/);
  const trace = getPayload(payloadContext(bench, { ...chat, dataset: 'trace', dataset_path: '/data/t.jsonl' }));
  assert.deepEqual(trace.dataset, { kind: 'trace', path: '/data/t.jsonl' });
  assert.ok(!('concurrency' in trace));
  assert.throws(() => getPayload(payloadContext(bench, {
    ...chat, mode: 'open_loop', requests_per_second: 5, dataset: 'trace', dataset_path: '/t.jsonl',
  })), /choose Closed loop/);
});

test('a tokenizer file is sent for OpenAI workloads as an absolute path', () => {
  const chat = { ...base, workload: 'openai_chat' };
  assert.equal(getPayload(payloadContext(bench, { ...chat, tokenizer_path: '/m/tokenizer.json' })).tokenizer_path,
    '/m/tokenizer.json');
  assert.ok(!('tokenizer_path' in getPayload(payloadContext(bench, { ...chat, tokenizer_path: '' }))));
  assert.ok(!('tokenizer_path' in getPayload(payloadContext(bench, { ...base, tokenizer_path: '/m/t.json' }))));
  assert.throws(() => getPayload(payloadContext(bench, { ...chat, tokenizer_path: 'tokenizer.json' })),
    /Tokenizer file must be an absolute path/);
  const showIf = compile(bench.options.elements.find((e) => e.id === 'tokenizer_path').showIf);
  assert.deepEqual([showIf(showIfContext(bench, base)), showIf(showIfContext(bench, chat))], [false, true]);
});

test('a sweep sends its maximum and needs the E2EL objective', () => {
  const open = { ...base, mode: 'open_loop', requests_per_second: 10 };
  const p = getPayload(payloadContext(bench, { ...open, goodput_e2el_ms: 500, sweep_max: 400 }));
  assert.deepEqual([p.sweep, p.goodput], [{ max: 400 }, { e2el_ms: 500 }]);
  assert.ok(!('sweep' in getPayload(payloadContext(bench, { ...open, sweep_max: '' }))));
  assert.throws(() => getPayload(payloadContext(bench, { ...open, sweep_max: 400 })), /enter SLO: E2EL \(ms\)/);
  assert.throws(() => getPayload(payloadContext(bench, { ...base, goodput_e2el_ms: 500, sweep_max: 2000 })),
    /at most 1024 for closed_loop/);
  assert.throws(() => getPayload(payloadContext(bench, { ...base, goodput_e2el_ms: 500, sweep_max: 64, load_nodes: 2 })),
    /one node/);
});

test('dataset fields follow the workload and the dataset', () => {
  const showIf = (id) => compile(bench.options.elements.find((e) => e.id === id).showIf);
  const http = showIfContext(bench, { ...base, dataset: 'random' });
  const random = showIfContext(bench, { ...base, workload: 'openai_chat', dataset: 'random' });
  const sg = showIfContext(bench, { ...base, workload: 'openai_chat', dataset: 'sharegpt' });
  assert.deepEqual([showIf('dataset')(http), showIf('input_len')(http), showIf('dataset_path')(http)], [false, false, false]);
  assert.deepEqual([showIf('dataset')(random), showIf('input_len')(random), showIf('output_len')(random)], [true, true, true]);
  assert.deepEqual([showIf('dataset_path')(random), showIf('dataset_path')(sg), showIf('input_len')(sg)], [false, true, false]);
});

const valueChanged = compile(bench.options.elementValueChanged);

for (const bad of ['', null, undefined, 'abc', '5.5', '-1', '0', '5min', ' ']) {
  test('duration ' + JSON.stringify(bad) + ': the panel shows an error, submit is disabled, no request', async () => {
    const { context, calls } = valueChangedContext(bench, { ...base, duration_minutes: bad });
    valueChanged(context);
    assert.equal(calls.panelError.length, 1);
    assert.match(calls.panelError[0], /Duration \(min\)/);
    assert.deepEqual(calls.submit, [false]);
    let requests = 0;
    await assert.rejects(
      submit(bench, { ...base, duration_minutes: bad }, () => {
        requests += 1;
        return Promise.reject(new Error('must not be called'));
      }),
      /Duration \(min\)/,
    );
    assert.equal(requests, 0);
  });
}

test('a valid form clears the error and enables submit', () => {
  const { context, calls } = valueChangedContext(bench, base);
  valueChanged(context);
  assert.deepEqual(calls.panelError, ['']);
  assert.deepEqual(calls.submit, [true]);
});

test('the submit button waits for elementValueChanged (updateEnabled manual)', () => {
  assert.equal(bench.options.updateEnabled, 'manual');
});

test('no service chosen: refused', () => {
  assert.throws(() => getPayload(payloadContext(bench, { ...base, service_id: '' })), /Service is empty/);
});

test('getPayload reaches for nothing but what the plugin passes', () => {
  // A snippet that looks at another key fails under the same harness (the check can fail).
  assert.throws(() => compile('return context.grafana.notifyError;')(payloadContext(bench, base)), /does not pass/);
  assert.throws(() => compile('return fetch("/x");')(payloadContext(bench, base)), /fetch is not defined/);
});

test('Service options list only running services', () => {
  const getOptions = compile(bench.options.elements.find((e) => e.id === 'service_id').getOptions);
  const series = [{
    refId: 'services',
    fields: [
      { name: 'id', values: ['svc-a', 'svc-b', 'svc-c', 'svc-d'] },
      { name: 'recipe', values: ['demo-http', 'vllm', 'demo-http', 'vllm'] },
      { name: 'status', values: ['running', 'cancelled', 'pending', 'running'] },
    ],
  }];
  const options = getOptions(optionsContext(bench, series));
  assert.deepEqual(options.map((o) => o.value), ['svc-a', 'svc-d']);
  assert.equal(options[0].label, 'svc-a (demo-http)');
  assert.deepEqual(getOptions(optionsContext(bench, [])), []);
});

test('concurrency shows for closed loop, rate for open loop', () => {
  const showIf = (id) => compile(bench.options.elements.find((e) => e.id === id).showIf);
  const closed = showIfContext(bench, base);
  const open = showIfContext(bench, { ...base, mode: 'open_loop' });
  assert.equal(showIf('concurrency')(closed), true);
  assert.equal(showIf('concurrency')(open), false);
  assert.equal(showIf('requests_per_second')(open), true);
  assert.equal(showIf('requests_per_second')(closed), false);
});

test("the API's error message reaches notifyError", async () => {
  const body = { error: 'duration_seconds must be within 1..=86400', field: 'duration_seconds' };
  const response = new Response(JSON.stringify(body), { status: 400, statusText: 'Bad Request' });
  const { context, calls } = updateContext(bench, response);
  await compile(bench.options.update.code)(context);
  assert.equal(calls.success.length, 0);
  assert.equal(calls.error.length, 1);
  assert.match(calls.error[0][1], /duration_seconds must be within 1\.\.=86400 \(field duration_seconds\)/);
});

test("success shows the run's id and refreshes", async () => {
  const response = new Response(JSON.stringify({ id: 'run-42', status: 'pending' }), { status: 201 });
  const { context, calls } = updateContext(bench, response);
  await compile(bench.options.update.code)(context);
  assert.equal(calls.error.length, 0);
  assert.match(calls.success[0][1], /run-42/);
  assert.equal(calls.refresh, 1);
});

test('a blocked fetch: the panel shows the fetch error and update.code says so', async () => {
  const shown = await submit(bench, base, () => Promise.reject(new TypeError('Failed to fetch')));
  assert.equal(shown.panelError, 'TypeError: Failed to fetch');
  assert.match(shown.error[0][1], /did not reach the API/);
});

test('a whole press: the request carries duration_seconds 300 to the configured URL', async () => {
  const seen = [];
  const shown = await submit(bench, base, async (url, init) => {
    seen.push({ url, init });
    return new Response(JSON.stringify({ id: 'run-7' }), { status: 201 });
  });
  assert.equal(seen.length, 1);
  assert.equal(seen[0].url, '/api/datasources/proxy/uid/aif-bench-api/api/v1/benchmarks');
  assert.equal(seen[0].init.method, 'POST');
  assert.equal(JSON.parse(seen[0].init.body).duration_seconds, 300);
  assert.match(shown.success[0][1], /run-7/);
});

test('Start a service: recipe and JSON parameters, bad JSON refused', async () => {
  const gp = compile(service.options.update.getPayload);
  assert.deepEqual(gp(payloadContext(service, { recipe: 'demo-http', params: '{"port": 8000}' })), {
    recipe: 'demo-http',
    params: { port: 8000 },
  });
  assert.deepEqual(gp(payloadContext(service, { recipe: 'demo-http', params: '' })), { recipe: 'demo-http', params: {} });
  assert.throws(() => gp(payloadContext(service, { recipe: 'demo-http', params: '{port' })), /Parameters must be a JSON object/);
  assert.throws(() => gp(payloadContext(service, { recipe: 'demo-http', params: '[1]' })), /JSON object/);
  assert.throws(() => gp(payloadContext(service, { recipe: '', params: '{}' })), /Recipe is empty/);
});

test('Start a service: recipe options from the recipes query, API error shown', async () => {
  const getOptions = compile(service.options.elements.find((e) => e.id === 'recipe').getOptions);
  const series = [{ refId: 'recipes', fields: [{ name: 'name', values: ['demo-http', 'vllm'] }, { name: 'description', values: ['Python http.server', ''] }] }];
  assert.deepEqual(getOptions(optionsContext(service, series)), [
    { value: 'demo-http', label: 'demo-http: Python http.server' },
    { value: 'vllm', label: 'vllm' },
  ]);
  const response = new Response(JSON.stringify({ error: 'unknown recipe `x`', field: 'recipe' }), { status: 400 });
  const { context, calls } = updateContext(service, response);
  await compile(service.options.update.code)(context);
  assert.match(calls.error[0][1], /unknown recipe `x` \(field recipe\)/);
});

// GET /api/v1/recipes through Infinity: vllm's program is missing on this backend.
const recipeSeries = [{
  refId: 'recipes',
  fields: [
    { name: 'name', values: ['demo-http', 'vllm', 'sleep'] },
    { name: 'description', values: ['Python http.server', 'vLLM server', ''] },
    { name: 'runnable', values: ['yes', 'no', 'unknown'] },
    { name: 'runnable_reason', values: ['program `python3` is /usr/bin/python3', 'program `apptainer` not found on PATH', 'not checked'] },
  ],
}];

test('Start a service: a recipe the backend cannot run is marked with the reason', () => {
  const getOptions = compile(service.options.elements.find((e) => e.id === 'recipe').getOptions);
  const options = getOptions(optionsContext(service, recipeSeries));
  assert.deepEqual(options[0], { value: 'demo-http', label: 'demo-http: Python http.server' });
  assert.equal(options[1].label, 'vllm: vLLM server (not runnable here: program `apptainer` not found on PATH)');
  assert.notEqual(options[1].value, 'vllm', 'its value is never a recipe name');
  assert.deepEqual(options[2], { value: 'sleep', label: 'sleep' }, 'unknown is not refused');
  // The Infinity query asks for both columns.
  const columns = service.targets.find((t) => t.refId === 'recipes').columns.map((c) => c.selector);
  assert.ok(columns.includes('runnable') && columns.includes('runnable_reason'), columns.join(', '));
});

test('Start a service: a recipe that cannot run is not submitted, and the reason is notified', async () => {
  const getOptions = compile(service.options.elements.find((e) => e.id === 'recipe').getOptions);
  const vllm = getOptions(optionsContext(service, recipeSeries))[1].value;
  const values = { recipe: vllm, params: '{}' };
  const gp = compile(service.options.update.getPayload);
  assert.throws(() => gp(payloadContext(service, values)), /vllm cannot run .*apptainer.* not found on PATH/);
  let requests = 0;
  await assert.rejects(
    submit(service, values, () => {
      requests += 1;
      return Promise.reject(new Error('must not be called'));
    }),
    /cannot run/,
  );
  assert.equal(requests, 0);
  const valueChangedService = compile(service.options.elementValueChanged);
  const { context, calls } = valueChangedContext(service, values);
  valueChangedService(context);
  assert.equal(calls.error.length, 1);
  assert.equal(calls.error[0][0], 'Start service');
  assert.match(calls.error[0][1], /Recipe vllm cannot run on the API's backend: program `apptainer` not found on PATH$/);
  assert.match(calls.panelError[0], /apptainer/);
  assert.deepEqual(calls.submit, [false]);
});

test('Start a service: a runnable recipe enables submit; bad JSON disables it without a notification', () => {
  const valueChangedService = compile(service.options.elementValueChanged);
  let { context, calls } = valueChangedContext(service, { recipe: 'demo-http', params: '{"port": 8000}' });
  valueChangedService(context);
  assert.deepEqual(calls.panelError, ['']);
  assert.deepEqual(calls.submit, [true]);
  assert.equal(calls.error.length, 0);
  ({ context, calls } = valueChangedContext(service, { recipe: 'demo-http', params: '{port' }));
  valueChangedService(context);
  assert.match(calls.panelError[0], /Parameters must be a JSON object/);
  assert.deepEqual(calls.submit, [false]);
  assert.equal(calls.error.length, 0);
  assert.equal(service.options.updateEnabled, 'manual', 'the button waits for elementValueChanged');
});

test("Start a service: the API's 409 for a recipe that cannot run reaches notifyError", async () => {
  const body = { error: 'recipe `vllm` cannot run on the local backend: program `apptainer` not found on PATH', field: 'recipe' };
  const response = new Response(JSON.stringify(body), { status: 409, statusText: 'Conflict' });
  const { context, calls } = updateContext(service, response);
  await compile(service.options.update.code)(context);
  assert.equal(calls.success.length, 0);
  assert.match(calls.error[0][1], /apptainer` not found on PATH \(field recipe\)/);
});
