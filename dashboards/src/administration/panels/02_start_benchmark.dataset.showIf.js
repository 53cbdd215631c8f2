return context.panel.elements.some((e) => e.id === 'workload' && e.value !== 'http');
