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
    const id = json && json.id ? `service ${json.id} ` : '';
    context.grafana.notifySuccess([title, `${id}started`]);
    context.grafana.refresh();
  } else if (json && json.error) {
    const field = json.field ? ` (field ${json.field})` : '';
    context.grafana.notifyError([title, `${json.error}${field}`]);
  } else {
    context.grafana.notifyError([title, `HTTP ${response.status} ${response.statusText}`]);
  }
});
