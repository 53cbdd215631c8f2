// After POST /api/v1/benchmarks: success with the run's id, or the API's own
// error message. context.panel.response is the fetch Response (null when the
// request did not get through; the panel then already shows fetch's error).
const title = 'Start benchmark';
const response = context.panel.response;
if (!response) {
  context.grafana.notifyError([title, 'the request did not reach the API']);
  return;
}
const body = response.bodyUsed ? Promise.resolve(null) : response.json().catch(() => null);
return body.then((json) => {
  if (response.ok && json && json.id) {
    context.grafana.notifySuccess([title, 'run ' + json.id + ' started']);
    context.grafana.refresh();
  } else if (response.ok) {
    context.grafana.notifySuccess([title, 'started (HTTP ' + response.status + ')']);
    context.grafana.refresh();
  } else if (json && json.error) {
    context.grafana.notifyError([title, json.error + (json.field ? ' (field ' + json.field + ')' : '')]);
  } else {
    context.grafana.notifyError([title, 'HTTP ' + response.status + ' ' + response.statusText]);
  }
});
