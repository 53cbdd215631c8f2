// On every change: show what is wrong with the form in the panel and keep the
// submit button disabled until the request is one the API accepts. Choosing a
// recipe the backend cannot run also says why in a notification.
const request = startServiceRequest(context.panel.elements);
if (request.error) {
  context.panel.setError(request.error);
  context.panel.disableSubmit();
  if (request.notRunnable && context.element.id === 'recipe') {
    context.grafana.notifyError(['Start service', request.error]);
  }
} else {
  context.panel.setError('');
  context.panel.enableSubmit();
}
