// metrics.js - a parser of the Prometheus text exposition format (0.0.4).
//   const m = parseMetrics(text);  m.types.get('cdam_requests_total') === 'counter'
//   value(m, 'cdam_requests_total', { route: '/explain', status: '200' })  // number or undefined
//   sum(m, 'cdam_requests_total', { route: '/explain' })                    // over other labels
export function parseMetrics(text) {
  const types = new Map();
  const helps = new Map();
  const samples = [];
  const problems = [];
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (TYPE|HELP) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/.exec(line);
      if (m && m[1] === 'TYPE') types.set(m[2], m[3]);
      else if (m) helps.set(m[2], m[3]);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? +([^ ]+)( +-?\d+)?$/.exec(line);
    if (!m) { problems.push(`line ${i + 1}: ${line}`); continue; }
    const labels = {};
    if (m[3] !== undefined && m[3] !== '') {
      const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;
      let pos = 0;
      const body = m[3];
      while (pos < body.length) {
        re.lastIndex = pos;
        const lm = re.exec(body);
        if (!lm) { problems.push(`line ${i + 1}: bad labels ${body}`); break; }
        labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        pos = re.lastIndex;
      }
    }
    const v = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    if (Number.isNaN(v) && m[4] !== 'NaN') problems.push(`line ${i + 1}: bad value ${m[4]}`);
    samples.push({ name: m[1], labels, value: v });
  }
  return { types, helps, samples, problems };
}

function matches(s, name, labels) {
  return s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
}
export function value(m, name, labels = {}) {
  const s = m.samples.find((x) => matches(x, name, labels) &&
    Object.keys(x.labels).length === Object.keys(labels).length);
  return s ? s.value : undefined;
}
export function sum(m, name, labels = {}) {
  return m.samples.filter((x) => matches(x, name, labels)).reduce((a, x) => a + x.value, 0);
}
export function has(m, name) {
  return m.samples.some((x) => x.name === name);
}
