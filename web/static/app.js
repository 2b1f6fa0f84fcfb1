/* LogSense UI helpers. No inline scripts anywhere: the Content-Security-Policy allows only files from this origin. */
"use strict";
document.addEventListener("change", function (event) {
  var all = event.target.closest ? event.target.closest("input[data-select-all]") : null;
  if (!all) return;
  var form = all.getAttribute("data-select-all");
  document.querySelectorAll('input[type="checkbox"][form="' + form + '"]').forEach(function (box) {
    box.checked = all.checked;
  });
});
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("[data-dismiss]") : null;
  if (button && button.parentElement) button.parentElement.remove();
});

/* ------------------------------------------------------------------ times in the browser's zone
   The server writes UTC: <time datetime="2024-05-01T10:00:00+00:00" data-local="full|time" title="... UTC">.
   Shown here in the browser's time zone; the UTC value stays in the title. */
(function () {
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function zoneName(d) {
    try {
      var part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" }).formatToParts(d)
        .filter(function (p) { return p.type === "timeZoneName"; })[0];
      return part ? part.value : "";
    } catch (e) { return ""; }
  }
  function localize(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("time[data-local]").forEach(function (el) {
      if (el.hasAttribute("data-localized")) return;
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      var clock = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
      if (el.getAttribute("data-local") === "time") {
        el.textContent = clock;
      } else {
        el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock + " " + zoneName(d);
      }
      el.setAttribute("data-localized", "");
    });
    /* the queue's precise range fields: in this browser's zone, which the server is told (tz: minutes behind UTC) */
    (root.querySelectorAll ? root : document).querySelectorAll("input[data-tz]").forEach(function (tz) {
      var want = new Date().getTimezoneOffset();
      var had = parseInt(tz.value || "0", 10) || 0;
      var form = tz.form;
      if (form && want !== had) {
        ["since", "until"].forEach(function (name) {
          var field = form.elements[name];
          if (!field || !field.value) return;
          var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(field.value);
          if (!m) return;
          var t = new Date(Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5]) + (had - want) * 60000);
          field.value = t.getUTCFullYear() + "-" + pad(t.getUTCMonth() + 1) + "-" + pad(t.getUTCDate()) + "T" +
            pad(t.getUTCHours()) + ":" + pad(t.getUTCMinutes());
        });
      }
      tz.value = String(want);
      var name = zoneName(new Date()) || "local";
      if (form) form.querySelectorAll("[data-tz-name]").forEach(function (s) { s.textContent = name; });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:load", function (event) { localize(event.detail.elt || document); });
  /* a preset and the precise range exclude each other: whichever the operator touched last wins */
  document.addEventListener("change", function (event) {
    var t = event.target, form = t.form;
    if (!form || form.id !== "filters") return;
    if (t.name === "last" && t.value) {
      ["since", "until"].forEach(function (n) { if (form.elements[n]) form.elements[n].value = ""; });
    } else if ((t.name === "since" || t.name === "until") && t.value) {
      var any = form.querySelector('input[name="last"][value=""]');
      if (any) any.checked = true;
    }
  }, true);  /* capture: before htmx reads the form */
})();

/* ------------------------------------------------------------------ "are you sure?" for big answers
   Forms with data-confirm-over="100": a row (data-count) or the bulk bar (its checked rows) answering
   more anomalies than that asks first; a mute does not (it teaches nothing and lapses). */
(function () {
  var WORDS = { "normal": "Mark normal", "normal-template": "Mark normal (every line of the template from now on)",
                "confirm": "Confirm as anomaly" };
  function countOf(form) {
    if (form.hasAttribute("data-count")) return parseInt(form.getAttribute("data-count"), 10) || 0;
    var n = 0;
    document.querySelectorAll('input[type="checkbox"][form="' + form.id + '"]:checked').forEach(function (box) {
      n += box.value.split(",").filter(Boolean).length;
    });
    return n;
  }
  document.addEventListener("htmx:confirm", function (event) {
    var form = event.detail.elt;
    if (!form || !form.hasAttribute || !form.hasAttribute("data-confirm-over")) return;
    var trigger = event.detail.triggeringEvent;
    var button = trigger && trigger.submitter;
    var action = button ? button.value : "";
    if (!WORDS[action]) return;
    var n = countOf(form), limit = parseInt(form.getAttribute("data-confirm-over"), 10) || 100;
    if (n <= limit) return;
    event.preventDefault();
    if (window.confirm(WORDS[action] + ": all " + n + " anomalies at once?\n\nUndo is possible for 10 minutes " +
                       "(what the model learned stays learned).")) {
      event.detail.issueRequest(true);
    } else if (document.body.contains(form)) {
      var row = form.closest("article.grow");
      if (row) row.focus();
    }
  });
})();

/* ------------------------------------------------------------------ keyboard triage
   j/k or arrows move between the queue's rows (one Tab stop: the current row); n, t, c, m answer
   the current row, u undoes the last answer, x selects it, o/Enter opens it; ? lists the keys.
   After an answer the row is swapped in place and the next open row gets the focus. */
(function () {
  var current = null;      /* id of the current row */
  var acted = null;        /* id of the row answered last: where the focus goes after its swap */
  var lastUndo = null;     /* id of the element whose undo button `u` presses */

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#queue article.grow")); }
  function isOpen(row) { return row.getAttribute("data-status") === "open"; }
  function typing(el) {
    if (!el || !el.tagName) return false;
    var tag = el.tagName.toLowerCase();
    if (tag === "textarea" || tag === "select" || el.isContentEditable) return true;
    if (tag === "input") return ["checkbox", "radio", "button", "submit", "reset"].indexOf((el.type || "").toLowerCase()) < 0;
    return false;
  }
  function setCurrent(row, focus) {
    rows().forEach(function (r) {
      r.classList.remove("current");
      r.setAttribute("tabindex", "-1");
    });
    if (!row) { current = null; return; }
    row.classList.add("current");
    row.setAttribute("tabindex", "0");
    current = row.id;
    if (focus) {
      document.body.classList.add("keys");
      row.focus({ preventScroll: true });
      row.scrollIntoView({ block: "nearest" });
    }
  }
  function currentRow() {
    var list = rows();
    var row = current ? document.getElementById(current) : null;
    if (row && list.indexOf(row) >= 0) return row;
    return list[0] || null;
  }
  function refresh() {
    /* after the queue was drawn: keep the current row if it is still there, else the first open one */
    var list = rows();
    if (!list.length) { current = null; return; }
    var row = current ? document.getElementById(current) : null;
    if (!row || list.indexOf(row) < 0) row = list.filter(isOpen)[0] || list[0];
    setCurrent(row, false);
  }
  function move(step) {
    var list = rows();
    if (!list.length) return;
    var i = list.indexOf(currentRow());
    var next = list[Math.min(list.length - 1, Math.max(0, i + step))];
    setCurrent(next, true);
  }
  function nextAfter(row) {
    var list = rows(), i = list.indexOf(row);
    var after = list.slice(i + 1).filter(isOpen)[0];
    if (after) return after;
    var before = list.slice(0, Math.max(i, 0)).reverse().filter(isOpen)[0];
    return before || list[i + 1] || row;
  }
  function act(action) {
    var row = currentRow();
    var scope = row || document.getElementById("actions");
    if (!scope) return false;
    var button = scope.querySelector('form button[name="action"][value="' + action + '"]');
    if (!button) return false;
    if (action === "mute") {
      var hours = button.form && button.form.elements.hours;
      if (hours) hours.value = "1";
    }
    acted = row ? row.id : "actions";
    button.click();
    return true;
  }
  function undo() {
    var holder = lastUndo ? document.getElementById(lastUndo) : null;
    var button = holder ? holder.querySelector("[data-undo]") : null;
    if (!button) {
      var row = currentRow();
      button = (row && row.querySelector("[data-undo]")) || document.querySelector("[data-undo]");
    }
    if (!button) return false;
    var owner = button.closest("article.grow");
    acted = owner ? owner.id : (button.closest("#actions") ? "actions" : null);
    button.click();
    return true;
  }
  function open() {
    var row = currentRow();
    var link = row && row.querySelector("a[data-open]");
    if (link) { window.location.href = link.href; return true; }
    return false;
  }
  function help() {
    var dialog = document.getElementById("shortcuts");
    if (!dialog || !dialog.showModal) return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-shortcuts]") : null;
    if (button) { help(); return; }
    var skip = event.target.closest ? event.target.closest("a[data-skip-rows]") : null;
    if (skip) {
      var row = currentRow();
      if (row) { event.preventDefault(); setCurrent(row, true); }
      return;
    }
    var row2 = event.target.closest ? event.target.closest("#queue article.grow") : null;
    if (row2) {
      if (row2.id !== current) setCurrent(row2, false);
      if (event.target.closest("button[name='action']")) acted = row2.id;
      if (event.target.closest("[data-undo]")) acted = row2.id;
    } else if (event.target.closest && event.target.closest("#actions button")) {
      acted = "actions";
    }
  });
  document.addEventListener("focusin", function (event) {
    var row = event.target.closest ? event.target.closest("#queue article.grow") : null;
    if (row && row.id !== current) setCurrent(row, false);
  });

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    var dialog = document.getElementById("shortcuts");
    if (dialog && dialog.open) {
      if (event.key === "?") { dialog.close(); event.preventDefault(); }
      return;  /* Esc closes it natively */
    }
    if (typing(event.target)) return;
    var key = event.key;
    if (key === "?") { help(); event.preventDefault(); return; }
    var onQueue = rows().length > 0;
    var inRow = event.target.closest && event.target.closest("#queue article.grow");
    var done = false;
    switch (key) {
      case "j": if (onQueue) { move(1); done = true; } break;
      case "k": if (onQueue) { move(-1); done = true; } break;
      case "ArrowDown":
        if (onQueue && (inRow || event.target === document.body)) { move(1); done = true; } break;
      case "ArrowUp":
        if (onQueue && (inRow || event.target === document.body)) { move(-1); done = true; } break;
      case "n": done = act("normal"); break;
      case "t": done = act("normal-template"); break;
      case "c": done = act("confirm"); break;
      case "m": done = act("mute"); break;
      case "u": done = undo(); break;
      case "x":
        if (onQueue) {
          var box = currentRow() && currentRow().querySelector('input[name="sel"]');
          if (box) { box.checked = !box.checked; done = true; }
        }
        break;
      case "o": done = onQueue && open(); break;
      case "Enter":
        if (event.target.matches && event.target.matches("#queue article.grow")) done = open();
        break;
    }
    if (done) event.preventDefault();
  });

  /* after a swap: focus where the operator is, never <body> */
  document.addEventListener("htmx:afterSettle", function (event) {
    var detail = event.detail || {};
    var from = detail.elt && detail.elt.closest ? detail.elt.closest("article.grow, #actions") : null;
    if (acted && from && from.id === acted) {  /* the answer (or undo) of the row or panel acted on */
      acted = null;
      var el = document.getElementById(from.id);
      if (!el) return;
      if (el.querySelector("[data-undo]")) lastUndo = el.id;
      if (el.id === "actions") { el.focus({ preventScroll: true }); return; }
      setCurrent(isOpen(el) ? el : nextAfter(el), true);
      return;
    }
    var target = detail.target;
    if (target && target.id === "queue") {
      if (document.querySelector("#queue .undo-bar [data-undo]")) lastUndo = "queue";
      var focusRows = document.activeElement === document.body || document.activeElement === null;
      refresh();
      if (focusRows && detail.elt && !detail.elt.isConnected) {  /* its button went with the old queue */
        var row = currentRow();
        if (row) row.focus({ preventScroll: true });
      }
    }
  });
  document.addEventListener("DOMContentLoaded", refresh);
})();
