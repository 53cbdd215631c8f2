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
  return { payload };
}
