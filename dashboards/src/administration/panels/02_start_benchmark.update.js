// After POST /api/v1/benchmarks: success with the run's id, or the API's own error.
return notifyApiResponse(context, 'Start benchmark', (json, response) =>
  json && json.id ? 'run ' + json.id + ' started' : 'started (HTTP ' + response.status + ')',
);
