// The login session (POST /api/auth/token) kept in sessionStorage, and the REST calls.

const STORE = "dialhub.session";

export class HttpError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export async function api(path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new HttpError(
      data?.error?.message ?? `HTTP ${response.status}`,
      data?.error?.code,
      response.status,
    );
  }
  return data;
}

export async function logIn(username, password) {
  const session = await api("/api/auth/token", { body: { username, password } });
  sessionStorage.setItem(STORE, JSON.stringify(session));
  return session;
}

/** The stored session, or null when there is none or it has expired. */
export function currentSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(STORE));
    return session && new Date(session.expires_at) > new Date() ? session : null;
  } catch {
    return null;
  }
}

export function logOut() {
  for (const key of Object.keys(sessionStorage)) {
    if (key.startsWith("dialhub.")) sessionStorage.removeItem(key);
  }
}

export function isSupervisor(user) {
  return user.role === "supervisor" || user.role === "admin";
}

/** A small per-tab store for what must survive a reload (last seq, presence, work list). */
export const tabState = {
  get(key, fallback = null) {
    try {
      const value = sessionStorage.getItem(`dialhub.${key}`);
      return value === null ? fallback : JSON.parse(value);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    sessionStorage.setItem(`dialhub.${key}`, JSON.stringify(value));
  },
};
