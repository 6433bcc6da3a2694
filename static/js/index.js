// `/`: go to the chat with a valid session, else to the login page.
import { me } from './api.js';

const r = await me();
if (r.ok) {
  location.replace('/chat');
} else if (r.status === 401) {
  location.replace('/login');
} else {
  const p = document.getElementById('index-status');
  p.textContent = `${r.error.message || 'The server is not answering.'} `;
  const a = document.createElement('a');
  a.href = '/';
  a.textContent = 'Try again';
  p.append(a);
}
