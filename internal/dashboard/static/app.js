// The dbusers dashboard: the users of one database, over the platform's
// database-users API of the same origin. Every name is put in the page as
// text (textContent), never as HTML: accounts made outside dbusers can be
// named anything. The token lives in memory and in sessionStorage, which
// ends with the tab; it never goes into a URL.
"use strict";

(function () {
  const TOKEN_KEY = "dbusers.token";
  const $ = (id) => document.getElementById(id);

  let token = "";
  let databaseID = "";
  let menuUser = null; // the user whose "…" menu is open

  // --- token -------------------------------------------------------------

  // claimsOf reads a JWT's claims without checking it (the API checks it):
  // the dashboard needs only sub (the database id) and exp.
  function claimsOf(t) {
    const parts = t.split(".");
    if (parts.length !== 3) {
      throw new Error("This is not an access token: a token has three parts separated by dots.");
    }
    let claims;
    try {
      const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      claims = JSON.parse(atob(b64 + "===".slice((b64.length + 3) % 4)));
    } catch (e) {
      throw new Error("This is not an access token: its middle part does not decode.");
    }
    if (typeof claims.sub !== "string" || claims.sub === "") {
      throw new Error("This token names no database (it has no sub).");
    }
    return claims;
  }

  function signIn(t) {
    const claims = claimsOf(t);
    token = t;
    databaseID = claims.sub;
    sessionStorage.setItem(TOKEN_KEY, t);
    $("database").textContent = "Database " + databaseID;
    $("sign-in-section").hidden = true;
    $("users-section").hidden = false;
    $("sign-out").hidden = false;
    $("token").value = "";
  }

  function signOut(message) {
    token = "";
    databaseID = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("database").textContent = "";
    $("users-section").hidden = true;
    $("sign-in-section").hidden = false;
    $("sign-out").hidden = true;
    $("users").tBodies[0].replaceChildren();
    closeMenu();
    if (message) {
      showError(message);
    }
  }

  // --- errors ------------------------------------------------------------

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }

  function clearError() {
    const box = $("error");
    box.textContent = "";
    box.hidden = true;
  }

  // messageOf words an API error body: {"errors": {field: [...]}} or
  // {"error": "..."}.
  function messageOf(status, body) {
    if (body && body.errors && typeof body.errors === "object") {
      const all = [];
      for (const list of Object.values(body.errors)) {
        for (const m of list) {
          all.push(String(m));
        }
      }
      if (all.length > 0) {
        return all.join(" ");
      }
    }
    if (body && typeof body.error === "string" && body.error !== "") {
      return body.error;
    }
    return "The request failed (HTTP " + status + ").";
  }

  // --- API ---------------------------------------------------------------

  class APIError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const url = "/api/databases/" + encodeURIComponent(databaseID) + "/users" + path;
    const init = {
      method: method,
      headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw new APIError(0, "The API could not be reached: check your connection and try again.");
    }
    let data = null;
    if (res.status !== 204) {
      try {
        data = await res.json();
      } catch (e) {
        data = null;
      }
    }
    if (!res.ok) {
      const message = messageOf(res.status, data);
      if (res.status === 401) {
        signOut("Your access token was refused: " + message + " Sign in with a valid token.");
      }
      throw new APIError(res.status, message);
    }
    return data;
  }

  const userPath = (name) => "/" + encodeURIComponent(name);

  // --- users table -------------------------------------------------------

  async function loadUsers() {
    $("loading").hidden = false;
    try {
      const data = await api("GET", "");
      renderUsers(data["database-users"] || []);
    } finally {
      $("loading").hidden = true;
    }
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function renderUsers(users) {
    // A menu opened while the list was reloading (after an action) stays
    // open on its user's new row; it closes if the user is gone.
    const keep = $("user-menu").hidden ? null : menuUser;
    let keepButton = null;
    closeMenu();
    const rows = users.map((u) => {
      const tr = document.createElement("tr");
      tr.dataset.name = u.name;
      const name = cell(u.name);
      name.className = "name";
      tr.append(name, cell(u.read_only ? "true" : "false"), cell(u.protected ? "true" : "false"));
      const actions = document.createElement("td");
      actions.className = "actions";
      if (!u.protected) {
        // A protected user is the platform's: no reset, no delete.
        const b = document.createElement("button");
        b.type = "button";
        b.className = "more";
        b.textContent = "…";
        b.setAttribute("aria-label", "Actions for " + u.name);
        b.setAttribute("aria-haspopup", "menu");
        b.addEventListener("click", (ev) => {
          ev.stopPropagation();
          openMenu(u.name, b);
        });
        if (u.name === keep) {
          keepButton = b;
        }
        actions.append(b);
      }
      tr.append(actions);
      return tr;
    });
    $("users").tBodies[0].replaceChildren(...rows);
    if (keepButton) {
      openMenu(keep, keepButton);
    }
  }

  // --- "…" menu ----------------------------------------------------------

  function openMenu(name, button) {
    const menu = $("user-menu");
    if (menuUser === name && !menu.hidden) {
      closeMenu();
      return;
    }
    menuUser = name;
    const r = button.getBoundingClientRect();
    menu.style.top = (window.scrollY + r.bottom + 4) + "px";
    menu.style.left = (window.scrollX + r.right - 180) + "px";
    menu.hidden = false;
  }

  function closeMenu() {
    $("user-menu").hidden = true;
    menuUser = null;
  }

  // --- confirmation dialog -----------------------------------------------

  let confirmAction = null;

  function askConfirmation(title, text, name, action) {
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-name").textContent = name;
    const input = $("confirm-input");
    input.value = "";
    input.dataset.expected = name;
    $("confirm-button").disabled = true;
    confirmAction = action;
    $("confirm-dialog").showModal();
    input.focus();
  }

  function closeConfirmation() {
    confirmAction = null;
    $("confirm-input").value = "";
    $("confirm-dialog").close();
  }

  // --- password popup ----------------------------------------------------

  function showPassword(name, password) {
    $("password-user").textContent = name;
    $("password-value").textContent = password;
    $("copy-status").textContent = "";
    $("password-dialog").showModal();
  }

  // The password is dropped from the page as soon as the popup closes: it
  // lives nowhere else, so it is gone for good.
  function forgetPassword() {
    $("password-value").textContent = "";
    $("password-user").textContent = "";
    $("copy-status").textContent = "";
  }

  async function copyPassword() {
    const text = $("password-value").textContent;
    try {
      await navigator.clipboard.writeText(text);
      $("copy-status").textContent = "Copied.";
    } catch (e) {
      // No clipboard permission: select it for a manual copy.
      const range = document.createRange();
      range.selectNodeContents($("password-value"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      const ok = document.execCommand && document.execCommand("copy");
      $("copy-status").textContent = ok ? "Copied." : "Selected: press Ctrl+C to copy.";
    }
  }

  // --- operations --------------------------------------------------------

  async function run(step) {
    clearError();
    try {
      await step();
    } catch (e) {
      if (!(e instanceof APIError && e.status === 401)) {
        showError(e.message);
      }
    }
  }

  async function addUser(ev) {
    ev.preventDefault();
    const name = $("new-name").value.trim();
    const write = $("new-write").checked;
    const submit = $("add-submit");
    submit.disabled = true;
    await run(async () => {
      try {
        const data = await api("POST", "", {
          database_user: { database_id: databaseID, name: name, read_only: !write },
        });
        $("add-form").reset();
        $("add-form").hidden = true;
        const u = data.database_user;
        await loadUsers().catch((e) => showError(e.message));
        showPassword(u.name, u.password);
      } finally {
        submit.disabled = false;
      }
    });
  }

  function resetPassword(name) {
    askConfirmation("Reset password",
      "A new password is generated for user " + name + ". The current password stops working at once.",
      name, async () => {
        const data = await api("POST", userPath(name) + "/reset_password", {});
        showPassword(data.database_user.name, data.database_user.password);
      });
  }

  function deleteUser(name) {
    askConfirmation("Delete user",
      "User " + name + " is deleted, and its open connections are closed. This cannot be undone.",
      name, async () => {
        await api("DELETE", userPath(name));
      });
  }

  // --- wiring ------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      clearError();
      try {
        signIn($("token").value.trim());
      } catch (e) {
        showError(e.message);
        return;
      }
      run(loadUsers);
    });
    $("sign-out").addEventListener("click", () => signOut(""));

    $("add-user").addEventListener("click", () => {
      $("add-form").hidden = false;
      $("new-name").focus();
    });
    $("add-cancel").addEventListener("click", () => {
      $("add-form").reset();
      $("add-form").hidden = true;
    });
    $("add-form").addEventListener("submit", addUser);

    $("menu-reset").addEventListener("click", () => {
      const name = menuUser;
      closeMenu();
      resetPassword(name);
    });
    $("menu-delete").addEventListener("click", () => {
      const name = menuUser;
      closeMenu();
      deleteUser(name);
    });
    document.addEventListener("click", (ev) => {
      if (!$("user-menu").contains(ev.target)) {
        closeMenu();
      }
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") {
        closeMenu();
      }
    });

    // Confirm stays disabled until the exact name is typed.
    $("confirm-input").addEventListener("input", (ev) => {
      $("confirm-button").disabled = ev.target.value !== ev.target.dataset.expected;
    });
    $("confirm-button").addEventListener("click", async () => {
      const input = $("confirm-input");
      if (input.value !== input.dataset.expected || !confirmAction) {
        return;
      }
      const action = confirmAction;
      $("confirm-button").disabled = true;
      closeConfirmation();
      await run(action);
      if (token) {
        // Whatever happened, show the users as they are now.
        await loadUsers().catch((e) => showError(e.message));
      }
    });
    $("confirm-cancel").addEventListener("click", closeConfirmation);
    $("confirm-dialog").addEventListener("close", () => {
      confirmAction = null;
      $("confirm-input").value = "";
    });

    $("copy-password").addEventListener("click", copyPassword);
    // Dropped at once on Close; the close event (fired a moment later, and
    // also for Escape) drops it too.
    $("close-password").addEventListener("click", () => {
      forgetPassword();
      $("password-dialog").close();
    });
    $("password-dialog").addEventListener("close", forgetPassword);

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      try {
        signIn(saved);
        run(loadUsers);
      } catch (e) {
        signOut("");
      }
    }
  });
})();
