/*
 * flask-alisms: progressive enhancement for the sign-up and reset pages.
 *
 * The "Send code" button works without this file: it simply posts the form. With it, a
 * button carrying data-resend-after="N" is disabled for N seconds and counts down, using the
 * label template in data-resend-label ("Send again in %(seconds)ss"), then comes back.
 * No inline script or style is needed, so the pages keep a strict CSP (default-src 'self').
 */
(function () {
  "use strict";

  var PLACEHOLDER = "%(seconds)s";

  // <input type="submit"> shows its value; <button> shows its text.
  function getLabel(element) {
    return element.tagName === "INPUT" ? element.value : element.textContent;
  }

  function setLabel(element, text) {
    if (element.tagName === "INPUT") {
      element.value = text;
    } else {
      element.textContent = text;
    }
  }

  function startCountdown(button) {
    var seconds = parseInt(button.getAttribute("data-resend-after"), 10);
    if (!(seconds > 0)) {
      return;
    }
    var original = getLabel(button);
    var template = button.getAttribute("data-resend-label") || original + " (" + PLACEHOLDER + ")";
    // A deadline rather than a tick count: timers in background tabs are throttled.
    var deadline = Date.now() + seconds * 1000;

    function render(left) {
      setLabel(button, template.split(PLACEHOLDER).join(String(left)));
    }

    function finish() {
      button.disabled = false;
      button.classList.remove("is-counting");
      setLabel(button, original);
    }

    function tick() {
      var left = Math.ceil((deadline - Date.now()) / 1000);
      if (left <= 0) {
        finish();
        return;
      }
      render(left);
      // Wake up just after the next whole second boundary.
      var wait = deadline - Date.now() - (left - 1) * 1000;
      window.setTimeout(tick, Math.max(50, Math.min(1000, wait + 20)));
    }

    button.disabled = true;
    button.classList.add("is-counting");
    tick();
  }

  function init() {
    var buttons = document.querySelectorAll("button[data-resend-after], input[data-resend-after]");
    Array.prototype.forEach.call(buttons, startCountdown);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
