// "3 h ago", "expires in 2 d": short relative times, with the exact time in a tooltip.

const UNITS = [
  ["d", 86400],
  ["h", 3600],
  ["min", 60],
];

export function span(seconds) {
  const s = Math.abs(seconds);
  for (const [unit, size] of UNITS) if (s >= size) return `${Math.floor(s / size)} ${unit}`;
  return `${Math.max(1, Math.floor(s))} s`;
}

export function ago(iso, now = Date.now()) {
  const seconds = (now - Date.parse(iso)) / 1000;
  return seconds < 45 ? "just now" : `${span(seconds)} ago`;
}

export function expiresIn(iso, now = Date.now()) {
  const seconds = (Date.parse(iso) - now) / 1000;
  return seconds <= 0 ? "expired" : `expires in ${span(seconds)}`;
}

export function exact(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
