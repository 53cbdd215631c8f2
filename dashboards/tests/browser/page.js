// Runs the built "Start benchmark" panel the way Business Forms 6.x does on a
// submit with payloadMode "custom": getPayload (compiled with
// new Function('context', code), given only panel.elements, panel.initial and
// utils.fileToBase64), then the browser's fetch with the JSON body, then
// update.code with the Response (a rejected fetch is shown as the plugin's
// setError shows it, and update.code then runs with a null response).
const params = new URLSearchParams(window.location.search);
const api = params.get('api');
const values = JSON.parse(params.get('values'));
const status = document.getElementById('status');
document.getElementById('origin').textContent = window.location.origin;
document.getElementById('api').textContent = api;

function show(kind, text) {
  status.className = kind;
  status.textContent = `${kind}: ${text}`;
  status.dataset.done = kind;
}

async function run() {
  const dashboard = await (await fetch('/administration.json')).json();
  const panel = dashboard.panels.find((p) => p.title === 'Start benchmark');
  const update = panel.options.update;
  if (update.payloadMode !== 'custom') {
    throw new Error(`payloadMode ${update.payloadMode} ignores getPayload`);
  }
  const elements = panel.options.elements.map((e) => ({ ...e, value: e.id in values ? values[e.id] : e.value }));
  const payload = new Function('context', update.getPayload)({
    panel: { elements, initial: {} },
    utils: { fileToBase64: () => Promise.reject(new Error('no files')) },
  });
  document.getElementById('payload').textContent = JSON.stringify(payload, null, 2);
  // Direct call: the API's origin in place of Grafana's data-source proxy path.
  const url = update.url.replace('/api/datasources/proxy/uid/aif-bench-api', api);
  // As updateRequest: a rejected fetch is shown with setError(error.toString())
  // and update.code still runs, with a null response.
  let panelError = '';
  const response = await fetch(url, {
    method: update.method,
    headers: { 'Content-Type': update.contentType },
    body: JSON.stringify(payload),
  }).catch((error) => {
    panelError = error.toString();
    return null;
  });
  let notified = false;
  const note = (kind, m) => {
    notified = true;
    show(kind, (panelError ? panelError + ' | ' : '') + m.join(': '));
  };
  await new Function('context', update.code)({
    panel: { response, elements, initial: {}, data: { series: [] }, options: panel.options },
    grafana: {
      notifySuccess: (m) => note('success', m),
      notifyError: (m) => note('error', m),
      notifyWarning: (m) => note('error', m),
      refresh: () => {},
      templateService: {},
      locationService: {},
    },
  });
  if (!notified) {
    show('error', 'update code notified nothing');
  }
}

run().catch((e) => show('error', `Start benchmark: ${e.message}`));
