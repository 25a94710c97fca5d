/** `fourtuple report RUN.json -o FILE.html`: the HTML report from a saved `probe --json` result. */
import { readFileSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError } from '../errors.js';
import { renderHtml } from '../report/html.js';
import { isMergedReport, renderMergedHtml } from '../report/merge.js';
import type { ProbeJson } from '../report/probe.js';
import { checkWritable, parseOptions } from './args.js';

/** Usage text. */
export const REPORT_HELP = `Usage: fourtuple report RUN.json -o FILE.html

Writes the self-contained HTML report (charts, constraints, how to reproduce)
of a probe saved with 'fourtuple probe --json > RUN.json'. The same run gives
the same file as 'probe --report'. A merged run ('fourtuple merge --json')
gives its own page: the shards' timeline together and a bar per shard.
`;

/** Parses argv without running anything. */
export function parseReportArgs(argv: string[]): { help: boolean; input: string; output: string } {
  const { values, positionals } = parseOptions('report', { args: argv, options: { output: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true });
  if (values.help) return { help: true, input: '', output: '' };
  if (positionals.length !== 1) throw new InvalidArgumentError(`'report' takes one saved run (RUN.json), got ${positionals.length === 0 ? 'none' : positionals.map((p) => `'${p}'`).join(' ')}`);
  if (!values.output) throw new InvalidArgumentError("'report' needs -o FILE.html: where to write the page");
  checkWritable(values.output, '-o');
  return { help: false, input: positionals[0], output: values.output };
}

/** Runs the command; returns the exit code. */
export function runReport(argv: string[], out: (s: string) => void): number {
  const args = parseReportArgs(argv);
  if (args.help) {
    out(REPORT_HELP);
    return 0;
  }
  let doc: ProbeJson;
  try {
    doc = JSON.parse(readFileSync(args.input, 'utf8')) as ProbeJson;
  } catch (err) {
    throw new InvalidArgumentError(`cannot read run '${args.input}': ${(err as NodeJS.ErrnoException).code ?? (err as Error).message.split('\n')[0]}`);
  }
  // A merged run (fourtuple merge --json) has its own page: the shards together, and one bar each.
  if (isMergedReport(doc)) {
    writeFileSync(args.output, renderMergedHtml(doc));
    out(`wrote ${args.output}`);
    return 0;
  }
  if (!Array.isArray(doc?.timeline) || typeof doc.held !== 'number' || !Array.isArray(doc.constraints)) {
    throw new InvalidArgumentError(`'${args.input}' is not a saved 'fourtuple probe --json' or 'fourtuple merge --json' result`);
  }
  writeFileSync(args.output, renderHtml(doc));
  out(`wrote ${args.output}`);
  return 0;
}
