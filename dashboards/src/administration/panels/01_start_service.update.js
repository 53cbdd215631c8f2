// After POST /api/v1/services: success with the service's id, or the API's error.
const title = 'Start service';
const response = context.panel.response;
if (!response) {
  context.grafana.notifyError([title, 'the request did not reach the API']);
  return;
}
const body = response.bodyUsed ? Promise.resolve(null) : response.json().catch(() => null);
return body.then((json) => {
  if (response.ok) {
    context.grafana.notifySuccess([title, (json && json.id ? 'service ' + json.id + ' ' : '') + 'started']);
    context.grafana.refresh();
  } else if (json && json.error) {
    context.grafana.notifyError([title, json.error + (json.field ? ' (field ' + json.field + ')' : '')]);
  } else {
    context.grafana.notifyError([title, 'HTTP ' + response.status + ' ' + response.statusText]);
  }
});
