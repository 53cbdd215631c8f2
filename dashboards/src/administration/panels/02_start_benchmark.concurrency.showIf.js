return context.panel.elements.some((e) => e.id === 'mode' && e.value === 'closed_loop');
