'use strict';
// Headless Chromium through amiproxy's browser sign-in, against a real Dex:
// open /me, click "Sign in", log in at Dex's form, land back on /me, read
// who we are, mint an AMI secret, then log in with it from nami and Ping.
//
// Input (environment):
//   BASE_URL        the proxy's sign-in listener, e.g. https://127.0.0.1:8089
//   DEX_USER        Dex login (e.g. admin@example.com), DEX_PASSWORD
//   AMI_HOST, AMI_PORT   the proxy's native AMI door
//   CHROMIUM        the browser (default /usr/bin/chromium)
// Output: one JSON line on stdout: {user, roles, pbxs, username, secretLength,
// ping, headers}. Exit status 1 with a message on stderr on any failure.
// The minted secret itself is never printed.
const { chromium } = require('playwright-core');
const namiLib = require('nami');

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is required`);
  return v;
}

async function amiPing(host, port, username, secret) {
  const quiet = { error() {}, warn() {}, info() {}, debug() {} };
  const nami = new namiLib.Nami({ host, port: Number(port), username, secret, logger: quiet });
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('nami: no Login reply within 15s')), 15000);
      nami.once('namiConnected', () => { clearTimeout(timer); resolve(); });
      nami.once('namiLoginIncorrect', () => { clearTimeout(timer); reject(new Error('nami: Login refused')); });
      nami.once('namiConnectionError', (ev) => { clearTimeout(timer); reject(new Error(`nami: connection error ${ev.error && ev.error.message}`)); });
      nami.open();
    });
    const res = await new Promise((resolve) => nami.send(new namiLib.Actions.Ping(), resolve));
    return `${res.response}/${res.ping}`;
  } finally {
    nami.close();
  }
}

async function main() {
  const base = need('BASE_URL');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      // playwright-core gives the browser a fresh temporary profile itself
      // (--user-data-dir is refused in args).
      '--disable-sync', '--no-first-run', '--disable-quic'],
    timeout: 60000,
  });
  try {
    // The proxy's certificate is self-signed on loopback in the test.
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const page = await context.newPage();
    page.setDefaultTimeout(30000);
    const first = await page.goto(`${base}/me`);
    const headers = first.headers();
    await page.click('#signin');
    // Dex: a connector chooser may come first; then its password form.
    await page.waitForSelector('#login, a[href*="/auth/"]');
    if (!(await page.$('#login'))) {
      await page.click('a[href*="/auth/"]');
      await page.waitForSelector('#login');
    }
    await page.fill('#login', need('DEX_USER'));
    await page.fill('#password', need('DEX_PASSWORD'));
    await Promise.all([page.waitForURL(`${base}/me`), page.click('#submit-login')]);
    const text = async (sel) => (await page.textContent(sel)).trim();
    const user = await text('#user');
    const roles = await text('#roles');
    const pbxs = await text('#pbxs');
    await page.fill('input[name="label"]', 'chromium');
    await Promise.all([page.waitForSelector('#new-secret'), page.click('#mint-button')]);
    const username = await text('#new-username');
    const secret = await text('#new-secret');
    const listed = await page.$$eval('#secrets tr', (rows) => rows.length - 1);
    const ping = await amiPing(need('AMI_HOST'), need('AMI_PORT'), username, secret);
    process.stdout.write(JSON.stringify({
      user, roles, pbxs, username, secretLength: secret.length, listed, ping,
      headers: {
        csp: headers['content-security-policy'] || '',
        frame: headers['x-frame-options'] || '',
        cache: headers['cache-control'] || '',
      },
    }) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((err) => {
  process.stderr.write(`signin.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
