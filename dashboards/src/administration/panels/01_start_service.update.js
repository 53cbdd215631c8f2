// After POST /api/v1/services: success with the service's id, or the API's own error.
return notifyApiResponse(context, 'Start service', (json) =>
  (json && json.id ? 'service ' + json.id + ' ' : '') + 'started',
);
