// browser.js - Debian's Chromium, headless, driven by playwright-core (no browser download).
//
//   const b = await launchBrowser();          // a persistent context on a fresh profile
//   const page = await b.newPage({ width: 1280, height: 900 });
//   await b.close();                          // closes Chromium, removes the profile
//
// The executable is $CDAM_CHROMIUM or /usr/bin/chromium (run.sh installs Debian's
// chromium package when it is missing).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CDAM_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function launchBrowser() {
  const profile = mkdtempSync(path.join(tmpdir(), 'cdam-web-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
  });
  for (const p of ctx.pages()) await p.close();
  return {
    context: ctx,
    async newPage(viewport) {
      const page = await ctx.newPage();
      if (viewport) await page.setViewportSize(viewport);
      return page;
    },
    async close() {
      try { await ctx.close(); } finally { rmSync(profile, { recursive: true, force: true }); }
    },
  };
}
