// Recipe select: every recipe from the panel's query "recipes"
// (Infinity: GET /api/v1/recipes). One the API's backend cannot run
// (runnable "no") is marked with the reason and cannot be submitted.
const frame = (context.panel.data.series || []).find((f) => f.refId === 'recipes');
if (!frame) {
  return [];
}
const field = (name) => {
  const f = frame.fields.find((x) => x.name === name);
  return f ? Array.from(f.values) : [];
};
const descriptions = field('description');
const runnable = field('runnable');
const reasons = field('runnable_reason');
return field('name').map((name, i) => {
  const label = descriptions[i] ? name + ': ' + descriptions[i] : name;
  if (runnable[i] !== 'no') {
    return { value: name, label };
  }
  const reason = reasons[i] ? String(reasons[i]) : 'its program is missing';
  return { value: notRunnableValue(name, reason), label: label + NOT_RUNNABLE_HERE + reason + ')' };
});
