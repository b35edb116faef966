// Where a page keeps its gameserver session, shared by the lobby ("/") and
// the monitor page ("/admin/"): a login on one is a login on the other.

/**
 * Each tab has its own session (sessionStorage, so a reload keeps it and
 * two windows can be two players), and a new tab starts from the last login
 * (localStorage). Logging out in one tab marks that tab logged out without
 * touching the others.
 */
export const sessionStore = {
  getItem(key) {
    try {
      return sessionStorage.getItem(key) ?? localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  setItem(key, value) {
    sessionStorage.setItem(key, value);
    localStorage.setItem(key, value);
  },
  removeItem(key) {
    sessionStorage.setItem(key, "null");
    localStorage.removeItem(key);
  },
};
