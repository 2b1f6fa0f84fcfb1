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
