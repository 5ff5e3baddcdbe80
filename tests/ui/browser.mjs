// browser.mjs — start Debian's Chromium through playwright-core the way
// this machine needs it (see docs/ui.md): the system binary, headless, no
// sandbox (tests run as root), a new empty profile (playwright-core makes
// one per launch in a temp dir and removes it), and every
// background-networking feature off so the browser itself never tries to
// reach the internet (inside scripts/netns-run there is only loopback
// anyway).
import { chromium } from 'playwright-core';
import fs from 'node:fs';

export const CHROMIUM = process.env.OM_CHROMIUM || '/usr/bin/chromium';

export async function launch() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (scripts/install-deps.sh) or set OM_CHROMIUM`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}
