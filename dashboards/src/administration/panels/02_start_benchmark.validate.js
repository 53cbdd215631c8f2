// Shared by getPayload and elementValueChanged (the build joins this file in
// front of each; form code cannot import). No dollar sign anywhere: Grafana replaces
// dashboard variables in form code before compiling it.
function startBenchmarkRequest(elements) {
  const byId = {};
  for (const e of elements) {
    byId[e.id] = e.value;
  }
  const text = (id) => (byId[id] === undefined || byId[id] === null ? '' : String(byId[id]).trim());
  const positiveInt = (id, title) => {
    const t = text(id);
    if (t === '') {
      return { error: title + ' is empty: enter a whole number' };
    }
    if (!t.split('').every((c) => c >= '0' && c <= '9') || Number(t) < 1) {
      return { error: title + ' must be a whole number of at least 1, not "' + t + '"' };
    }
    return { value: Number(t) };
  };
  if (text('service_id') === '') {
    return { error: 'Service is empty: choose a running service' };
  }
  const minutes = positiveInt('duration_minutes', 'Duration (min)');
  if (minutes.error) {
    return minutes;
  }
  const payload = {
    service_id: text('service_id'),
    duration_seconds: minutes.value * 60,
    mode: byId.mode,
    workload: byId.workload,
  };
  if (byId.mode === 'closed_loop') {
    const c = positiveInt('concurrency', 'Concurrency');
    if (c.error) {
      return c;
    }
    payload.concurrency = c.value;
  } else if (byId.mode === 'open_loop') {
    const r = positiveInt('requests_per_second', 'Rate (requests/s)');
    if (r.error) {
      return r;
    }
    payload.requests_per_second = r.value;
  } else {
    return { error: 'Load must be closed_loop or open_loop, not "' + byId.mode + '"' };
  }
  const nodes = text('load_nodes') === '' ? { value: 1 } : positiveInt('load_nodes', 'Load nodes');
  if (nodes.error) {
    return nodes;
  }
  if (nodes.value > 64) {
    return { error: 'Load nodes must be at most 64, not ' + nodes.value };
  }
  if (nodes.value > 1) {
    if (payload.concurrency !== undefined && payload.concurrency < nodes.value) {
      return {
        error: 'Concurrency ' + payload.concurrency + ' cannot be shared by Load nodes ' + nodes.value
          + ': each node needs at least one client',
      };
    }
    payload.load_nodes = nodes.value;
  }
  if (!['http', 'openai_completions', 'openai_chat'].includes(byId.workload)) {
    return { error: 'Workload must be http, openai_completions or openai_chat, not "' + byId.workload + '"' };
  }
  // Prompts: only the OpenAI workloads take them; synthetic is the API's default.
  const dataset = byId.workload === 'http' ? 'synthetic' : (text('dataset') || 'synthetic');
  if (dataset === 'random') {
    const input = positiveInt('input_len', 'Input length (words)');
    if (input.error) {
      return input;
    }
    const output = positiveInt('output_len', 'Output length (tokens)');
    if (output.error) {
      return output;
    }
    payload.dataset = { kind: 'random', input_len: input.value, output_len: output.value };
  } else if (dataset === 'sharegpt' || dataset === 'trace') {
    const path = text('dataset_path');
    if (path.length < 2 || path[0] !== '/') {
      return { error: 'Dataset file must be an absolute path on the load nodes, not "' + path + '"' };
    }
    payload.dataset = { kind: dataset, path };
    if (dataset === 'trace') {
      if (payload.mode !== 'closed_loop') {
        return { error: 'A trace is replayed at its own times: choose Closed loop (its concurrency is not used)' };
      }
      delete payload.concurrency;
    }
  } else if (dataset !== 'synthetic') {
    return { error: 'Prompts must be synthetic, random, sharegpt or trace, not "' + dataset + '"' };
  }
  const tokenizer = byId.workload === 'http' ? '' : text('tokenizer_path');
  if (tokenizer !== '') {
    if (tokenizer.length < 2 || tokenizer[0] !== '/') {
      return { error: 'Tokenizer file must be an absolute path on the load nodes, not "' + tokenizer + '"' };
    }
    payload.tokenizer_path = tokenizer;
  }
  if (text('goodput_e2el_ms') !== '') {
    const e2el = positiveInt('goodput_e2el_ms', 'SLO: E2EL (ms)');
    if (e2el.error) {
      return e2el;
    }
    payload.goodput = { e2el_ms: e2el.value };
  }
  if (text('sweep_max') !== '') {
    const max = positiveInt('sweep_max', 'Sweep up to');
    if (max.error) {
      return max;
    }
    if (payload.goodput === undefined) {
      return { error: 'A sweep searches for the largest load meeting an SLO: enter SLO: E2EL (ms)' };
    }
    if (dataset === 'trace') {
      return { error: 'A trace sets its own load: it cannot be swept' };
    }
    if (payload.load_nodes !== undefined) {
      return { error: 'A sweep runs from one node: set Load nodes to 1' };
    }
    const limit = payload.mode === 'open_loop' ? 100000 : 1024;
    if (max.value > limit) {
      return { error: 'Sweep up to must be at most ' + limit + ' for ' + payload.mode + ', not ' + max.value };
    }
    payload.sweep = { max: max.value };
  }
  return { payload };
}
