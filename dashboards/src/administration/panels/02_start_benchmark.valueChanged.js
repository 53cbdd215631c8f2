// On every change: show what is wrong with the form in the panel and keep the
// submit button disabled until the request is one the API accepts.
const request = startBenchmarkRequest(context.panel.elements);
if (request.error) {
  context.panel.setError(request.error);
  context.panel.disableSubmit();
} else {
  context.panel.setError('');
  context.panel.enableSubmit();
}
