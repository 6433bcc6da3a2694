// Times and dates as the chat shows them, in the browser's locale and time zone.

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const dayYearFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'long', year: 'numeric' });

/** Milliseconds in a day, for calendar arithmetic on local midnights. */
const DAY_MS = 86400000;

/** `14:05` */
export function formatTime(ms) {
  return timeFormat.format(new Date(ms));
}

/** The tooltip: full date and time. */
export function formatFull(ms) {
  return fullFormat.format(new Date(ms));
}

/** A key that differs between local calendar days. */
export function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** "Today", "Yesterday", "Monday 30 November", or with the year when it is not this year. */
export function formatDay(ms, now = Date.now()) {
  const days = Math.round((startOfDay(now) - startOfDay(ms)) / DAY_MS);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  const d = new Date(ms);
  if (d.getFullYear() === new Date(now).getFullYear() && days > 0) return dayFormat.format(d);
  return dayYearFormat.format(d);
}
