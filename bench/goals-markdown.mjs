// The Markdown form of bench/goals.mjs's JSON document: printed by the bench and written into
// README.md by bench/readme.mjs, so both show the same text.

/** The Markdown table and notes (also what bench/readme.mjs writes into the README). */
export function markdown(d) {
  const out = [];
  out.push(`Goals of issue 14, measured in one run of \`npm run bench\` (${d.date.slice(0, 10)}, node ${d.node}, ${d.cpus} CPUs, load average ${d.loadavg.join(' ')}).`);
  out.push('');
  out.push('| # | figure | SDK | baseline | ratio | goal | met |');
  out.push('| --- | --- | ---: | ---: | ---: | --- | --- |');
  for (const r of d.rows) {
    out.push(`| ${r.id} | ${r.figure} | ${r.sdkLabel ?? r.sdk} | ${r.baselineLabel ?? r.baseline} | ${r.ratioLabel ?? `${r.ratio}x`} | ${r.goal.text} | ${r.met ? 'yes' : '**no**'} |`);
  }
  const blocked = d.rows.filter((r) => !r.met);
  if (blocked.length) {
    out.push('');
    out.push('What stands in the way where a goal is not met (measured in the same run):');
    out.push('');
    for (const r of blocked) out.push(`- **${r.id}**: ${r.blocker}.${r.evidence?.length ? ` Measured: ${r.evidence.join('; ')}.` : ''}`);
  }
  return out.join('\n');
}
