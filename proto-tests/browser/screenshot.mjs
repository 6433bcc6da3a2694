// Makes docs/screenshot-chat.png, README's picture of the chat: a fresh server, three people,
// a short conversation, unread messages in another room, at 1280×800.
//
// Usage: node proto-tests/browser/screenshot.mjs [out.png]   (RINGCHAT_BIN, CHROMIUM as in
// chat.e2e.mjs). Not a test: it checks nothing but that each step happened.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

/** Bound on each step. */
const STEP_TIMEOUT_MS = 10_000;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const out = path.resolve(process.argv[2] || path.join(root, 'docs/screenshot-chat.png'));
const bin = process.env.RINGCHAT_BIN || path.join(root, 'target/release/ringchat');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ringchat-shot-'));

const server = spawn(bin, ['--listen', '127.0.0.1:0', '--threads', '2', '--data-dir', path.join(tmp, 'data'),
  '--static', path.join(root, 'static')], { stdio: ['ignore', 'ignore', 'pipe'] });
const base = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error('server did not start')), STEP_TIMEOUT_MS);
  let log = '';
  server.stderr.on('data', (d) => {
    log += d;
    const m = /listening addr=(\S+)/.exec(log);
    if (m) {
      clearTimeout(timer);
      resolve(`http://${m[1]}`);
    }
  });
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

async function person(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  await page.goto(`${base}/signup`);
  await page.fill('#username', name);
  await page.fill('#email', `${name.toLowerCase()}@example.com`);
  await page.fill('#password', 'correct horse battery staple');
  await page.click('button[type=submit]');
  await page.waitForURL('**/chat').catch(async (e) => {
    throw new Error(`${name} not signed up: ${await page.textContent('#form-error')} ${e.message}`);
  });
  await page.waitForSelector('#status[data-state=online]');
  return page;
}

async function say(page, room, text) {
  await page.click(`button.room[data-room-id=${room}]`);
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
  await page.waitForFunction((t) => [...document.querySelectorAll('#messages .msg[data-id] .msg-text')]
    .some((e) => e.textContent === t), text);
}

try {
  const maria = await person('Maria');
  const ken = await person('Kenji');
  const me = await person('Alexis');
  await say(maria, 'beast', 'Morning! Did anyone try the new server build?');
  await say(ken, 'beast', 'Yes, moved our staging chat to it yesterday. Same clients, same Redis data, nothing to migrate.');
  await say(me, 'beast', 'Nice. How does it hold up under load?');
  await say(ken, 'beast', 'One event loop per core, so both cores are busy instead of one.');
  await say(ken, 'beast', 'The numbers are in the README, measured side by side.');
  await say(maria, 'beast', 'And history survives restarts — I restarted it twice and the page just reconnected and caught up. 🎉');
  await say(me, 'beast', 'Great, let\'s switch production over on Friday.\nI\'ll write the migration notes.');
  await say(maria, 'db', 'MariaDB works too, by the way.');
  await say(ken, 'db', 'And the embedded SQLite store for small installs.');
  await say(ken, 'wasm', 'Anyone compiled the client to wasm yet?');
  await me.click('button.room[data-room-id=beast]');
  await me.waitForTimeout(300);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  await me.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  server.kill('SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
}
