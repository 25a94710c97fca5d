/** `fourtuple merge FILE...`: the shards of one run as one report. */
import { readFileSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError } from '../errors.js';
import { mergeReports, renderMerged, renderMergedHtml, type ShardReport } from '../report/merge.js';
import { checkWritable, parseOptions } from './args.js';

export const MERGE_HELP = `Usage: fourtuple merge FILE... [--json]

Puts the reports of one sharded run together ('probe' or 'load' with
--shard I/K --json, one file per shard): held, target and predicted add up,
latency percentiles come from the shards' histograms added bucket by bucket
(exact), errors add up per errno, the timelines line up on Unix time, and a
row per shard says what it held and what stopped it. Reports of another run,
a shard given twice or a missing shard: exit 2, naming them.

  --json          print one JSON object
  --report FILE   also write a self-contained HTML page (the shards together, a bar per shard)
`;

const OPTIONS = { json: { type: 'boolean' }, report: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

/** Runs the command; returns the exit code. */
export function runMerge(argv: string[], out: (s: string) => void): number {
  const { values, positionals } = parseOptions('merge', { args: argv, options: OPTIONS, allowPositionals: true });
  if (values.help) {
    out(MERGE_HELP);
    return 0;
  }
  if (positionals.length === 0) throw new InvalidArgumentError("merge needs the shards' report files: fourtuple merge shard-0.json shard-1.json ...");
  if (values.report !== undefined) checkWritable(values.report, '--report');
  const reports = positionals.map((file) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new InvalidArgumentError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      return { file, doc: JSON.parse(text) as ShardReport };
    } catch {
      throw new InvalidArgumentError(`${file} is not JSON: a 'probe --json' or 'load --json' report was expected`);
    }
  });
  const merged = mergeReports(reports);
  out(values.json ? JSON.stringify(merged, null, 2) : renderMerged(merged));
  if (values.report !== undefined) {
    try {
      writeFileSync(values.report, renderMergedHtml(merged));
    } catch (err) {
      process.stderr.write(`fourtuple: cannot write the report to ${values.report}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      return 1;
    }
  }
  return 0;
}
