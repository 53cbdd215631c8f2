// Start benchmark: the body of POST /api/v1/benchmarks.
// Business Forms passes only context.panel.elements, context.panel.initial and
// context.utils.fileToBase64 here. Throwing refuses to send: the panel shows the
// message instead of making the request.
const byId = {};
for (const e of context.panel.elements) {
  byId[e.id] = e.value;
}
const fail = (msg) => {
  throw new Error(msg);
};
const positiveInt = (id, title) => {
  const raw = byId[id];
  const text = raw === undefined || raw === null ? '' : String(raw).trim();
  if (text === '') {
    fail(`${title} is empty: enter a whole number`);
  }
  if (!/^[0-9]+$/.test(text) || Number(text) < 1) {
    fail(`${title} must be a whole number of at least 1, not "${text}"`);
  }
  return Number(text);
};
const service = byId.service_id === undefined || byId.service_id === null ? '' : String(byId.service_id);
if (service === '') {
  fail('Service is empty: choose a running service');
}
const minutes = positiveInt('duration_minutes', 'Duration (min)');
const payload = {
  service_id: service,
  duration_seconds: minutes * 60,
  mode: byId.mode,
  workload: byId.workload,
};
if (byId.mode === 'closed_loop') {
  payload.concurrency = positiveInt('concurrency', 'Concurrency');
} else if (byId.mode === 'open_loop') {
  payload.requests_per_second = positiveInt('requests_per_second', 'Rate (requests/s)');
} else {
  fail(`Load must be closed_loop or open_loop, not "${byId.mode}"`);
}
if (!['http', 'openai_completions', 'openai_chat'].includes(byId.workload)) {
  fail(`Workload must be http, openai_completions or openai_chat, not "${byId.workload}"`);
}
return payload;
