/* The live tail (/streams/{name}/tail): fetch the lines newer than the newest shown every 2 s and
   put them on top; "Pause" stops asking. A file of its own: the CSP allows no inline script. */
"use strict";
(function () {
  var box = document.getElementById("tail");
  if (!box) return;
  var rows = document.getElementById("tail-rows");
  var toggle = document.querySelector("[data-tail-toggle]");
  var state = document.querySelector("[data-tail-state]");
  var paused = false;
  var KEEP = 1000;  // rows kept on the page

  function poll() {
    if (paused) return;
    var url = box.getAttribute("data-tail-url") + "?after_id=" + encodeURIComponent(box.getAttribute("data-after-id"));
    fetch(url, {headers: {"HX-Request": "true"}, credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      if (!html.trim()) return;
      rows.insertAdjacentHTML("afterbegin", html);
      var newest = rows.querySelector("tr[data-line-id]");
      if (newest) box.setAttribute("data-after-id", newest.getAttribute("data-line-id"));
      while (rows.children.length > KEEP) rows.removeChild(rows.lastElementChild);
      state.textContent = "following";
    }).catch(function (err) {
      state.textContent = "could not fetch new lines (" + err.message + "); retrying";
    });
  }

  toggle.addEventListener("click", function () {
    paused = !paused;
    toggle.textContent = paused ? "Resume" : "Pause";
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    state.textContent = paused ? "paused" : "following";
    if (!paused) poll();
  });
  setInterval(poll, 2000);
})();
