// Unit tests of static/js/validate.js under Node: the client's checks must agree with the
// server's (src/accounts/validate.rs) on the spec's examples and on every length boundary.

import assert from 'node:assert/strict';
import test from 'node:test';

import {
  DEFAULT_LIMITS,
  charLength,
  isValidEmail,
  serverErrorPlacement,
  utf8Length,
  validateAccountForm,
} from '../../../static/js/validate.js';

test('email examples from shared/spec/compat.md', () => {
  for (const ok of [
    'email@example.com',
    '"email"@example.com',
    '_______@example.com',
    'ñ@example.com',
    'email@example.co.jp',
    'firstname+lastname@example.com',
    'a@[1.2.3.4]',
    'a@[999.1.1.1]',
    '"a b@c"@example.com',
  ]) {
    assert.ok(isValidEmail(ok), ok);
  }
  for (const bad of [
    'plainaddress',
    '@example.com',
    'email@example',
    'email..email@example.com',
    '.email@example.com',
    'email.@example.com',
    'email@example..com',
    'email@example.com (Joe Smith)',
    '""@example.com',
    'a\u2028b"@example.com',
    'a\u00a0b@example.com',
    'a@example.c',
    'a@exa_mple.com',
  ]) {
    assert.ok(!isValidEmail(bad), bad);
  }
});

test('lengths are UTF-8 bytes for accounts and scalar values for messages', () => {
  assert.equal(utf8Length('ñ'), 2);
  assert.equal(utf8Length('👋'), 4);
  assert.equal(charLength('👋a'), 2);
  assert.equal(charLength(''), 0);
});

test('username, email and password boundaries', () => {
  const ok = { username: 'abcd', email: 'a@example.com', password: 'x'.repeat(10) };
  assert.deepEqual(validateAccountForm(ok), {});
  assert.ok(validateAccountForm({ ...ok, username: 'abc' }).username);
  assert.ok(validateAccountForm({ ...ok, username: 'ññ' }).username === undefined); // 4 bytes
  assert.ok(validateAccountForm({ ...ok, username: 'x'.repeat(101) }).username);
  assert.equal(validateAccountForm({ ...ok, username: 'x'.repeat(100) }).username, undefined);
  assert.ok(validateAccountForm({ ...ok, password: 'x'.repeat(9) }).password);
  assert.ok(validateAccountForm({ ...ok, password: 'x'.repeat(101) }).password);
  assert.equal(validateAccountForm({ ...ok, password: 'ñ'.repeat(50) }).password, undefined); // 100 bytes
  assert.ok(validateAccountForm({ ...ok, password: 'ñ'.repeat(51) }).password); // 102 bytes
  const long = `${'a'.repeat(89)}@example.com`; // 101 bytes
  assert.match(validateAccountForm({ ...ok, email: long }).email, /at most 100/);
  assert.ok(validateAccountForm({ ...ok, email: 'nope' }).email);
  // Login forms have no username field.
  assert.deepEqual(validateAccountForm({ email: ok.email, password: ok.password }), {});
  // The server's limits replace the defaults.
  assert.ok(validateAccountForm(ok, { ...DEFAULT_LIMITS, passwordBytesMin: 12 }).password);
});

test('server errors land on the field they are about', () => {
  assert.equal(serverErrorPlacement(400, { id: 'USERNAME_EXISTS', message: '' }).field, 'username');
  assert.equal(serverErrorPlacement(400, { id: 'EMAIL_EXISTS', message: '' }).field, 'email');
  assert.equal(serverErrorPlacement(400, { id: 'LOGIN_FAILED', message: 'Login failed' }).field, null);
  assert.equal(serverErrorPlacement(400, { id: 'BAD_REQUEST', message: 'email: invalid format' }).field, 'email');
  assert.equal(serverErrorPlacement(400, { id: 'BAD_REQUEST', message: 'Invalid body provided' }).field, null);
  assert.match(serverErrorPlacement(429, { id: 'RATE_LIMITED', message: '' }, 42).message, /42 s/);
  assert.match(serverErrorPlacement(0, { id: 'NETWORK', message: 'Cannot reach the server.' }).message, /reach/);
});
