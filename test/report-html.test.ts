/**
 * The HTML report in a real browser: Debian's Chromium driven by
 * playwright-core. Every chart renders with data, the page asks the network
 * for nothing, and a report made from saved JSON equals the one written live.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `needs Debian's chromium at ${CHROMIUM} (.ci/run installs it)`;

test('probe --report writes a self-contained page; the browser draws every chart with data and fetches nothing', { skip, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fourtuple-report-'));
  try {
    const live = join(dir, 'live.html');
    const saved = join(dir, 'run.json');
    const later = join(dir, 'later.html');
    const json = execFileSync(process.execPath, [CLI, 'probe', '--connections', '20000', '--report', live, '--json'], { encoding: 'utf8' });
    writeFileSync(saved, json);
    execFileSync(process.execPath, [CLI, 'report', saved, '-o', later]);
    assert.equal(readFileSync(later, 'utf8'), readFileSync(live, 'utf8'), 'the report from saved JSON equals the live one');

    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const network: string[] = [];
      const errors: string[] = [];
      page.on('request', (req) => {
        if (!req.url().startsWith('file://')) network.push(req.url());
      });
      page.on('pageerror', (err) => errors.push(err.message));
      await page.goto(pathToFileURL(live).href);
      await page.waitForFunction(() => (window as unknown as { fourtupleCharts?: object }).fourtupleCharts !== undefined);
      const charts = await page.evaluate(() => {
        const all = (window as unknown as { fourtupleCharts: Record<string, { data: (number | null)[][]; root: HTMLElement }> }).fourtupleCharts;
        return Object.entries(all).map(([id, c]) => ({
          id,
          points: c.data[0].length,
          series: c.data.length - 1,
          values: c.data.slice(1).reduce((n, s) => n + s.filter((v) => v !== null && v !== undefined).length, 0),
          canvas: c.root.querySelector('canvas') !== null,
        }));
      });
      assert.deepEqual(charts.map((c) => c.id).sort(), ['errors', 'held', 'latency', 'memory', 'workers']);
      for (const c of charts) {
        assert.ok(c.canvas, `${c.id} drew a canvas`);
        assert.ok(c.points > 0 && c.values > 0, `${c.id} has data points (${c.points} x, ${c.values} values)`);
      }
      const held = charts.find((c) => c.id === 'held');
      assert.ok((held?.points ?? 0) >= 2);
      assert.match(await page.textContent('h1') ?? '', /20,000 concurrent TCP connections held/);
      assert.deepEqual(errors, [], 'no script error');
      assert.deepEqual(network, [], 'no network request');
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    } finally {
      await browser.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('report: bad input exits 2 with one line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fourtuple-report-'));
  try {
    writeFileSync(join(dir, 'not-a-run.json'), '{"hello": 1}');
    for (const args of [['report'], ['report', join(dir, 'missing.json'), '-o', join(dir, 'x.html')], ['report', join(dir, 'not-a-run.json'), '-o', join(dir, 'x.html')], ['report', join(dir, 'not-a-run.json')], ['report', join(dir, 'not-a-run.json'), '-o', '/nonexistent/dir/x.html']]) {
      let status = 0;
      let stderr = '';
      try {
        execFileSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        status = (err as { status: number }).status;
        stderr = (err as { stderr: string }).stderr;
      }
      assert.equal(status, 2, args.join(' '));
      assert.equal(stderr.trim().split('\n').length, 1, stderr);
    }
    assert.equal(existsSync(join(dir, 'x.html')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
