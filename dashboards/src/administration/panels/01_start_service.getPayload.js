// Start a service: the body of POST /api/v1/services, {recipe, params}.
// Parameters are a JSON object typed in the "Parameters" box (the recipes and
// their parameters are listed below the form); the API checks types and bounds.
// Throwing stops the submit before any request (elementValueChanged has already
// shown the same message and disabled the button); a recipe the backend cannot
// run is never sent.
const request = startServiceRequest(context.panel.elements);
if (request.error) {
  throw new Error(request.error);
}
return request.payload;
