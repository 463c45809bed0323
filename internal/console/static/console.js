// tokenvault privacy console. Served from the binary (no CDN); the
// Content-Security-Policy allows no other script.
"use strict";

// A revealed value stays on screen for data-hide-after milliseconds, then
// is removed from the page (not just hidden).
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-hide-after]").forEach(function (el) {
    var ms = parseInt(el.getAttribute("data-hide-after"), 10) || 20000;
    setTimeout(function () {
      el.textContent = "(hidden)";
      el.classList.add("hidden-value");
      el.setAttribute("data-hidden", "true");
      var note = document.getElementById("hide-note");
      if (note) { note.textContent = "The value was hidden. Reveal it again if you still need it (each reveal is audited)."; }
    }, ms);
  });
});
