// The server's validation rules for the account forms (src/accounts/validate.rs,
// shared/spec/compat.md "HTTP"), in the server's order and with its messages, so a form can say
// what is wrong before anything is sent. The server stays the judge: its answer is shown when it
// disagrees. Lengths are UTF-8 byte lengths, as on the server. No DOM here (unit-tested in Node).

/** Defaults; `GET /api/limits` may replace them with the running server's values. */
export const DEFAULT_LIMITS = Object.freeze({
  usernameBytesMin: 4,
  usernameBytesMax: 100,
  emailBytesMax: 100,
  passwordBytesMin: 10,
  passwordBytesMax: 100,
  messageCharsMax: 4096,
});

// The reference's pattern, which the server's hand-written grammar accepts exactly. With the
// `u` flag, `\s` is Unicode White_Space and `.` excludes the line terminators, as on the server.
const EMAIL_PATTERN =
  /^(([^<>()[\]\\.,;:\s@"]+(\.[^<>()[\]\\.,;:\s@"]+)*)|(".+"))@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\])|(([a-zA-Z\-0-9]+\.)+[a-zA-Z]{2,}))$/u;

const encoder = new TextEncoder();

/** UTF-8 byte length of a string. */
export function utf8Length(s) {
  return encoder.encode(s).length;
}

/** Number of Unicode scalar values (what the server's message limit counts). */
export function charLength(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Whether `s` is an email address by the server's grammar. */
export function isValidEmail(s) {
  return EMAIL_PATTERN.test(s);
}

/**
 * Field errors for a form, `{field: message}`, empty when valid. `fields` is `{username?,
 * email, password}`; `username` is checked only when present (sign-up). Messages are the
 * server's (`"username: invalid size"` …) turned into sentences a person reads.
 */
export function validateAccountForm(fields, limits = DEFAULT_LIMITS) {
  const errors = {};
  if (fields.username !== undefined) {
    const n = utf8Length(fields.username);
    if (n < limits.usernameBytesMin || n > limits.usernameBytesMax) {
      errors.username =
        n < limits.usernameBytesMin
          ? `Use at least ${limits.usernameBytesMin} characters.`
          : `Use at most ${limits.usernameBytesMax} bytes.`;
    }
  }
  if (utf8Length(fields.email) > limits.emailBytesMax) {
    errors.email = `Use at most ${limits.emailBytesMax} bytes.`;
  } else if (!isValidEmail(fields.email)) {
    errors.email = fields.email === '' ? 'Enter your email address.' : 'This is not a valid email address.';
  }
  const p = utf8Length(fields.password);
  if (p < limits.passwordBytesMin) {
    errors.password = `Use at least ${limits.passwordBytesMin} characters.`;
  } else if (p > limits.passwordBytesMax) {
    errors.password = `Use at most ${limits.passwordBytesMax} bytes.`;
  }
  return errors;
}

/**
 * Where a server error belongs: `{field, message}` with `field` one of username, email,
 * password, or null for the whole form. `error` is the server's `{id, message}`.
 */
export function serverErrorPlacement(status, error, retryAfterSeconds) {
  const id = error && error.id;
  const message = (error && error.message) || '';
  switch (id) {
    case 'USERNAME_EXISTS':
      return { field: 'username', message: 'This username is taken.' };
    case 'EMAIL_EXISTS':
      return { field: 'email', message: 'An account with this email already exists.' };
    case 'LOGIN_FAILED':
      return { field: null, message: 'Wrong email or password.' };
    case 'RATE_LIMITED':
      return { field: null, message: `Too many attempts. Try again in ${retryAfterSeconds || 60} s.` };
    case 'SERVICE_UNAVAILABLE':
      return { field: null, message: 'The server is busy. Try again in a moment.' };
    case 'BAD_REQUEST': {
      // "username: invalid size", "email: too long", "email: invalid format", …
      const m = /^(username|email|password): (.*)$/.exec(message);
      if (m) return { field: m[1], message: `The server says: ${m[2]}.` };
      return { field: null, message: message || 'The server refused the request.' };
    }
    default:
      return { field: null, message: message || `The server answered ${status}.` };
  }
}
