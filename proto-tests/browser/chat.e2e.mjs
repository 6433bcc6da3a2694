// ringchat's end-to-end tests in a real browser: Debian's Chromium, driven by playwright-core,
// against the real server binary on a private loopback port with its own data dir in a temp dir.
//
// Each scenario is a named async function; all of them run in order (later ones reuse the users,
// browser contexts and messages earlier ones made, and recreate what they need when an earlier
// one failed), each prints PASS or FAIL with its time, and the process exits 1 when any failed.
// On a failure every open page is screenshotted and its console log saved under
// target/browser-artifacts/ (FAIL-<scenario>-<page>.png / .console.txt); the screenshots the
// suite keeps on purpose (login.png, chat-desktop.png, chat-desktop-dark.png, chat-phone.png)
// and the server's log (server.log) land there too.
//
// The pages are found only through the hooks docs/web-client.md promises ("The DOM the tests rely
// on"); the raw WebSocket traffic the suite makes itself follows shared/spec/compat.md.
//
// Not here: the model's unit tests (proto-tests/browser/unit/, run by run.sh under `node --test`),
// installing Chromium or node_modules (run.sh), building the server (run.sh or cargo).
//
// Environment: RINGCHAT_BIN (default target/release/ringchat), RINGCHAT_STATIC (the client to
// serve; default static/), CHROMIUM (default /usr/bin/chromium), HEADED=1 to watch, KEEP_TMP=1 to
// keep the temp dir, ONLY=name[,name] to run some scenarios (what the ones before them would have
// set up is not: alice and bob are then made through the REST API, rooms start empty).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

// ---------------------------------------------------------------------------------------------
// Limits and timeouts. Every wait in the suite is bounded by one of these.

/** Default bound on each Playwright step (a click, a wait for a selector, an evaluate). */
const STEP_TIMEOUT_MS = 10_000;
/** Navigation (goto, reload, waiting for a redirect). */
const NAVIGATION_TIMEOUT_MS = 10_000;
/** One scenario, all its steps together; a scenario over it fails and the suite moves on. */
const SCENARIO_TIMEOUT_MS = 45_000;
/** The restart scenario: server stop, start, two reconnects with backoff, catch-up. */
const RESTART_SCENARIO_TIMEOUT_MS = 75_000;
/** The server printing its `listening addr=` line after spawn. */
const SERVER_START_TIMEOUT_MS = 10_000;
/** The server exiting after SIGTERM (its own --shutdown-timeout is below this). */
const SERVER_STOP_TIMEOUT_MS = 15_000;
/** Passed as --shutdown-timeout: seconds the server waits for in-flight requests. */
const SERVER_SHUTDOWN_TIMEOUT_S = 5;
/** A page going back online after a connection loss: the client's backoff plus the handshake. */
const RECONNECT_TIMEOUT_MS = 30_000;
/** A reconnected page catching up on what it missed (hello plus history requests). */
const CATCH_UP_TIMEOUT_MS = 15_000;
/** Seeding messages over a raw WebSocket: every content echoed back in serverMessages. */
const SEED_TIMEOUT_MS = 15_000;
/** Contents per clientMessages event (src/chat/events.rs CLIENT_MESSAGES_PER_EVENT_MAX). */
const SEED_BATCH_MESSAGES_MAX = 16;
/**
 * Grace period before checking that something did NOT happen (a script injection firing, a
 * navigation starting): an <img onerror> fires, or a navigation begins, within a few ms.
 */
const ABSENCE_GRACE_MS = 500;
/** Tab presses allowed to reach the room list and the composer. */
const TAB_PRESSES_MAX = 80;
/** Pages of older history the scroll-up scenario may load before giving up. */
const HISTORY_PAGES_MAX = 6;
/** Lines of a Playwright error (message, call log, stack) printed for a failure. */
const ERROR_LINES_MAX = 20;
/** Pixels from the bottom that still count as "scrolled to the bottom". */
const BOTTOM_SLACK_PX = 8;

/** --max-message-chars for the server under test. */
const MESSAGE_CHARS_MAX = 300;
/** The composer counter shows within 10% of the limit (docs/web-client.md). */
const COUNTER_SHOWN_FROM_CHARS = MESSAGE_CHARS_MAX - MESSAGE_CHARS_MAX / 10;
/** Newest messages per room in the hello (shared/spec/compat.md). */
const HELLO_MESSAGES = 100;
/** Messages seeded for the history scenario: two and a half pages. */
const HISTORY_SEED_MESSAGES = 250;
/** Messages seeded while alice is away: more than a hello carries, so the client must page. */
const CATCH_UP_SEED_MESSAGES = 120;
/** Length of the no-space word that must wrap; the server refuses more than MESSAGE_CHARS_MAX. */
const WRAP_WORD_CHARS = 290;

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const PASSWORD = 'correct horse battery';
/** The server's default rooms (shared/spec/compat.md), id → name. */
const ROOM_NAMES = {
  beast: 'Boost.Beast',
  async: 'Boost.Async',
  db: 'Database connectors',
  wasm: 'Web assembly',
};

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BIN = process.env.RINGCHAT_BIN || path.join(REPO, 'target', 'release', 'ringchat');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const STATIC_DIR = process.env.RINGCHAT_STATIC || path.join(REPO, 'static');
const ARTIFACTS = path.join(REPO, 'target', 'browser-artifacts');
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// ---------------------------------------------------------------------------------------------
// Small helpers.

class TestFailure extends Error {}

function check(condition, message) {
  if (!condition) throw new TestFailure(message);
}

function checkEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new TestFailure(`${what}: expected ${e}, got ${a}`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Races `promise` against a deadline; the loser keeps running but is ignored. */
function withTimeout(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TestFailure(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** Polls `probe` (async, returns a value or a falsy one) until truthy or `ms` pass. */
async function pollUntil(probe, ms, what, intervalMs = 100) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > end) throw new TestFailure(`${what}: not within ${ms} ms`);
    await sleep(intervalMs);
  }
}

