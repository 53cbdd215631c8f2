// Start benchmark: the body of POST /api/v1/benchmarks. Business Forms passes
// only context.panel.elements, context.panel.initial and context.utils.fileToBase64.
// Throwing stops the submit before any request (elementValueChanged has already
// shown the same message and disabled the button).
const request = startBenchmarkRequest(context.panel.elements);
if (request.error) {
  throw new Error(request.error);
}
return request.payload;
