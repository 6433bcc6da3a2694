// The login and sign-up pages: validate as the server does, send, show the server's answer
// next to the field it is about, and go to the chat on success. A visitor who already has a
// valid session is sent straight to the chat.

import * as api from './api.js';
import { DEFAULT_LIMITS, serverErrorPlacement, validateAccountForm } from './validate.js';

const form = document.querySelector('form[data-kind]');
const kind = form.dataset.kind; // 'login' | 'signup'
const fields = ['username', 'email', 'password'].filter((f) => document.getElementById(f));
const formError = document.getElementById('form-error');
const submit = form.querySelector('button[type=submit]');
let limits = DEFAULT_LIMITS;
// Fields the user has left once: errors show on blur, not while a first value is typed.
const touched = new Set();

function values() {
  const v = {};
  for (const f of fields) v[f] = document.getElementById(f).value;
  return v;
}

function showErrors(errors) {
  for (const f of fields) {
    const input = document.getElementById(f);
    const message = errors[f] || '';
    document.getElementById(`${f}-error`).textContent = message;
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}

function visibleErrors() {
  const all = validateAccountForm(values(), limits);
  const shown = {};
  for (const f of touched) if (all[f]) shown[f] = all[f];
  return shown;
}

for (const f of fields) {
  const input = document.getElementById(f);
  input.addEventListener('blur', () => {
    if (input.value !== '') touched.add(f);
    showErrors(visibleErrors());
  });
  input.addEventListener('input', () => {
    formError.textContent = '';
    if (touched.has(f)) showErrors(visibleErrors());
  });
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  formError.textContent = '';
  for (const f of fields) touched.add(f);
  const v = values();
  const errors = validateAccountForm(v, limits);
  showErrors(errors);
  const first = fields.find((f) => errors[f]);
  if (first) {
    document.getElementById(first).focus();
    return;
  }
  submit.disabled = true;
  submit.setAttribute('aria-busy', 'true');
  const r =
    kind === 'signup'
      ? await api.createAccount(v.username, v.email, v.password)
      : await api.login(v.email, v.password);
  submit.disabled = false;
  submit.removeAttribute('aria-busy');
  if (r.ok) {
    location.replace('/chat');
    return;
  }
  const { field, message } = serverErrorPlacement(r.status, r.error, r.retryAfter);
  if (field && fields.includes(field)) {
    showErrors({ [field]: message });
    document.getElementById(field).focus();
  } else {
    formError.textContent = message;
  }
});

// Already logged in: nothing to do here. The limits may differ from the defaults.
const [who, serverLimits] = await Promise.all([api.me(), api.limits()]);
limits = serverLimits;
if (who.ok) location.replace('/chat');
