// The console's only script: live regions and confirmations. Pages work without it
// (forms post, pages show the figures as of their loading); with it, a region marked
// data-refresh="URL" is replaced by that URL's HTML every 2 s (or data-every="ms"),
// and a form marked data-confirm="question" asks first in the page's <dialog>.
"use strict";

(function () {
  const EVERY_MS = 2000;
  const shown = new WeakMap();  // region -> the HTML last put in it

  function busy(region) {
    // Never pull a control from under the keyboard or an open dialog.
    const active = document.activeElement;
    return (active && active !== document.body && region.contains(active)) ||
      document.querySelector("dialog[open]") !== null;
  }

  async function refresh(region) {
    if (busy(region)) return;
    try {
      const answer = await fetch(region.dataset.refresh, {
        headers: { "Accept": "text/html" }, credentials: "same-origin", cache: "no-store",
      });
      // A session that ended is sent to the login page: go there, not into the region.
      if (answer.status === 401 || (answer.redirected && answer.url.indexOf("/login") >= 0)) {
        window.location.assign(loginUrl());
        return;
      }
      if (!answer.ok) return;
      const html = await answer.text();
      if (!busy(region) && html !== shown.get(region)) {
        const before = states(region);
        region.innerHTML = html;
        shown.set(region, html);
        if (announce(before, states(region))) {
          // A campaign moved on (prepared, finished): the slower regions follow now.
          document.querySelectorAll("[data-every]").forEach(function (other) {
            if (other !== region) refresh(other);
          });
        }
      }
    } catch (error) {
      // The server restarting or the network away: try again on the next tick.
    }
  }

  // What each campaign shown is now ({"Spring sale (#2)": "sending"}).
  function states(region) {
    const found = {};
    region.querySelectorAll("[data-of]").forEach(function (badge) {
      found[badge.dataset.of] = badge.dataset.state;
    });
    return found;
  }

  // A campaign that changed state is said once to screen readers (the page's polite
  // status line); the figures that change every tick are not.
  function announce(before, after) {
    const changed = Object.keys(after).filter(function (name) {
      return name in before && before[name] !== after[name];
    });
    const line = document.getElementById("announce");
    if (line && changed.length) {
      line.textContent = changed.map(function (name) {
        return name + " is " + after[name];
      }).join("; ");
    }
    return changed.length > 0;
  }

  function loginUrl() {
    return (document.body.dataset.login || "/console/login") +
      "?next=" + encodeURIComponent(window.location.pathname);
  }

  function confirmFirst(event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (form.dataset.confirmed === "yes") return;
    const dialog = document.getElementById("confirm");
    if (!dialog || typeof dialog.showModal !== "function") {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      return;
    }
    event.preventDefault();
    const submitter = event.submitter || null;  // its name=value goes with the form
    dialog.querySelector("[data-question]").textContent = form.dataset.confirm;
    const yes = dialog.querySelector("[data-yes]");
    yes.textContent = form.dataset.confirmLabel || "Yes";
    dialog.returnValue = "";
    dialog.onclose = function () {
      if (dialog.returnValue === "yes") {
        form.dataset.confirmed = "yes";
        if (form.requestSubmit) form.requestSubmit(submitter);
        else form.submit();
      } else {
        const opener = form.querySelector("button");
        if (opener) opener.focus();
      }
    };
    dialog.showModal();
    dialog.querySelector("[data-no]").focus();
  }

  // A login link (``dispatcher run --open`` prints /console/login#key=...): the key is
  // in the fragment, which no server or log sees; it is taken off the address at once.
  function logInFromLink() {
    const field = document.getElementById("key");
    const hash = window.location.hash;
    if (!field || !field.form || hash.indexOf("#key=") !== 0) return;
    field.value = decodeURIComponent(hash.slice(5));
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
    if (field.value) field.form.submit();
  }

  document.addEventListener("submit", confirmFirst, true);
  document.addEventListener("DOMContentLoaded", function () {
    logInFromLink();
    document.querySelectorAll("[data-refresh]").forEach(function (region) {
      const every = Number(region.dataset.every) || EVERY_MS;
      window.setInterval(function () { refresh(region); }, every);
    });
  });
})();
