// Dates, times and durations in the page's language.
import { locale } from "./i18n.js";

const cache = new Map();
function formatter(kind) {
  const key = `${locale()}|${kind}`;
  if (!cache.has(key)) {
    const options = {
      datetime: { dateStyle: "short", timeStyle: "short" },
      time: { timeStyle: "short" },
      date: { dateStyle: "medium" },
    }[kind];
    cache.set(key, new Intl.DateTimeFormat(locale(), options));
  }
  return cache.get(key);
}

export function dateTime(iso) {
  return iso ? formatter("datetime").format(new Date(iso)) : "";
}

export function time(iso) {
  return iso ? formatter("time").format(new Date(iso)) : "";
}

/** "4:05" or "1:02:09" for a number of milliseconds. */
export function duration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

/** A `datetime-local` input value for a Date, in local time. */
export function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

/** A `datetime-local` value (local time) as ISO 8601 in UTC, or null. */
export function isoFromLocalInput(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** A sensible default follow-up time: one hour from now, on a quarter hour. */
export function defaultFollowUp() {
  const date = new Date(Date.now() + 60 * 60 * 1000);
  date.setMinutes(Math.ceil(date.getMinutes() / 15) * 15, 0, 0);
  return date;
}
