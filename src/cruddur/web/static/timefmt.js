// "3 h ago", "expires in 2 d": short relative times, with the exact time in a tooltip.

const UNITS = [
  ["d", 86400],
  ["h", 3600],
  ["min", 60],
];

// Rounded down ("3 h ago"), or to the nearest (`near`: a time still to come): a crud
// posted for 7 days "expires in 7 d", not "6 d", from its first second, and one with a
// day and a minute left "1 d", not "2 d". Near, a unit is shown once the time is within
// half the next smaller unit of a whole of it (23 h 40 min left: "1 d", not "24 h").
export function span(seconds, near = false) {
  const s = Math.abs(seconds);
  const round = near ? Math.round : Math.floor;
  for (const [i, [unit, size]] of UNITS.entries()) {
    const smaller = UNITS[i + 1]?.[1] ?? 1;
    if (near ? s >= size - smaller / 2 : s >= size) return `${round(s / size)} ${unit}`;
  }
  return `${Math.max(1, round(s))} s`;
}

export function ago(iso, now = Date.now()) {
  const seconds = (now - Date.parse(iso)) / 1000;
  return seconds < 45 ? "just now" : `${span(seconds)} ago`;
}

export function expiresIn(iso, now = Date.now()) {
  const seconds = (Date.parse(iso) - now) / 1000;
  return seconds <= 0 ? "expired" : `expires in ${span(seconds, true)}`;
}

export function exact(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
