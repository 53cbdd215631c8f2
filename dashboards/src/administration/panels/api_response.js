// Shared by the forms' update.code (the build joins this file in front of
// each): after a request to the API, a success notification (and a refresh),
// or the API's own error message, or why the request did not get through.
// context.panel.response is the fetch Response, null when fetch failed (the
// panel then already shows fetch's error).
function notifyApiResponse(context, title, successText) {
  const response = context.panel.response;
  if (!response) {
    context.grafana.notifyError([title, 'the request did not reach the API']);
    return undefined;
  }
  const body = response.bodyUsed ? Promise.resolve(null) : response.json().catch(() => null);
  return body.then((json) => {
    if (response.ok) {
      context.grafana.notifySuccess([title, successText(json, response)]);
      context.grafana.refresh();
    } else if (json && json.error) {
      context.grafana.notifyError([title, json.error + (json.field ? ' (field ' + json.field + ')' : '')]);
    } else {
      context.grafana.notifyError([title, 'HTTP ' + response.status + ' ' + response.statusText]);
    }
  });
}