/** Compares two message ids `<ms>-<seq>` (shared/spec/compat.md) numerically. */
function compareIds(a, b) {
  const [am, as] = a.split('-').map(BigInt);
  const [bm, bs] = b.split('-').map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

function checkAscendingUnique(ids, what) {
  check(new Set(ids).size === ids.length, `${what}: duplicate message ids`);
  for (let i = 1; i < ids.length; i++) {
    check(compareIds(ids[i - 1], ids[i]) < 0, `${what}: ${ids[i - 1]} before ${ids[i]} is out of order`);
  }
}

function stamp() {
  return new Date().toISOString().slice(11, 23);
}

// ---------------------------------------------------------------------------------------------
// The server under test.

class Server {
  constructor(tmp) {
    this.dataDir = path.join(tmp, 'data');
    this.logPath = path.join(ARTIFACTS, 'server.log');
    this.child = null;
    this.port = 0;
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the binary; port 0 picks one the first time, later starts reuse it. */
  async start() {
    check(fs.existsSync(BIN), `no server binary at ${BIN} (cargo build --release, or set RINGCHAT_BIN)`);
    const log = fs.createWriteStream(this.logPath, { flags: 'a' });
    const args = [
      '--listen', `127.0.0.1:${this.port}`,
      '--threads', '2',
      '--data-dir', this.dataDir,
      '--static', STATIC_DIR,
      '--max-message-chars', String(MESSAGE_CHARS_MAX),
      '--shutdown-timeout', String(SERVER_SHUTDOWN_TIMEOUT_S),
      '--log-level', 'info',
    ];
    log.write(`\n=== ${new Date().toISOString()} ${BIN} ${args.join(' ')}\n`);
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stdout.pipe(log, { end: false });
    const addr = new Promise((resolve, reject) => {
      let buffered = '';
      child.stderr.on('data', (chunk) => {
        log.write(chunk);
        buffered += chunk.toString();
        const line = buffered.split('\n').find((l) => l.includes('listening') && /addr=\S+:\d+/.test(l));
        if (line) {
          buffered = '';
          resolve(Number(/addr=\S+:(\d+)/.exec(line)[1]));
        } else if (buffered.length > 1 << 16) {
          buffered = buffered.slice(-4096);
        }
      });
      child.once('error', reject);
      this.exited.then(({ code, signal }) =>
        reject(new Error(`ringchat exited during start-up (code ${code}, signal ${signal}); see ${this.logPath}`)),
      );
    });
    const port = await withTimeout(addr, SERVER_START_TIMEOUT_MS, 'ringchat start-up');
    if (this.port) check(port === this.port, `restarted on port ${port}, not ${this.port}`);
    this.port = port;
  }

  /** SIGTERM and wait for the exit (SIGKILL when it overstays). */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    try {
      const { code, signal } = await withTimeout(this.exited, SERVER_STOP_TIMEOUT_MS, 'ringchat graceful stop');
      check(code === 0 || signal === 'SIGTERM', `ringchat exited with code ${code}, signal ${signal} after SIGTERM`);
    } catch (e) {
      child.kill('SIGKILL');
      await this.exited;
      throw e;
    } finally {
      this.child = null;
    }
  }

  /** For exit paths: no waiting. */
  killNow() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------
// The browser side: contexts, pages with their console logs, the users.

const suffix = Math.random().toString(36).slice(2, 8);
const users = {
  alice: { username: `alice_${suffix}`, email: `alice_${suffix}@example.com`, password: PASSWORD },
  bob: { username: `bob_${suffix}`, email: `bob_${suffix}@example.com`, password: PASSWORD },
};

let browser = null;
/** Set by a signal: the scenario in progress is abandoned, nothing more is reported. */
let stopping = false;
let server = null;
let tmpDir = null;
/** Every open page by name, with its log: screenshots and logs on failure come from here. */
const pages = new Map();
/** Contexts a scenario made for itself, closed when it ends. */
let scenarioContexts = [];
/** alice's and bob's long-lived contexts and pages (name → { context, page }). */
const sessions = {};

async function newContext(options = {}, { keep = false } = {}) {
  const context = await browser.newContext({ baseURL: server.base, viewport: DESKTOP, ...options });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  if (!keep) scenarioContexts.push(context);
  return context;
}

async function newPage(context, name) {
  const page = await context.newPage();
  const log = [];
  page.on('console', (m) => log.push(`${stamp()} console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`${stamp()} pageerror: ${e.stack || e}`));
  page.on('requestfailed', (r) => log.push(`${stamp()} requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('websocket', (ws) => {
    log.push(`${stamp()} websocket open: ${ws.url()}`);
    ws.on('close', () => log.push(`${stamp()} websocket closed: ${ws.url()}`));
  });
  page.on('close', () => {
    if (pages.get(name)?.page === page) pages.delete(name);
  });
  pages.set(name, { page, log });
  return page;
}

/** Logs `user` in through the REST API (creating the account when needed): cookies land in `context`. */
async function apiLogin(context, user) {
  let res = await context.request.post('/api/login', { data: { email: user.email, password: user.password } });
  if (res.status() === 204) return;
  res = await context.request.post('/api/create-account', { data: user });
  check(res.status() === 204, `create-account for ${user.username}: ${res.status()} ${await res.text()}`);
}

/**
 * alice's or bob's long-lived desktop page on /chat, online. Made by the sign-up scenario through
 * the forms; when that failed or did not run, made here through the REST API.
 */
async function session(name) {
  let s = sessions[name];
  if (!s || s.page.isClosed()) {
    const context = s?.context ?? (await newContext({}, { keep: true }));
    await apiLogin(context, users[name]);
    const page = await newPage(context, name);
    await page.goto('/chat');
    s = sessions[name] = { context, page };
  } else if (new URL(s.page.url()).pathname !== '/chat') {
    // Left elsewhere by a scenario that failed half-way (a sign-up form, say).
    await apiLogin(s.context, users[name]);
    await s.page.goto('/chat');
  }
  try {
    await waitOnline(s.page, STEP_TIMEOUT_MS);
  } catch {
    // Offline, say after a failed reconnect scenario: a reload gives this scenario a working page
    // (reconnecting is restartCatchUp's to test, not every scenario's).
    console.log(`  note: ${name}'s page was not online; reloading it`);
    await s.page.reload();
    await waitOnline(s.page, STEP_TIMEOUT_MS);
  }
  return s;
}

async function waitOnline(page, timeout = RECONNECT_TIMEOUT_MS) {
  await page.waitForSelector('#status[data-state="online"]', { state: 'attached', timeout });
}

async function waitNotOnline(page) {
  await page.waitForFunction(() => {
    const s = document.querySelector('#status');
    return s && s.dataset.state !== 'online';
  });
}

async function waitPath(page, pathname) {
  await page.waitForURL((u) => u.pathname === pathname, { timeout: NAVIGATION_TIMEOUT_MS });
}

/** Submits a form the way a user would: its submit button. */
async function submitForm(page, formSelector) {
  await page.locator(`${formSelector} [type=submit]`).first().click();
}

async function fillAccountForm(page, formSelector, fields) {
  for (const [id, value] of Object.entries(fields)) await page.locator(`${formSelector} #${id}`).fill(value);
}

function roomButton(page, roomId) {
  return page.locator(`nav#rooms button.room[data-room-id="${roomId}"]`);
}

async function openRoom(page, roomId) {
  await roomButton(page, roomId).click();
  await page.waitForSelector(`nav#rooms button.room[data-room-id="${roomId}"][aria-current="true"]`, { state: 'attached' });
  await pollUntil(
    async () => (await page.locator('#room-title').textContent())?.trim() === ROOM_NAMES[roomId],
    STEP_TIMEOUT_MS,
    `#room-title to read ${ROOM_NAMES[roomId]}`,
  );
}

/** data-id of every delivered .msg in #messages, top to bottom. */
function messageIds(page) {
  return page.evaluate(() => [...document.querySelectorAll('#messages .msg[data-id]')].map((m) => m.dataset.id));
}

/** .msg-text of every .msg in #messages, top to bottom. */
function messageTexts(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('#messages .msg')].map((m) => m.querySelector('.msg-text')?.textContent ?? null),
  );
}

/** Waits for a delivered .msg whose .msg-text is exactly `text`; returns its data-id and classes. */
async function waitForMessage(page, text, timeout = STEP_TIMEOUT_MS) {
  try {
    const handle = await page.waitForFunction(
      (t) => {
        const m = [...document.querySelectorAll('#messages .msg[data-id]')].find(
          (e) => e.querySelector('.msg-text')?.textContent === t,
        );
        return m ? { id: m.dataset.id, mine: m.classList.contains('mine'), author: m.dataset.author } : null;
      },
      text,
      { timeout },
    );
    return await handle.jsonValue();
  } catch (e) {
    if (page.isClosed()) throw e;
    const texts = await messageTexts(page).catch(() => []);
    const short = (t) => JSON.stringify(t && t.length > 80 ? `${t.slice(0, 80)}...` : t);
    throw new TestFailure(
      `no delivered .msg with .msg-text ${short(text)} within ${timeout} ms in ${page.url()}; ` +
        `the last ones: ${texts.slice(-3).map(short).join(', ') || 'none'}`,
    );
  }
}

/** Types `text` into the composer and presses Enter; returns the delivered message. */
async function send(page, text) {
  const input = page.locator('#composer-input');
  await input.fill(text);
  await input.press('Enter');
  const m = await waitForMessage(page, text);
  check(m.mine, `own message ${JSON.stringify(text.slice(0, 40))} lacks class "mine"`);
  await pollUntil(async () => (await input.inputValue()) === '', STEP_TIMEOUT_MS, 'the composer to clear after sending');
  return m;
}

/**
 * Posts `contents` to `roomId` over a raw WebSocket opened in `page` (so with its session cookie),
 * at most SEED_BATCH_MESSAGES_MAX per clientMessages event, one event at a time, each waited for
 * in serverMessages so the order is the given one. Returns the ids in order.
 */
async function seedMessages(page, roomId, contents) {
  return page.evaluate(
    ({ roomId, contents, batchMax, timeoutMs }) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${location.host}/api/ws`);
        const index = new Map(contents.map((c, i) => [c, i]));
        const ids = new Array(contents.length).fill(null);
        let sent = 0;
        let acked = 0;
        const finish = (error) => {
          clearTimeout(timer);
          ws.onclose = null;
          ws.onmessage = null;
          ws.close(1000);
          if (error) reject(error);
          else resolve(ids);
        };
        const timer = setTimeout(
          () => finish(new Error(`seeding ${roomId}: ${contents.length - acked} of ${contents.length} never came back`)),
          timeoutMs,
        );
        const sendNext = () => {
          const batch = contents.slice(sent, sent + batchMax);
          sent += batch.length;
          ws.send(JSON.stringify({ type: 'clientMessages', payload: { roomId, messages: batch.map((content) => ({ content })) } }));
        };
        ws.onclose = (e) => finish(new Error(`seeding ${roomId}: socket closed ${e.code} ${e.reason}`));
        ws.onmessage = (e) => {
          const event = JSON.parse(e.data);
          if (event.type === 'hello') {
            sendNext();
          } else if (event.type === 'error') {
            finish(new Error(`seeding ${roomId}: error event ${JSON.stringify(event.payload)}`));
          } else if (event.type === 'serverMessages' && event.payload.roomId === roomId) {
            for (const m of event.payload.messages) {
              const i = index.get(m.content);
              if (i !== undefined && ids[i] === null) {
                ids[i] = m.id;
                acked++;
              }
            }
            if (acked === contents.length) finish(null);
            else if (acked === sent) sendNext();
          }
        };
      }),
    { roomId, contents, batchMax: SEED_BATCH_MESSAGES_MAX, timeoutMs: SEED_TIMEOUT_MS },
  );
}

function numbered(prefix, n) {
  return Array.from({ length: n }, (_, i) => `${prefix} ${String(i + 1).padStart(3, '0')}`);
}

/** #messages scroll geometry. */
function scrollState(page) {
  return page.evaluate(() => {
    const el = document.querySelector('#messages');
    return { top: el.scrollTop, height: el.scrollHeight, client: el.clientHeight };
  });
}

function atBottom(s) {
  return s.height - s.top - s.client <= BOTTOM_SLACK_PX;
}

/** Whether the .msg with `id` overlaps the visible part of #messages. */
function messageInView(page, id) {
  return page.evaluate((id) => {
    const box = document.querySelector('#messages').getBoundingClientRect();
    const m = document.querySelector(`#messages .msg[data-id="${CSS.escape(id)}"]`);
    if (!m) return false;
    const r = m.getBoundingClientRect();
    return r.bottom > box.top && r.top < box.bottom;
  }, id);
}

/** The background actually painted behind the page: body's, else html's. */
function pageBackground(page) {
  return page.evaluate(() => {
    const transparent = (c) => c === 'transparent' || c === 'rgba(0, 0, 0, 0)';
    const body = getComputedStyle(document.body).backgroundColor;
    return transparent(body) ? getComputedStyle(document.documentElement).backgroundColor : body;
  });
}

async function keepScreenshot(page, file) {
  await page.screenshot({ path: path.join(ARTIFACTS, file), fullPage: false });
}

// ---------------------------------------------------------------------------------------------
// Scenarios. Shared across them: the users (alice, bob) and what they posted.

const posted = {};

async function limitsEndpoint() {
  const context = await newContext();
  const res = await context.request.get('/api/limits');
  check(res.status() === 200, `GET /api/limits: ${res.status()} ${await res.text()}`);
  const body = await res.json();
  checkEqual(body.messageCharsMax, MESSAGE_CHARS_MAX, 'GET /api/limits messageCharsMax');
}

async function signupAndLogin() {
  const { alice, bob } = users;

  // A visitor with no session: / sends to /login, which is kept as a screenshot.
  const visitorContext = await newContext();
  const visitor = await newPage(visitorContext, 'visitor');
  await visitor.goto('/');
  await waitPath(visitor, '/login');
  await visitor.waitForSelector('form#login-form');
  await keepScreenshot(visitor, 'login.png');

  // alice: a password too short is refused before anything is sent.
  const aliceContext = await newContext({}, { keep: true });
  const alicePage = await newPage(aliceContext, 'alice');
  sessions.alice = { context: aliceContext, page: alicePage };
  const accountPosts = [];
  alicePage.on('request', (r) => {
    if (r.url().endsWith('/api/create-account')) accountPosts.push(r);
  });
  await alicePage.goto('/signup');
  await fillAccountForm(alicePage, 'form#signup-form', { username: alice.username, email: alice.email, password: 'short' });
  await submitForm(alicePage, 'form#signup-form');
  await pollUntil(
    async () => ((await alicePage.locator('#password-error').textContent()) ?? '').trim(),
    STEP_TIMEOUT_MS,
    '#password-error to explain the short password',
  );
  await sleep(ABSENCE_GRACE_MS); // a navigation, if one wrongly starts, has begun by now
  checkEqual(new URL(alicePage.url()).pathname, '/signup', 'page after an invalid sign-up');
  checkEqual(accountPosts.length, 0, 'create-account requests sent for an invalid form');

  // ...then a good one lands on /chat, online, as alice.
  await alicePage.locator('#password').fill(alice.password);
  await submitForm(alicePage, 'form#signup-form');
  await waitPath(alicePage, '/chat');
  await waitOnline(alicePage, STEP_TIMEOUT_MS);
  checkEqual((await alicePage.locator('#me').textContent())?.trim(), alice.username, '#me after sign-up');

  // bob first tries alice's name: the server's USERNAME_EXISTS is shown, no navigation.
  const bobContext = await newContext({}, { keep: true });
  const bobPage = await newPage(bobContext, 'bob');
  sessions.bob = { context: bobContext, page: bobPage };
  await bobPage.goto('/signup');
  await fillAccountForm(bobPage, 'form#signup-form', { username: alice.username, email: bob.email, password: bob.password });
  await submitForm(bobPage, 'form#signup-form');
  const duplicateError = await pollUntil(
    async () => {
      const texts = await Promise.all(
        ['#username-error', '#form-error'].map(async (s) => ((await bobPage.locator(s).textContent()) ?? '').trim()),
      );
      return texts.find((t) => t);
    },
    STEP_TIMEOUT_MS,
    'an error for a duplicate username in #username-error or #form-error',
  );
  checkEqual(new URL(bobPage.url()).pathname, '/signup', `page after a duplicate username (${duplicateError})`);
  await bobPage.locator('#username').fill(bob.username);
  await submitForm(bobPage, 'form#signup-form');
  await waitPath(bobPage, '/chat');
  await waitOnline(bobPage, STEP_TIMEOUT_MS);
  checkEqual((await bobPage.locator('#me').textContent())?.trim(), bob.username, '#me after sign-up');

  // The login form: a wrong password shows the server's refusal in #form-error.
  await visitor.goto('/login');
  await fillAccountForm(visitor, 'form#login-form', { email: alice.email, password: 'not the password 1' });
  await submitForm(visitor, 'form#login-form');
  await pollUntil(
    async () => ((await visitor.locator('#form-error').textContent()) ?? '').trim(),
    STEP_TIMEOUT_MS,
    '#form-error after a wrong password',
  );
  checkEqual(new URL(visitor.url()).pathname, '/login', 'page after a wrong password');
  // ...and the right one lands on /chat.
  await visitor.locator('#password').fill(alice.password);
  await submitForm(visitor, 'form#login-form');
  await waitPath(visitor, '/chat');
  await waitOnline(visitor, STEP_TIMEOUT_MS);
  checkEqual((await visitor.locator('#me').textContent())?.trim(), alice.username, '#me after login');
}

async function liveChat() {
  const a = (await session('alice')).page;
  const b = (await session('bob')).page;
  await openRoom(a, 'beast');
  await openRoom(b, 'beast');

  const hi = `hello from alice ${suffix}`;
  const sentHi = await send(a, hi);
  const seenHi = await waitForMessage(b, hi);
  checkEqual(seenHi.id, sentHi.id, 'the id bob sees for alice\'s message');
  check(!seenHi.mine, 'alice\'s message has class "mine" on bob\'s page');
  checkEqual(seenHi.author, users.alice.username, 'data-author of alice\'s message on bob\'s page');

  const reply = `hi alice, bob here ${suffix}`;
  await send(b, reply);
  const seenReply = await waitForMessage(a, reply);
  check(!seenReply.mine, 'bob\'s message has class "mine" on alice\'s page');
  const [aIds, bIds] = [await messageIds(a), await messageIds(b)];
  checkEqual(aIds, bIds, 'message ids in beast, alice vs bob');
  checkAscendingUnique(aIds, 'beast on alice\'s page');

  // Another room: both switch, one message each way.
  await openRoom(a, 'async');
  await openRoom(b, 'async');
  const inAsync = `async hello ${suffix}`;
  await send(a, inAsync);
  await waitForMessage(b, inAsync);

  // bob goes back to beast; alice posts in async: bob's async shows 1 unread and the preview.
  await openRoom(b, 'beast');
  const unseen = `are you there, bob? ${suffix}`;
  await send(a, unseen);
  const bobsAsync = roomButton(b, 'async');
  await pollUntil(
    async () => {
      const badge = bobsAsync.locator('.room-unread');
      return (await badge.isVisible()) && (await badge.textContent())?.trim() === '1';
    },
    STEP_TIMEOUT_MS,
    'bob\'s async .room-unread to show "1"',
  );
  await pollUntil(
    async () => ((await bobsAsync.locator('.room-preview').textContent()) ?? '').includes(unseen),
    STEP_TIMEOUT_MS,
    'bob\'s async .room-preview to show the newest message',
  );
  check(!(await roomButton(b, 'beast').locator('.room-unread').isVisible()), 'the selected room shows an unread badge');

  // Opening the room clears the badge.
  await openRoom(b, 'async');
  await waitForMessage(b, unseen);
  await pollUntil(
    async () => !(await bobsAsync.locator('.room-unread').isVisible()),
    STEP_TIMEOUT_MS,
    'bob\'s async unread badge to hide once the room is open',
  );
  posted.async = [inAsync, unseen];
}

async function composer() {
  const a = (await session('alice')).page;
  await openRoom(a, 'beast');
  const input = a.locator('#composer-input');
  const counter = a.locator('#composer-counter');
  const sendButton = a.locator('button#send');

  // Shift+Enter is a newline, Enter sends.
  const first = `two lines ${suffix}`;
  await input.fill(first);
  await input.press('Shift+Enter');
  await input.pressSequentially('second line');
  checkEqual(await input.inputValue(), `${first}\nsecond line`, 'composer value after Shift+Enter');
  await input.press('Enter');
  await waitForMessage(a, `${first}\nsecond line`);

  // The counter: hidden when short, shown within 10% of the limit, "over" and send disabled past it.
  await input.fill('short');
  check(!(await counter.isVisible()), '#composer-counter visible for a 5-character message');
  await input.fill('x'.repeat(COUNTER_SHOWN_FROM_CHARS + 9));
  await input.pressSequentially('y'); // one real keystroke after the fill
  await counter.waitFor({ state: 'visible' });
  check(!(await counter.evaluate((e) => e.classList.contains('over'))), '#composer-counter has "over" under the limit');
  check(await sendButton.isEnabled(), '#send disabled under the limit');
  await input.fill('x'.repeat(MESSAGE_CHARS_MAX));
  await input.pressSequentially('y');
  await pollUntil(
    () => counter.evaluate((e) => e.classList.contains('over')),
    STEP_TIMEOUT_MS,
    '#composer-counter to get class "over" past the limit',
  );
  await pollUntil(async () => !(await sendButton.isEnabled()), STEP_TIMEOUT_MS, '#send to be disabled past the limit');
  await input.fill('');
  await pollUntil(async () => !(await counter.isVisible()), STEP_TIMEOUT_MS, '#composer-counter to hide when emptied');
}

async function reloadKeepsSession() {
  const b = (await session('bob')).page;
  await openRoom(b, 'async');
  checkEqual(new URL(b.url()).hash, '#room=async', 'URL hash in room async');
  await b.reload();
  await waitOnline(b, STEP_TIMEOUT_MS);
  const url = new URL(b.url());
  checkEqual(url.pathname, '/chat', 'path after reload');
  checkEqual(url.hash, '#room=async', 'hash after reload');
  await b.waitForSelector('nav#rooms button.room[data-room-id="async"][aria-current="true"]', { state: 'attached' });
  checkEqual((await b.locator('#room-title').textContent())?.trim(), ROOM_NAMES.async, '#room-title after reload');
  for (const text of posted.async ?? []) await waitForMessage(b, text);
}

async function historyScroll() {
  const alice = await session('alice');
  const b = (await session('bob')).page;
  const contents = numbered('seed', HISTORY_SEED_MESSAGES);
  const seededIds = await seedMessages(b, 'db', contents);
  checkAscendingUnique(seededIds, 'seeded ids');

  // A fresh page gets them through a hello: the newest 100 only.
  const page = await newPage(alice.context, 'alice-history');
  try {
    await page.goto('/chat#room=db');
    await waitOnline(page, STEP_TIMEOUT_MS);
    await page.waitForSelector('nav#rooms button.room[data-room-id="db"][aria-current="true"]', { state: 'attached' });
    await waitForMessage(page, contents.at(-1));
    checkEqual(await page.locator('#messages .msg').count(), HELLO_MESSAGES, '.msg rows after the hello');
    check(!(await page.locator('#history-start').isVisible()), '#history-start visible with older messages left');

    // Records whether #history-loading is ever shown (it may be too quick to catch by polling).
    await page.evaluate(() => {
      window.__historyLoadingSeen = false;
      const seen = () => {
        const el = document.querySelector('#history-loading');
        if (el && !el.hidden && el.getClientRects().length) window.__historyLoadingSeen = true;
      };
      new MutationObserver(seen).observe(document.body, { attributes: true, childList: true, subtree: true });
    });

    let count = HELLO_MESSAGES;
    for (let pageNo = 0; count < HISTORY_SEED_MESSAGES; pageNo++) {
      check(pageNo < HISTORY_PAGES_MAX, `still ${count} rows after ${HISTORY_PAGES_MAX} history pages`);
      const topId = await page.evaluate(() => document.querySelector('#messages .msg[data-id]').dataset.id);
      await page.locator('#messages').evaluate((el) => {
        el.scrollTop = 0;
      });
      const before = count;
      count = await pollUntil(
        async () => {
          const n = await page.locator('#messages .msg').count();
          return n > before ? n : 0;
        },
        STEP_TIMEOUT_MS,
        `older messages to load after scrolling to the top with ${before} rows`,
      );
      // Let the client finish this page (rendering, anchoring) before judging the position.
      await pollUntil(
        async () => !(await page.locator('#history-loading').isVisible()),
        STEP_TIMEOUT_MS,
        '#history-loading to hide',
      );
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
      check(await messageInView(page, topId), `the message at the top before loading (${topId}) is out of view after (no scroll anchoring)`);
    }
    checkEqual(count, HISTORY_SEED_MESSAGES, '.msg rows after loading all history');
    await page.locator('#history-start').waitFor({ state: 'visible' });
    checkEqual(await messageTexts(page), contents, 'message texts in room db');
    const ids = await messageIds(page);
    checkEqual(ids, seededIds, 'message ids in room db');
    const loadingSeen = await page.evaluate(() => window.__historyLoadingSeen);
    if (!loadingSeen) console.log('  note: #history-loading was never seen visible (loads may have been too quick)');
  } finally {
    await page.close();
  }
}

async function newMessagesPill() {
  const a = (await session('alice')).page;
  const b = (await session('bob')).page;
  await openRoom(b, 'db');
  await openRoom(a, 'db');
  check(
    (await b.locator('#messages .msg').count()) >= HISTORY_SEED_MESSAGES,
    'room db on bob\'s page lacks the seeded messages (historyScroll failed?)',
  );
  const pill = b.locator('button#new-messages');
  check(!(await pill.isVisible()), 'button#new-messages visible before anything new arrived');
  await b.locator('#messages').evaluate((el) => {
    el.scrollTop = 0;
  });
  await pollUntil(async () => (await scrollState(b)).top === 0, STEP_TIMEOUT_MS, 'bob\'s #messages to reach the top');

  const text = `look down, bob ${suffix}`;
  const before = await scrollState(b);
  await send(a, text);
  await waitForMessage(b, text);
  await pill.waitFor({ state: 'visible' });
  const after = await scrollState(b);
  check(!atBottom(after), 'bob\'s #messages jumped to the bottom while he was scrolled up');
  // What he was reading stays put: a message added below the view does not move it.
  check(Math.abs(after.top - before.top) <= 1, `bob's view moved from ${before.top} to ${after.top} px while he read`);
  await pill.click();
  await pollUntil(async () => atBottom(await scrollState(b)), STEP_TIMEOUT_MS, 'bob\'s #messages to scroll to the bottom');
  await pill.waitFor({ state: 'hidden' });
  const lastId = (await messageIds(b)).at(-1);
  check(await messageInView(b, lastId), 'the newest message is not in view after clicking the pill');
}

async function xssAndWrap() {
  const a = (await session('alice')).page;
  const b = (await session('bob')).page;
  await openRoom(a, 'beast');
  await openRoom(b, 'beast');
  const payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b>';
  await send(a, payload);
  await waitForMessage(b, payload);

  const word = 'W'.repeat(WRAP_WORD_CHARS);
  await send(a, word);
  await waitForMessage(b, word);
  await sleep(ABSENCE_GRACE_MS);

  for (const [who, page] of [['alice', a], ['bob', b]]) {
    const found = await page.evaluate(() => ({
      injected: document.querySelectorAll('#messages img[onerror], #messages script, #messages .msg-text *').length,
      pwned: window.__pwned,
    }));
    checkEqual(found.injected, 0, `elements made from message text on ${who}'s page`);
    checkEqual(found.pwned, undefined, `window.__pwned on ${who}'s page`);
    const widths = await page.evaluate((w) => {
      const list = document.querySelector('#messages');
      const m = [...list.querySelectorAll('.msg')].find((e) => e.querySelector('.msg-text')?.textContent === w);
      const t = m.querySelector('.msg-text');
      return { text: t.scrollWidth, list: list.clientWidth, listScroll: list.scrollWidth };
    }, word);
    check(
      widths.text <= widths.list && widths.listScroll <= widths.list,
      `a ${WRAP_WORD_CHARS}-character word does not wrap on ${who}'s page: .msg-text scrollWidth ${widths.text}, ` +
        `#messages scrollWidth ${widths.listScroll}, clientWidth ${widths.list}`,
    );
  }
}

async function restartCatchUp() {
  const a = (await session('alice')).page;
  const b = (await session('bob')).page;
  // alice has read async up to a message of bob's, and has never seen one in wasm.
  const readText = `read before the restart ${suffix}`;
  await seedMessages(b, 'async', [readText]);
  await openRoom(a, 'async');
  await waitForMessage(a, readText);
  await openRoom(a, 'beast');
  await openRoom(b, 'beast');

  // From now on alice's new WebSockets are closed at once, until `blocked` is lifted.
  // (unrouteAll does not remove WebSocket routes in playwright-core 1.65, hence the flag.)
  let blocked = true;
  await a.routeWebSocket(/\/api\/ws(\?|$)/, (ws) => {
    if (blocked) ws.close({ code: 1006, reason: 'blocked by the test' });
    else ws.connectToServer();
  });
  try {
    await awayAndBack(a, b, () => {
      blocked = false;
    });
  } finally {
    blocked = false; // later scenarios need alice connected, whatever happened here
  }
}

/** restartCatchUp once alice's reconnects are blocked; `unblock` lets them through. */
async function awayAndBack(a, b, unblock) {
  await server.stop();
  await Promise.all([waitNotOnline(a), waitNotOnline(b)]);
  for (const [who, page] of [['alice', a], ['bob', b]]) {
    check(await page.locator('#composer-input').isDisabled(), `${who}'s composer is enabled while offline`);
    check(await page.locator('#send').isDisabled(), `${who}'s send button is enabled while offline`);
  }
  await server.start();
  await waitOnline(b);

  // While alice is away: 3 from bob's composer, 120 over a raw socket (more than a hello holds).
  const typed = numbered(`while away ${suffix}`, 3);
  for (const text of typed) await send(b, text);
  const seeded = numbered(`catch-up ${suffix}`, CATCH_UP_SEED_MESSAGES);
  await seedMessages(b, 'beast', seeded);
  // ...and one each in async (alice has read it up to its newest) and wasm (alice has never
  // seen a message there), the rooms she is not looking at.
  await seedMessages(b, 'async', [`missed in async ${suffix}`]);
  await seedMessages(b, 'wasm', [`missed in wasm ${suffix}`]);
  await waitForMessage(b, seeded.at(-1));
  const bobIds = await messageIds(b);
  checkAscendingUnique(bobIds, 'beast on bob\'s page');
  const bobTexts = await messageTexts(b);
  check(
    JSON.stringify(bobTexts.slice(-seeded.length - typed.length)) === JSON.stringify([...typed, ...seeded]),
    `bob's page does not end with his ${typed.length + seeded.length} new messages in order`,
  );
  check(!(await a.locator('#status[data-state="online"]').count()), 'alice came online while blocked');

  unblock();
  await waitOnline(a);

  // alice catches up: the same messages as bob, each once, in order. A client may page older
  // history in only when scrolled up, so scroll to the top while waiting.
  await pollUntil(
    async () => {
      const ids = await messageIds(a);
      if (JSON.stringify(ids) === JSON.stringify(bobIds)) return true;
      await a.locator('#messages').evaluate((el) => {
        el.scrollTop = 0;
      });
      return false;
    },
    CATCH_UP_TIMEOUT_MS,
    `alice's beast to match bob's ${bobIds.length} message ids after the reconnect`,
    250,
  ).catch(async (e) => {
    const ids = await messageIds(a);
    const missing = bobIds.filter((id) => !ids.includes(id));
    const extra = ids.filter((id) => !bobIds.includes(id));
    const dup = ids.length - new Set(ids).size;
    throw new TestFailure(
      `${e.message}: alice has ${ids.length} (missing ${missing.length}, e.g. ${missing.slice(0, 3)}; ` +
        `extra ${extra.length}; duplicates ${dup})`,
    );
  });
  checkEqual(await messageTexts(a), bobTexts, 'message texts in beast, alice vs bob');

  // The rooms alice is not viewing show what arrived while she was away.
  for (const [roomId, what] of [['async', 'a room she had read'], ['wasm', 'a room that was empty when she saw it']]) {
    const badge = roomButton(a, roomId).locator('.room-unread');
    await pollUntil(
      async () => (await badge.isVisible()) && (await badge.textContent())?.trim() === '1',
      STEP_TIMEOUT_MS,
      `alice's ${roomId} .room-unread (${what}) to show "1" after catching up`,
    ).catch(async (e) => {
      const shown = (await badge.isVisible()) ? JSON.stringify((await badge.textContent())?.trim()) : 'hidden';
      throw new TestFailure(`${e.message}; it is ${shown}`);
    });
  }
}

/**
 * Error events and failed sends, with the WebSocket relayed through the test: a send whose text
 * holds FAIL_MARK is answered by the test with the server's STORE_UNAVAILABLE error instead of
 * reaching the server, and an error event about nothing the page sent is injected. The failed
 * send shows "not sent" with Retry; Retry, with the relay no longer failing, delivers it once.
 */
async function errorsAndFailedSends() {
  const FAIL_MARK = '[fail this send]';
  const context = await newContext();
  await apiLogin(context, users.alice);
  const page = await newPage(context, 'alice-relayed');
  let failing = true;
  let toPage = null;
  await page.routeWebSocket(/\/api\/ws(\?|$)/, (ws) => {
    const upstream = ws.connectToServer();
    toPage = (event) => ws.send(JSON.stringify(event));
    ws.onMessage((message) => {
      if (failing && typeof message === 'string' && message.includes(FAIL_MARK)) {
        ws.send(JSON.stringify({ type: 'error', payload: { id: 'STORE_UNAVAILABLE', message: 'the message store did not answer' } }));
      } else {
        upstream.send(message);
      }
    });
  });
  await page.goto('/chat#room=wasm');
  await waitOnline(page, STEP_TIMEOUT_MS);
  await openRoom(page, 'wasm');

  const text = `${FAIL_MARK} ${suffix}`;
  await page.locator('#composer-input').fill(text);
  await page.locator('#composer-input').press('Enter');
  const failed = page.locator('#messages .msg[data-pending="true"][data-failed="true"]');
  await failed.waitFor({ state: 'visible' });
  checkEqual(await failed.locator('.msg-text').textContent(), text, 'the failed send\'s text');
  check(/store did not answer/.test(await failed.textContent()), 'the failed send does not say why');
  checkEqual(await page.locator('#messages .msg[data-id]').filter({ hasText: FAIL_MARK }).count(), 0, 'delivered copies of the failed send');

  // An error event that answers no send is shown inline and can be dismissed.
  toPage({ type: 'error', payload: { id: 'UNKNOWN_ROOM', message: 'no room "zzz"' } });
  const row = page.locator('#messages .chat-error');
  await row.waitFor({ state: 'visible' });
  check(/no room "zzz"/.test(await row.textContent()) && /UNKNOWN_ROOM/.test(await row.textContent()), 'the error row does not show the event');
  await row.getByRole('button', { name: 'Dismiss' }).click();
  await row.waitFor({ state: 'detached' });

  failing = false;
  await failed.locator('.msg-retry').click();
  const delivered = await waitForMessage(page, text);
  check(delivered.mine, 'the retried message is not marked as own');
  await page.locator('#messages .msg[data-pending="true"]').waitFor({ state: 'detached' });
  await sleep(ABSENCE_GRACE_MS);
  checkEqual(await page.locator('#messages .msg').filter({ hasText: FAIL_MARK }).count(), 1, 'copies of the retried message');
}

async function phoneDrawer() {
  const context = await newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await apiLogin(context, users.alice);
  const page = await newPage(context, 'alice-phone');
  await page.goto('/chat#room=beast');
  await waitOnline(page, STEP_TIMEOUT_MS);

  const toggle = page.locator('button#rooms-toggle');
  await toggle.waitFor({ state: 'visible' });
  check(!(await page.evaluate(() => document.body.classList.contains('rooms-open'))), 'the drawer starts open');
  await toggle.tap();
  await page.waitForFunction(() => document.body.classList.contains('rooms-open'));
  const asyncRoom = roomButton(page, 'async');
  await asyncRoom.waitFor({ state: 'visible' });
  await asyncRoom.tap();
  await page.waitForFunction(() => !document.body.classList.contains('rooms-open'));
  await page.waitForSelector('nav#rooms button.room[data-room-id="async"][aria-current="true"]', { state: 'attached' });
  checkEqual((await page.locator('#room-title').textContent())?.trim(), ROOM_NAMES.async, '#room-title on the phone');

  // The composer works at this size: tap, type, send.
  const text = `from my phone ${suffix}`;
  const input = page.locator('#composer-input');
  await input.tap();
  await input.fill(text);
  await page.locator('button#send').tap();
  const m = await waitForMessage(page, text);
  check(m.mine, 'the phone\'s own message lacks class "mine"');
  const box = await page.locator('form#composer').boundingBox();
  check(box && box.y + box.height <= PHONE.height + 1 && box.x >= 0 && box.x + box.width <= PHONE.width + 1,
    `form#composer is not inside the ${PHONE.width}x${PHONE.height} viewport: ${JSON.stringify(box)}`);
  const pageScroll = await page.evaluate(() => document.documentElement.scrollWidth);
  check(pageScroll <= PHONE.width, `the page scrolls sideways on a phone (scrollWidth ${pageScroll})`);
  await keepScreenshot(page, 'chat-phone.png');
}

async function keyboardOnly() {
  const a = (await session('alice')).page;
  await openRoom(a, 'beast');
  await a.evaluate(() => document.activeElement?.blur());
  let switched = false;
  let composerReached = false;
  const roomsReached = new Set();
  for (let i = 0; i < TAB_PRESSES_MAX && !(switched && composerReached); i++) {
    await a.keyboard.press('Tab');
    const focus = await a.evaluate(() => {
      const e = document.activeElement;
      return { id: e?.id ?? '', room: e?.matches('button.room') ? e.dataset.roomId : null };
    });
    if (focus.id === 'composer-input') composerReached = true;
    if (focus.room) {
      roomsReached.add(focus.room);
      if (!switched && focus.room === 'wasm') {
        await a.keyboard.press('Enter');
        await a.waitForSelector('nav#rooms button.room[data-room-id="wasm"][aria-current="true"]', { state: 'attached' });
        await pollUntil(
          async () => (await a.locator('#room-title').textContent())?.trim() === ROOM_NAMES.wasm,
          STEP_TIMEOUT_MS,
          '#room-title after Enter on a room',
        );
        switched = true;
      }
    }
  }
  check(roomsReached.size > 0, `Tab never reached a room button in ${TAB_PRESSES_MAX} presses`);
  check(switched, `Tab reached rooms ${[...roomsReached]} but not wasm`);
  check(composerReached, `Tab never reached #composer-input in ${TAB_PRESSES_MAX} presses`);
  // Typing and Enter send from the keyboard alone.
  const text = `typed without a mouse ${suffix}`;
  await a.evaluate(() => document.activeElement?.blur());
  for (let i = 0; i < TAB_PRESSES_MAX; i++) {
    await a.keyboard.press('Tab');
    if (await a.evaluate(() => document.activeElement?.id === 'composer-input')) break;
  }
  await a.keyboard.type(text);
  await a.keyboard.press('Enter');
  await waitForMessage(a, text);
}

async function darkMode() {
  const a = (await session('alice')).page;
  const light = await pageBackground(a);
  const context = await newContext({ colorScheme: 'dark' });
  await apiLogin(context, users.alice);
  const page = await newPage(context, 'alice-dark');
  await page.goto('/chat#room=async');
  await waitOnline(page, STEP_TIMEOUT_MS);
  await page.locator('#messages .msg[data-id]').first().waitFor();
  const dark = await pageBackground(page);
  check(dark !== light, `the page background is ${dark} in both light and dark mode`);
  await keepScreenshot(page, 'chat-desktop-dark.png');
}

async function desktopScreenshot() {
  const a = (await session('alice')).page;
  await openRoom(a, 'async'); // both authors, a day separator, a room preview each
  await a.locator('#messages .msg[data-id]').first().waitFor();
  await keepScreenshot(a, 'chat-desktop.png');
}

async function logout() {
  const context = await newContext();
  await apiLogin(context, users.bob);
  const page = await newPage(context, 'bob-logout');
  await page.goto('/chat');
  await waitOnline(page, STEP_TIMEOUT_MS);
  await page.locator('button#logout').click();
  await waitPath(page, '/login');
  await page.goto('/chat');
  await waitPath(page, '/login');
  await page.goto('/');
  await waitPath(page, '/login');
  // bob's other session (another login) is untouched.
  const b = (await session('bob')).page;
  await waitOnline(b, STEP_TIMEOUT_MS);
}

const SCENARIOS = [
  { fn: limitsEndpoint },
  { fn: signupAndLogin },
  { fn: liveChat },
  { fn: composer },
  { fn: reloadKeepsSession },
  { fn: historyScroll },
  { fn: newMessagesPill },
  { fn: xssAndWrap },
  { fn: restartCatchUp, timeoutMs: RESTART_SCENARIO_TIMEOUT_MS },
  { fn: errorsAndFailedSends },
  { fn: phoneDrawer },
  { fn: keyboardOnly },
  { fn: darkMode },
  { fn: desktopScreenshot },
  { fn: logout },
];

// ---------------------------------------------------------------------------------------------
// The runner.

/** An error for the report: ours as they are; Playwright's with their call log, not the browser's stderr. */
function describe(error) {
  if (error instanceof TestFailure) return error.message;
  const text = String(error?.stack || error).split('\n  Browser logs:')[0];
  const lines = text.split('\n');
  return lines.length > ERROR_LINES_MAX ? [...lines.slice(0, ERROR_LINES_MAX), '...'].join('\n') : text;
}

async function saveFailureArtifacts(scenario) {
  for (const [name, { page, log }] of pages) {
    const base = path.join(ARTIFACTS, `FAIL-${scenario}-${name}`);
    fs.writeFileSync(`${base}.console.txt`, `${page.url()}\n${log.join('\n')}\n`);
    if (!page.isClosed()) {
      await withTimeout(page.screenshot({ path: `${base}.png` }), STEP_TIMEOUT_MS, `screenshot of ${name}`).catch(
        (e) => console.log(`  (no screenshot of ${name}: ${e.message})`),
      );
    }
  }
}

async function closeScenarioContexts() {
  const contexts = scenarioContexts;
  scenarioContexts = [];
  await Promise.all(contexts.map((c) => withTimeout(c.close(), STEP_TIMEOUT_MS, 'closing a context').catch(() => {})));
}

async function cleanup() {
  if (browser) await withTimeout(browser.close(), STEP_TIMEOUT_MS, 'closing the browser').catch(() => {});
  browser = null;
  if (server) await server.stop().catch(() => server.killNow());
  if (tmpDir && process.env.KEEP_TMP !== '1') fs.rmSync(tmpDir, { recursive: true, force: true });
}

async function main() {
  const started = Date.now();
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringchat-browser-'));
  check(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (run proto-tests/browser/run.sh, or set CHROMIUM)`);

  server = new Server(tmpDir);
  await server.start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: process.env.HEADED !== '1',
    args: CHROMIUM_ARGS,
    // Signals are ours to handle (below), so the browser is not closed under a running scenario.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  console.log(`ringchat ${server.base} (data ${server.dataDir}), ${browser.version()}, users *_${suffix}`);

  const only = process.env.ONLY ? new Set(process.env.ONLY.split(',')) : null;
  const results = [];
  for (const { fn, timeoutMs = SCENARIO_TIMEOUT_MS } of SCENARIOS) {
    if (only && !only.has(fn.name)) continue;
    const t0 = Date.now();
    let error = null;
    try {
      await withTimeout(fn(), timeoutMs, `scenario ${fn.name}`);
    } catch (e) {
      error = e;
    }
    if (stopping) break;
    const seconds = ((Date.now() - t0) / 1000).toFixed(1);
    if (error) {
      console.log(`FAIL ${fn.name} (${seconds} s)`);
      console.log(`  ${describe(error)}`.replace(/\n/g, '\n  '));
      await saveFailureArtifacts(fn.name);
    } else {
      console.log(`PASS ${fn.name} (${seconds} s)`);
    }
    results.push({ name: fn.name, ok: !error });
    await closeScenarioContexts();
    if (server.child === null) {
      // A scenario that stopped the server and failed before starting it again.
      await server.start().catch((e) => console.log(`  could not restart ringchat: ${e.message}`));
    }
  }

  if (stopping) return 1; // the signal handler reports and exits
  const failed = results.filter((r) => !r.ok).map((r) => r.name);
  const total = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `${results.length - failed.length} of ${results.length} scenarios passed in ${total} s` +
      (failed.length ? `; failed: ${failed.join(', ')}; artifacts in ${ARTIFACTS}` : `; artifacts in ${ARTIFACTS}`),
  );
  return failed.length ? 1 : 0;
}

// Whatever happens, the server and the browser go with us: on exit the server is killed (the
// browser, launched with a pipe, dies with its pipe); on a signal both are stopped at once and the
// scenario in progress is abandoned.
process.on('exit', () => server?.killNow());
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    stopping = true;
    console.log(`\n${signal}: stopping the server and the browser`);
    server?.killNow();
    const closing = browser ? browser.close().catch(() => {}) : Promise.resolve();
    withTimeout(closing, STEP_TIMEOUT_MS, 'closing the browser')
      .catch(() => {})
      .finally(() => {
        if (tmpDir && process.env.KEEP_TMP !== '1') fs.rmSync(tmpDir, { recursive: true, force: true });
        process.exit(128 + os.constants.signals[signal]);
      });
  });
}

let code = 1;
try {
  code = await main();
} catch (e) {
  console.log(`suite error: ${describe(e)}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
